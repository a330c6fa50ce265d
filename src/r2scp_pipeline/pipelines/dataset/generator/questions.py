"""Questions of MiniMusic-AVQA: the 33 official templates, answered from the scene.

Every template has a *candidate* function ``(view, rng) -> [(templ_values, answer), ...]`` listing
the questions of that template whose answer is unambiguous in the scene (comparisons only
with a clear margin, orderings only between onsets >= 0.85 s apart). ``make_questions`` then picks
5-8 templates per video (rarely used templates first) and, within a template, the answer that
this template has given least so far: yes/no is balanced per template, and so overall.

The semantics (what "louder", "more rhythmic", "first", ... mean, measured on the stems) are
in ``docs/dataset_embedded.md``; the constants below are the margins.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from r2scp_pipeline import avqa

from .scene import POSITIONS

LOUDER_MARGIN_DB = 4.0  # |RMS_a - RMS_b| over active spans, dB
RHYTHM_RATIO = 1.5  # rhythm scores differ by this factor
RHYTHM_MIN = 0.5  # ... and the more rhythmic one scores at least this
LONGER_MARGIN_S = 2.0  # active spans differ by at least this
SIMULTANEOUS_S = 0.35  # onsets this close are "simultaneous" (by construction <= 0.15 s)
PITCH_MARGIN = 7.0  # semitones between the lowest and the next lowest median pitch
OVERLAP_MARGIN = 2  # seconds of co-activity between the best and second-best partner

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)  # fmt: skip
YES, NO = "yes", "no"
Candidate = tuple[list[str], str]


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n <= 10 else "more than ten"


class SceneView:
    """Derived facts of one scene used by the candidate functions."""

    def __init__(self, scene: dict[str, Any]):
        self.scene = scene
        self.insts = scene["instruments"]
        self.vis = [i for i in self.insts if i["visible"]]
        self.snd = [i for i in self.insts if i["sounding"]]
        self.vsnd = [i for i in self.vis if i["sounding"]]
        self.vis_count = Counter(i["class"] for i in self.vis)
        self.snd_count = Counter(i["class"] for i in self.snd)
        self.vsnd_count = Counter(i["class"] for i in self.vsnd)
        self.offscreen_snd = {i["class"] for i in self.snd if not i["visible"]}
        self.by_pos = {i["position"]: i for i in self.vis}
        self.absent = [
            c for c in avqa.INSTRUMENTS if c not in self.vis_count and c not in self.snd_count
        ]
        self.silent_vis = sorted({i["class"] for i in self.vis} - set(self.snd_count))
        # onset groups: sounding instruments sorted by onset, simultaneous ones together
        groups: list[list[dict]] = []
        for inst in sorted(self.snd, key=lambda i: (i["onset"], i["id"])):
            if groups and inst["onset"] - groups[-1][0]["onset"] <= SIMULTANEOUS_S:
                groups[-1].append(inst)
            else:
                groups.append([inst])
        self.groups = groups

    def unique_sounding(self, cls: str) -> dict | None:
        return next(i for i in self.snd if i["class"] == cls) if self.snd_count[cls] == 1 else None

    def neighbour(self, inst: dict, direction: str) -> dict | None:
        """Nearest visible instrument to the left/right of ``inst``."""
        idx = POSITIONS.index(inst["position"])
        side = range(idx - 1, -1, -1) if direction == "left" else range(idx + 1, len(POSITIONS))
        for k in side:
            if POSITIONS[k] in self.by_pos:
                return self.by_pos[POSITIONS[k]]
        return None

    def fl_instrument(self, fl: str) -> dict | None:
        """The single instrument that comes in first/last (None if tied or alone)."""
        if len(self.groups) < 2:
            return None
        group = self.groups[0] if fl == "first" else self.groups[-1]
        return group[0] if len(group) == 1 else None


def _span(i: dict) -> float:
    return i["offset"] - i["onset"]


def _cmp(a: float, b: float, margin: float) -> str | None:
    if a - b >= margin:
        return YES
    if b - a >= margin:
        return NO
    return None


def _louder(a: dict, b: dict) -> str | None:
    return _cmp(a["loudness_db"], b["loudness_db"], LOUDER_MARGIN_DB)


def _more_rhythmic(a: dict, b: dict) -> str | None:
    ra, rb = a["rhythm_score"], b["rhythm_score"]
    if ra >= RHYTHM_MIN and ra >= RHYTHM_RATIO * rb:
        return YES
    if rb >= RHYTHM_MIN and rb >= RHYTHM_RATIO * ra:
        return NO
    return None


def _longer(a: dict, b: dict) -> str | None:
    return _cmp(_span(a), _span(b), LONGER_MARGIN_S)


def _pairs(items: list) -> list[tuple]:
    return [(a, b) for a in items for b in items if a is not b]


def _sample(rng: np.random.Generator, items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    return [items[int(j)] for j in rng.choice(len(items), size=k, replace=False)]


def _negatives(
    rng: np.random.Generator, hard: list[str], absent: list[str], k: int = 2
) -> list[str]:
    """Classes for a "no": the hard ones (seen-but-silent or heard-but-unseen) and a few absent."""
    return list(dict.fromkeys(list(hard) + _sample(rng, absent, k)))


# --- Audio -----------------------------------------------------------------------------------


def _a_compare(rel: Callable) -> Callable:
    def fn(v: SceneView, rng: np.random.Generator) -> list[Candidate]:
        uniq = [i for i in v.snd if v.snd_count[i["class"]] == 1]
        out = []
        for a, b in _pairs(uniq):
            ans = rel(a, b)
            if ans:
                out.append(([a["class"], b["class"]], ans))
        return out

    return fn


def q_are_there_sound(v: SceneView, rng) -> list[Candidate]:
    heard = sorted(v.snd_count)
    negs = _negatives(rng, v.silent_vis, v.absent)
    out = [([a, b], YES) for a, b in _pairs(heard)]
    for a in heard:
        for n in negs:
            out.append(([a, n] if rng.random() < 0.5 else [n, a], NO))
    return out


def q_heard_count(v: SceneView, rng) -> list[Candidate]:
    return [([], number_word(len(v.snd)))]


def q_is_there_sound(v: SceneView, rng) -> list[Candidate]:
    return [([c], YES) for c in sorted(v.snd_count)] + [
        ([c], NO) for c in _negatives(rng, v.silent_vis, v.absent)
    ]


# --- Audio-Visual comparative ----------------------------------------------------------------


def _av_compare(rel: Callable, named: bool) -> Callable:
    def fn(v: SceneView, rng) -> list[Candidate]:
        out = []
        for a, b in _pairs(v.vsnd):
            ans = rel(a, b)
            if ans:
                vals = [a["class"], a["position"], b["class"], b["position"]] if named else [
                    a["position"], b["position"]]  # fmt: skip
                out.append((vals, ans))
        return out

    return fn


# --- Audio-Visual counting / existential -----------------------------------------------------


def q_sounding_count(v: SceneView, rng) -> list[Candidate]:
    return [([], number_word(len(v.vsnd)))]


def q_not_from_start_to_end(v: SceneView, rng) -> list[Candidate]:
    return [([], number_word(sum(1 for i in v.vis if not i["always_playing"])))]


def q_sounding_object_count(v: SceneView, rng) -> list[Candidate]:
    seen = [c for c in sorted(v.vis_count) if c not in v.offscreen_snd]
    out = [([c], number_word(v.vsnd_count[c])) for c in seen]
    return out + [([c], "zero") for c in _sample(rng, v.absent, 2)]


def q_sounding_types(v: SceneView, rng) -> list[Candidate]:
    return [([], number_word(len({i["class"] for i in v.vsnd})))]


def q_always_playing(v: SceneView, rng) -> list[Candidate]:
    out = []
    for i in v.vis:
        c = i["class"]
        if v.vis_count[c] == 1 and c not in v.offscreen_snd:
            out.append(([c], YES if i["always_playing"] else NO))
    return out


def q_voiceover(v: SceneView, rng) -> list[Candidate]:
    return [([], YES if v.scene["voiceover"] else NO)]


def q_sound_from_video(v: SceneView, rng) -> list[Candidate]:
    return [([], NO if v.offscreen_snd else YES)]


# --- Audio-Visual location -------------------------------------------------------------------


def q_fl_from_lr(v: SceneView, rng) -> list[Candidate]:
    out = []
    for fl in ("first", "last"):
        inst = v.fl_instrument(fl)
        if inst is None or not inst["visible"] or len(v.vis) < 2:
            continue
        for p in v.by_pos:
            out.append(([fl, p], YES if p == inst["position"] else NO))
    return out


def q_lr_of_fl(v: SceneView, rng) -> list[Candidate]:
    out = []
    for fl in ("first", "last"):
        inst = v.fl_instrument(fl)
        if inst is None or not inst["visible"]:
            continue
        for lr in ("left", "right"):
            nb = v.neighbour(inst, lr)
            if nb is not None:
                out.append(([lr, fl], nb["class"]))
    return out


def q_where_ll(v: SceneView, rng) -> list[Candidate]:
    out = []
    if len(v.snd) >= 2:
        loud = sorted(v.snd, key=lambda i: -i["loudness_db"])
        if (
            loud[0]["visible"]
            and loud[0]["loudness_db"] - loud[1]["loudness_db"] >= LOUDER_MARGIN_DB
        ):
            out.append((["loudest"], loud[0]["position"]))
        # pitched instruments only; not with a bagpipe (its drone blurs "lowest")
        if all(i["pitch"] is not None and i["class"] != "bagpipe" for i in v.snd):
            low = sorted(v.snd, key=lambda i: i["pitch"])
            if low[0]["visible"] and low[1]["pitch"] - low[0]["pitch"] >= PITCH_MARGIN:
                out.append((["lowest"], low[0]["position"]))
    return out


def q_same_time_as(v: SceneView, rng) -> list[Candidate]:
    out = []
    for c in sorted(v.snd_count):
        inst = v.unique_sounding(c)
        if inst is None:
            continue
        mine = set(inst["active_seconds"])
        per_class: dict[str, int] = {}
        for o in v.snd:
            if o["class"] != c:
                per_class[o["class"]] = max(
                    per_class.get(o["class"], 0), len(mine & set(o["active_seconds"]))
                )
        ranked = sorted(per_class.items(), key=lambda kv: -kv[1])
        if not ranked or ranked[0][1] < OVERLAP_MARGIN:
            continue
        second = ranked[1][1] if len(ranked) > 1 else 0
        if ranked[0][1] - second >= OVERLAP_MARGIN:
            out.append(([c], ranked[0][0]))
    return out


# --- Audio-Visual temporal -------------------------------------------------------------------


def q_th_comes_in(v: SceneView, rng) -> list[Candidate]:
    out = []
    if len(v.snd) >= 2:
        for r, th in enumerate(("first", "second", "third")):
            if r < len(v.groups) and len(v.groups[r]) == 1:
                out.append(([th], v.groups[r][0]["class"]))
    return out


def q_where_fl(v: SceneView, rng) -> list[Candidate]:
    out = []
    for fl in ("first", "last"):
        inst = v.fl_instrument(fl)
        if inst is not None and inst["visible"]:
            out.append(([fl], inst["position"]))
    return out


def q_which_object_fl(v: SceneView, rng) -> list[Candidate]:
    out = []
    for c, n in sorted(v.vis_count.items()):
        if n < 2 or c in v.offscreen_snd:
            continue
        playing = sorted((i for i in v.vsnd if i["class"] == c), key=lambda i: i["onset"])
        if not playing:
            continue
        for fl in ("first", "last"):
            if len(playing) == 1:
                out.append(([c, fl], playing[0]["position"]))
                continue
            a, b = (playing[0], playing[1]) if fl == "first" else (playing[-1], playing[-2])
            if abs(a["onset"] - b["onset"]) <= SIMULTANEOUS_S:
                out.append(([c, fl], "simultaneously"))
            else:
                out.append(([c, fl], a["position"]))
    return out


def q_before_after(v: SceneView, rng) -> list[Candidate]:
    out = []
    for c in sorted(v.snd_count):
        inst = v.unique_sounding(c)
        if inst is None:
            continue
        gi = next(k for k, g in enumerate(v.groups) if inst in g)
        for ba, k in (("before", gi - 1), ("after", gi + 1)):
            if 0 <= k < len(v.groups) and len(v.groups[k]) == 1 and v.groups[k][0]["class"] != c:
                out.append(([ba, c], v.groups[k][0]["class"]))
    return out


# --- Visual ----------------------------------------------------------------------------------


def q_are_there_instruments(v: SceneView, rng) -> list[Candidate]:
    seen = sorted(v.vis_count)
    negs = _negatives(rng, sorted(v.offscreen_snd), v.absent)
    out = [([a, b], YES) for a, b in _pairs(seen)]
    for a in seen:
        for n in negs:
            out.append(([a, n] if rng.random() < 0.5 else [n, a], NO))
    return out


def q_how_many_object(v: SceneView, rng) -> list[Candidate]:
    out = [([c], number_word(n)) for c, n in sorted(v.vis_count.items())]
    return out + [([c], "zero") for c in _negatives(rng, sorted(v.offscreen_snd), v.absent, 1)]


def q_types_appeared(v: SceneView, rng) -> list[Candidate]:
    return [([], number_word(len(v.vis_count)))]


def q_is_there_object(v: SceneView, rng) -> list[Candidate]:
    return [([c], YES) for c in sorted(v.vis_count)] + [
        ([c], NO) for c in _negatives(rng, sorted(v.offscreen_snd), v.absent)
    ]


def q_lr_of_object(v: SceneView, rng) -> list[Candidate]:
    out = []
    for i in v.vis:
        if v.vis_count[i["class"]] != 1:
            continue
        for lr in ("left", "right"):
            nb = v.neighbour(i, lr)
            if nb is not None:
                out.append(([lr, i["class"]], nb["class"]))
    return out


def q_lrer(v: SceneView, rng) -> list[Candidate]:
    if len(v.vis) < 2:
        return []
    order = sorted(v.vis, key=lambda i: POSITIONS.index(i["position"]))
    return [(["leftest"], order[0]["class"]), (["rightest"], order[-1]["class"])]


def q_what_kind(v: SceneView, rng) -> list[Candidate]:
    return [([], v.vis[0]["class"])] if len(v.vis_count) == 1 else []


def q_performance(v: SceneView, rng) -> list[Candidate]:
    return [([], v.scene["background"]["kind"])]


#: template text -> candidate function, in avqa.TEMPLATES order.
CANDIDATES: dict[str, Callable[[SceneView, np.random.Generator], list[Candidate]]] = {
    "Is the <Object> louder than the <Object>?": _a_compare(_louder),
    "Is the <Object> more rhythmic than the <Object>?": _a_compare(_more_rhythmic),
    "Is the <Object> playing longer than the <Object>?": _a_compare(_longer),
    "Are there <Object> and <Object> sound?": q_are_there_sound,
    "How many musical instruments were heard throughout the video?": q_heard_count,
    "Is there a <Object> sound?": q_is_there_sound,
    "Is the <Object> on the <LR> louder than the <Object> on the <LR>?": _av_compare(_louder, True),
    "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?": _av_compare(_more_rhythmic, True),
    "Is the instrument on the <LR> louder than the instrument on the <LR>?": _av_compare(_louder, False),
    "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?": _av_compare(_more_rhythmic, False),
    "How many instruments are sounding in the video?": q_sounding_count,
    "How many instruments in the video did not sound from beginning to end?": q_not_from_start_to_end,
    "How many sounding <Object> in the video\uff1f": q_sounding_object_count,
    "How many types of musical instruments sound in the video?": q_sounding_types,
    "Is the <Object> in the video always playing?": q_always_playing,
    "Is there a voiceover?": q_voiceover,
    "Is this sound from the instrument in the video?": q_sound_from_video,
    "Is the <FL> sound coming from the <LR> instrument?": q_fl_from_lr,
    "What is the <LR> instrument of the <FL> sounding instrument?": q_lr_of_fl,
    "Where is the <LL> instrument?": q_where_ll,
    "Which is the musical instrument that sounds at the same time as the <Object>?": q_same_time_as,
    "What is the <TH> instrument that comes in?": q_th_comes_in,
    "Where is the <FL> sounding instrument?": q_where_fl,
    "Which <Object> makes the sound <FL>?": q_which_object_fl,
    "Which instrument makes sounds <BA> the <Object>?": q_before_after,
    "Are there <Object> and <Object> instruments in the video?": q_are_there_instruments,
    "How many <Object> are in the entire video?": q_how_many_object,
    "How many types of musical instruments appeared in the entire video?": q_types_appeared,
    "Is there a <Object> in the entire video?": q_is_there_object,
    "What is the instrument on the <LR> of <Object>?": q_lr_of_object,
    "What kind of instrument is the <LRer> instrument?": q_lrer,
    "What kind of musical instrument is it?": q_what_kind,
    "Where is the performance?": q_performance,
}  # fmt: skip
assert list(CANDIDATES) == [t for _, _, t in avqa.TEMPLATES]
TEMPLATE_TYPE: dict[str, tuple[str, str]] = {t: (m, s) for m, s, t in avqa.TEMPLATES}
BINARY_SLACK = 2  # a yes/no template whose only answer here is ahead by this much is skipped


def _overused(counts: Counter, answer: str) -> bool:
    """Skip a template whose only possible answer in this scene is already too frequent for it:
    yes/no ahead of the other by ``BINARY_SLACK``; other answers more than twice (+2) the
    next most frequent one (flattens e.g. the "one" peak of the counting templates)."""
    if answer in (YES, NO):
        return counts[answer] - counts[NO if answer == YES else YES] >= BINARY_SLACK
    others = [c for a, c in counts.items() if a != answer]
    return bool(others) and counts[answer] > 2 * max(others) + 2


def make_questions(
    scenes: list[dict[str, Any]],
    rng: np.random.Generator,
    per_video: tuple[int, int],
    train_per_video: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Official-format records for ``scenes`` (in order), ``question_id`` 0, 1, 2, ...

    A scene asks a number of questions drawn from ``per_video`` (inclusive), or from
    ``train_per_video`` when given and the scene is in the training split (at most one per
    template the scene can answer)."""
    used: Counter = Counter()
    answered: dict[str, Counter] = defaultdict(Counter)
    records: list[dict[str, Any]] = []
    for scene in scenes:
        view = SceneView(scene)
        cands: dict[str, list[Candidate]] = {}
        for tmpl, fn in CANDIDATES.items():
            found = fn(view, rng)
            answers = {a for _, a in found}
            if len(answers) == 1 and _overused(answered[tmpl], next(iter(answers))):
                continue
            if found:
                cands[tmpl] = found
        names = list(cands)
        lo, hi = train_per_video if train_per_video and scene["split"] == "train" else per_video
        k = min(int(rng.integers(lo, hi + 1)), len(names))
        weights = np.array([1.0 / (1.0 + used[t]) for t in names])
        chosen = rng.choice(len(names), size=k, replace=False, p=weights / weights.sum())
        for j in sorted(int(c) for c in chosen):
            tmpl = names[j]
            by_answer: dict[str, list[list[str]]] = defaultdict(list)
            for values, ans in cands[tmpl]:
                if values not in by_answer[ans]:
                    by_answer[ans].append(values)
            least = min(answered[tmpl][a] for a in by_answer)
            options = sorted(a for a in by_answer if answered[tmpl][a] == least)
            ans = options[int(rng.integers(len(options)))]
            values = by_answer[ans][int(rng.integers(len(by_answer[ans])))]
            used[tmpl] += 1
            answered[tmpl][ans] += 1
            if ans not in avqa.ANSWER_TO_IDX:
                raise AssertionError(f"generated answer {ans!r} is not in avqa.ANSWERS")
            records.append({
                "video_id": scene["video_id"],
                "question_id": len(records),
                "type": json.dumps(list(TEMPLATE_TYPE[tmpl])),
                "question_content": tmpl,
                "templ_values": json.dumps(values),
                "question_deleted": 0,
                "anser": ans,
            })  # fmt: skip
    return records
