"""An independent oracle for MiniMusic-AVQA answers, measured on the rendered stems.

It reads from the scene only what a human annotator would take from the picture (each
instrument's class, whether it is on screen and where, indoor/outdoor) and measures
everything about sound on the per-instrument stems returned by ``render_stems``: which
instruments sound, when they come in, how loud, how rhythmic, in which seconds. Definitions
follow ``docs/dataset_embedded.md``; no generator bookkeeping (onset, loudness_db, rhythm_score,
active_seconds, ...) is read here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

FRAME = 0.01  # s, analysis frame
SILENT = 1e-6  # frame RMS at or below this is silence (stems are exact zeros between notes)
ACTIVE_SECOND_DB = -40.0  # a second is active if its RMS is within 40 dB of the span RMS
SIMULTANEOUS = 0.35  # s
POSITIONS = ("left", "middle", "right")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass
class StemFacts:
    sounding: bool
    onset: float = float("nan")
    offset: float = float("nan")
    loudness_db: float = float("-inf")
    rhythm: float = 0.0
    n_onsets: int = 0
    active: set[int] = field(default_factory=set)


def measure_stem(x: np.ndarray, sr: int) -> StemFacts:
    """Onset/offset (first/last non-silent 10 ms frame), RMS over that span (dBFS), note onsets
    (starts of non-silent runs), rhythm = onsets per second x max(0, 1 - CV(IOI)), active seconds."""
    hop = int(FRAME * sr)
    n = len(x) // hop
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    loud = rms > SILENT
    if not loud.any():
        return StemFacts(False)
    idx = np.flatnonzero(loud)
    onset, offset = idx[0] * FRAME, (idx[-1] + 1) * FRAME
    seg = x[int(round(onset * sr)) : int(round(offset * sr))].astype(np.float64)
    span_rms = np.sqrt(np.mean(seg**2))
    starts = np.flatnonzero(loud & ~np.concatenate([[False], loud[:-1]])) * FRAME
    rhythm = 0.0
    if len(starts) >= 3:
        ioi = np.diff(starts)
        rhythm = len(starts) / (offset - onset) * max(0.0, 1.0 - ioi.std() / ioi.mean())
    seconds = len(x) // sr
    per_sec = np.sqrt(
        np.mean(x[: seconds * sr].astype(np.float64).reshape(seconds, sr) ** 2, axis=1)
    )
    active = {int(k) for k in np.flatnonzero(per_sec > span_rms * 10 ** (ACTIVE_SECOND_DB / 20))}
    return StemFacts(True, onset, offset, 20 * np.log10(span_rms), rhythm, len(starts), active)


def estimate_pitch(x: np.ndarray, sr: int) -> float:
    """Typical f0 of a stem as a MIDI number: YIN (cumulative-mean-normalised difference,
    threshold 0.15) on 128 ms windows, then the 25th percentile over windows. A low quantile
    rather than the median because YIN's errors on some GM timbres (shamisen, high bassoon)
    are octave-*up* jumps; it then sits a little below the median note of a melody."""
    win, max_lag = int(0.128 * sr), int(sr / 30)
    f0s = []
    for start in range(0, len(x) - win - max_lag, win):
        w = x[start : start + win + max_lag].astype(np.float64)
        if np.sqrt(np.mean(w**2)) < 1e-3:
            continue
        spec = np.fft.rfft(w, 2 * len(w))
        ac = np.fft.irfft(spec * np.conj(np.fft.rfft(w[:win], 2 * len(w))))[: max_lag + 1]
        energy = np.concatenate([[0.0], np.cumsum(w**2)])
        e_lag = energy[np.arange(max_lag + 1) + win] - energy[np.arange(max_lag + 1)]
        d = energy[win] + e_lag - 2 * ac
        cmnd = d[1:] * np.arange(1, max_lag + 1) / np.maximum(np.cumsum(d[1:]), 1e-12)
        lo = int(sr / 1000) - 1
        below = np.flatnonzero(cmnd[lo:] < 0.15)
        if below.size:
            k = lo + below[0]
            while k + 1 < len(cmnd) and cmnd[k + 1] < cmnd[k]:
                k += 1
        else:
            k = lo + int(np.argmin(cmnd[lo:]))
        f0s.append(sr / (k + 1))
    return float(69 + 12 * np.log2(np.percentile(f0s, 25) / 440.0)) if f0s else float("nan")


class Oracle:
    """Answers questions about one scene from its stems (see module docstring)."""

    def __init__(self, scene: dict, stems: dict[int, np.ndarray], voice: np.ndarray | None):
        sr = int(scene["sample_rate"])
        self.seconds = int(scene["seconds"])
        self.kind = scene["background"]["kind"]
        self.voice = voice is not None and float(np.max(np.abs(voice))) > 1e-3
        self.insts = [
            {"id": i["id"], "class": i["class"], "visible": i["visible"], "position": i["position"]}
            for i in scene["instruments"]
        ]
        self.facts = {i: measure_stem(x, sr) for i, x in stems.items()}
        self.stems, self.sr = stems, sr

    # -- helpers ------------------------------------------------------------------------------
    def f(self, inst: dict) -> StemFacts:
        return self.facts[inst["id"]]

    @property
    def snd(self) -> list[dict]:
        return [i for i in self.insts if self.f(i).sounding]

    @property
    def vis(self) -> list[dict]:
        return [i for i in self.insts if i["visible"]]

    def at(self, pos: str) -> dict:
        (inst,) = [i for i in self.vis if i["position"] == pos]
        return inst

    def the_sounding(self, cls: str) -> dict:
        found = [i for i in self.snd if i["class"] == cls]
        assert len(found) == 1, (
            f"'{cls}' should name exactly one sounding instrument, got {len(found)}"
        )
        return found[0]

    def the_visible(self, cls: str) -> dict:
        found = [i for i in self.vis if i["class"] == cls]
        assert len(found) == 1, (
            f"'{cls}' should name exactly one visible instrument, got {len(found)}"
        )
        return found[0]

    def groups(self) -> list[list[dict]]:
        out: list[list[dict]] = []
        for i in sorted(self.snd, key=lambda i: self.f(i).onset):
            if out and self.f(i).onset - self.f(out[-1][0]).onset <= SIMULTANEOUS:
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def fl(self, which: str) -> dict:
        g = self.groups()
        assert len(g) >= 2, "first/last needs two onset groups"
        group = g[0] if which == "first" else g[-1]
        assert len(group) == 1, f"the {which} onset is shared by {len(group)} instruments"
        return group[0]

    def neighbour(self, inst: dict, lr: str) -> dict:
        k = POSITIONS.index(inst["position"])
        order = range(k - 1, -1, -1) if lr == "left" else range(k + 1, 3)
        for j in order:
            hit = [i for i in self.vis if i["position"] == POSITIONS[j]]
            if hit:
                return hit[0]
        raise AssertionError(f"nothing on the {lr} of {inst['class']}")

    @staticmethod
    def yn(b: bool) -> str:
        return "yes" if b else "no"

    def all_seconds(self, inst: dict) -> bool:
        return self.f(inst).active >= set(range(self.seconds))

    # -- answers ------------------------------------------------------------------------------
    def answer(self, template: str, values: list[str]) -> str | set[str] | None:
        """The oracle's answer (a set: any of these), or None for the templates it does not
        check (the visual ones, answered from the scene layout)."""
        f, yn = self.f, self.yn
        span = lambda i: f(i).offset - f(i).onset  # noqa: E731
        if template == "Is the <Object> louder than the <Object>?":
            a, b = (self.the_sounding(c) for c in values)
            return yn(f(a).loudness_db > f(b).loudness_db)
        if template == "Is the <Object> more rhythmic than the <Object>?":
            a, b = (self.the_sounding(c) for c in values)
            return yn(f(a).rhythm > f(b).rhythm)
        if template == "Is the <Object> playing longer than the <Object>?":
            a, b = (self.the_sounding(c) for c in values)
            return yn(span(a) > span(b))
        if template == "Are there <Object> and <Object> sound?":
            heard = {i["class"] for i in self.snd}
            return yn(values[0] in heard and values[1] in heard)
        if template == "How many musical instruments were heard throughout the video?":
            return NUMBERS[len(self.snd)]
        if template == "Is there a <Object> sound?":
            return yn(values[0] in {i["class"] for i in self.snd})
        if template.startswith("Is the <Object> on the <LR>") or template.startswith(
            "Is the instrument on the <LR>"
        ):
            if "<Object>" in template:
                a, b = self.at(values[1]), self.at(values[3])
                assert (a["class"], b["class"]) == (values[0], values[2]), "class/position mismatch"
            else:
                a, b = self.at(values[0]), self.at(values[1])
            assert f(a).sounding and f(b).sounding, "comparing a silent instrument"
            if "louder" in template:
                return yn(f(a).loudness_db > f(b).loudness_db)
            return yn(f(a).rhythm > f(b).rhythm)
        if template == "How many instruments are sounding in the video?":
            return NUMBERS[sum(1 for i in self.vis if f(i).sounding)]
        if template == "How many instruments in the video did not sound from beginning to end?":
            return NUMBERS[sum(1 for i in self.vis if not self.all_seconds(i))]
        if template == "How many sounding <Object> in the video\uff1f":
            return NUMBERS[sum(1 for i in self.vis if i["class"] == values[0] and f(i).sounding)]
        if template == "How many types of musical instruments sound in the video?":
            return NUMBERS[len({i["class"] for i in self.vis if f(i).sounding})]
        if template == "Is the <Object> in the video always playing?":
            return yn(self.all_seconds(self.the_visible(values[0])))
        if template == "Is there a voiceover?":
            return yn(self.voice)
        if template == "Is this sound from the instrument in the video?":
            return yn(all(i["visible"] for i in self.snd))
        if template == "Is the <FL> sound coming from the <LR> instrument?":
            inst = self.fl(values[0])
            return yn(inst["visible"] and inst["position"] == values[1])
        if template == "What is the <LR> instrument of the <FL> sounding instrument?":
            return self.neighbour(self.fl(values[1]), values[0])["class"]
        if template == "Where is the <LL> instrument?":
            if values[0] == "loudest":
                inst = max(self.snd, key=lambda i: f(i).loudness_db)
                assert inst["visible"], "the loudest instrument is off screen"
                return inst["position"]
            pitch = {i["id"]: estimate_pitch(self.stems[i["id"]], self.sr) for i in self.snd}
            inst = min(self.snd, key=lambda i: pitch[i["id"]])
            assert inst["visible"], "the lowest instrument is off screen"
            return inst["position"]
        if (
            template
            == "Which is the musical instrument that sounds at the same time as the <Object>?"
        ):
            me = self.the_sounding(values[0])
            best: dict[str, int] = {}
            for o in self.snd:
                if o["class"] != values[0]:
                    best[o["class"]] = max(best.get(o["class"], 0), len(f(me).active & f(o).active))
            return max(best, key=best.get)
        if template == "What is the <TH> instrument that comes in?":
            group = self.groups()[("first", "second", "third").index(values[0])]
            assert len(group) == 1, "the asked onset is shared"
            return group[0]["class"]
        if template == "Where is the <FL> sounding instrument?":
            inst = self.fl(values[0])
            assert inst["visible"], "the first/last instrument is off screen"
            return inst["position"]
        if template == "Which <Object> makes the sound <FL>?":
            playing = sorted((i for i in self.vis if i["class"] == values[0] and f(i).sounding),
                             key=lambda i: f(i).onset)  # fmt: skip
            if len(playing) == 1:
                return playing[0]["position"]
            a, b = (playing[0], playing[1]) if values[1] == "first" else (playing[-1], playing[-2])
            if abs(f(a).onset - f(b).onset) <= SIMULTANEOUS:
                return "simultaneously"
            return a["position"]
        if template == "Which instrument makes sounds <BA> the <Object>?":
            me = self.the_sounding(values[1])
            g = self.groups()
            k = next(j for j, grp in enumerate(g) if me in grp) + (
                -1 if values[0] == "before" else 1
            )
            assert 0 <= k < len(g) and len(g[k]) == 1, "no single instrument there"
            return g[k][0]["class"]
        if template == "Where is the performance?":
            return self.kind
        return None


def check_records(
    scene: dict, oracle: Oracle, records: list[dict]
) -> list[tuple[str, str, str, str]]:
    """``[(template, templ_values, generated, oracle)]`` for every disagreement."""
    bad = []
    for r in records:
        values = json.loads(r["templ_values"])
        try:
            expected = oracle.answer(r["question_content"], values)
        except AssertionError as exc:
            expected = f"<ambiguous: {exc}>"
        ok = r["anser"] in expected if isinstance(expected, set) else expected == r["anser"]
        if expected is not None and not ok:
            bad.append((r["question_content"], r["templ_values"], r["anser"], expected))
    return bad
