"""Scene specifications: what is seen, what sounds, when, how loud and how rhythmic.

A scene is a plain JSON-able ``dict`` (it is written to ``scenes.json`` as is) holding everything
needed to re-render the video's audio and frames without any random draw:

``instruments`` (one entry per instance, visible or off-screen)::

    id, class, visible, position (left/middle/right or None), image, x, y, size, flip,
    sounding, onset, offset, loudness_db, rhythm, rhythm_score, pitch, always_playing,
    active_seconds, notes = [[start_s, duration_s, midi_key, gain_db], ...]

``background`` {kind: indoor/outdoor, seed}, ``voiceover`` (None or {phrases: [[clip, start_s,
shift_semitones], ...], level_db}), ``mix`` {seed, rt60, wet_db, snr_db, noise_tilt}, ``key``.

Time grid: onsets and offsets sit on whole seconds plus at most ``JITTER`` s (onsets later,
offsets earlier), so an instrument either covers >= 0.85 s of a second or none of it, and two
instruments either share their onset exactly ("simultaneously") or start >= 0.85 s apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from r2scp_pipeline import avqa

from .assets import INSTRUMENT_SPECS, image_index

POSITIONS: tuple[str, ...] = ("left", "middle", "right")
POSITION_X: dict[str, float] = {"left": 0.2, "middle": 0.5, "right": 0.8}
STYLES: tuple[str, ...] = ("rhythmic", "melodic", "sustained")
JITTER = 0.15  # s, see module docstring
MAX_NOTE_SECONDS = 1.25  # < bank clip length / 2**(2.5/12): notes never run out of samples
MIN_GAP_SECONDS = 0.04  # silence between two notes of one stem (onsets stay detectable)
LOUDNESS_RANGE_DB = (-30.0, -12.0)  # stem RMS over its active span, dBFS

SCALES: dict[str, tuple[int, ...]] = {
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
}

#: GM percussion patterns (keys per sixteenth-like step) for the rhythmic style.
DRUM_PATTERNS: tuple[tuple[int, ...], ...] = (
    (36, 42, 38, 42), (36, 42, 38, 46), (36, 36, 38, 42), (36, 42, 42, 38, 42, 42),
    (45, 48, 45, 48), (36, 38, 36, 38),
)  # fmt: skip
CONGA_PATTERNS: tuple[tuple[int, ...], ...] = (
    (64, 63, 62, 63), (63, 63, 64), (62, 63, 64, 63, 63, 64), (64, 62),
)  # fmt: skip

#: Relative on-screen size of each class (longest side, fraction of the nominal size).
SIZE_FACTOR: dict[str, float] = {name: 1.0 for name in avqa.INSTRUMENTS} | {
    "piano": 1.25, "drum": 1.15, "xylophone": 1.1, "guzheng": 1.2, "cello": 1.15,
    "ukulele": 0.8, "violin": 0.9, "trumpet": 0.95, "suona": 0.85, "congas": 0.95,
}  # fmt: skip


def _r(x: float, nd: int = 3) -> float:
    return float(round(float(x), nd))


def _onset_grid(rng: np.random.Generator, seconds: int) -> float:
    k = 0 if rng.random() < 0.45 else int(rng.integers(1, seconds - 2))
    return 0.0 if k == 0 else _r(k + rng.uniform(0.0, JITTER))


def _offset_grid(rng: np.random.Generator, onset: float, seconds: int) -> float:
    first = int(np.floor(onset)) + 2
    if rng.random() < 0.6 or first > seconds - 1:
        return float(seconds)
    m = int(rng.integers(first, seconds))  # first .. seconds-1
    return _r(m - rng.uniform(0.0, JITTER))


def _pitch_pool(cls: str, scale: tuple[int, ...], root: int) -> np.ndarray:
    lo, hi = INSTRUMENT_SPECS[cls].melody_range
    return np.array([m for m in range(lo, hi + 1) if (m - root) % 12 in scale], dtype=int)


def _walk(rng: np.random.Generator, pool: np.ndarray, n: int, max_step: int) -> list[int]:
    """A melodic random walk over the scale degrees in ``pool``."""
    i = int(rng.integers(len(pool) // 4, max(len(pool) // 4 + 1, 3 * len(pool) // 4)))
    out = []
    for _ in range(n):
        out.append(int(pool[i]))
        i = int(np.clip(i + rng.integers(-max_step, max_step + 1), 0, len(pool) - 1))
    return out


def make_notes(
    rng: np.random.Generator,
    cls: str,
    style: str,
    onset: float,
    offset: float,
    scale: tuple[int, ...],
    root: int,
) -> list[list[float]]:
    """Note events ``[start, duration, midi_key, gain_db]`` filling ``[onset, offset]``.

    * ``rhythmic``: a constant inter-onset interval (0.2-0.45 s), short notes, a repeated
      2-4-note motif with accents: many, regular onsets;
    * ``melodic``: inter-onset intervals drawn from {1/4, 3/8, 1/2, 3/4, 1} x 0.8-1.2 s (capped
      for percussion), legato: irregular onsets;
    * ``sustained``: long notes (0.8-1.3 s) separated by short breaths: few onsets.

    Consecutive notes are separated by >= ``MIN_GAP_SECONDS`` of silence and silences never
    exceed 0.6 s, so the stem sounds in every second of its span.
    """
    spec = INSTRUMENT_SPECS[cls]
    starts: list[float] = []
    durs: list[float] = []
    gains: list[float] = []
    t = onset
    if style == "rhythmic":
        ioi = rng.uniform(0.2, 0.45)
        art = rng.uniform(0.45, 0.7)
        accent_every = int(rng.choice([2, 3, 4]))
        while t < offset - 0.08:
            starts.append(t)
            durs.append(ioi * art)
            gains.append(0.0 if len(starts) % accent_every == 1 else -rng.uniform(2.0, 5.0))
            t += ioi
    elif style == "melodic":
        tempo = rng.uniform(0.8, 1.2)
        steps = np.array([0.25, 0.375, 0.5, 0.75, 1.0])
        if spec.family == "percussion":
            steps = steps[steps <= 0.5]
        while t < offset - 0.08:
            ioi = float(rng.choice(steps)) * tempo
            starts.append(t)
            durs.append(min(ioi * rng.uniform(0.7, 0.9), ioi - MIN_GAP_SECONDS))
            gains.append(-rng.uniform(0.0, 4.0))
            t += ioi
    elif style == "sustained":
        hi = 1.1 if spec.family == "plucked" else 1.3
        while t < offset - 0.08:
            ioi = rng.uniform(0.8, hi)
            starts.append(t)
            durs.append(ioi - rng.uniform(0.05, 0.15))
            gains.append(-rng.uniform(0.0, 3.0))
            t += ioi
    else:
        raise ValueError(f"unknown rhythm style {style!r}; valid: {STYLES}")

    n = len(starts)
    if cls == "drum":
        pattern = DRUM_PATTERNS[int(rng.integers(len(DRUM_PATTERNS)))]
        if style == "rhythmic":
            keys = [pattern[i % len(pattern)] for i in range(n)]
        else:
            keys = [int(k) for k in rng.choice([36, 38, 45, 48, 42], size=n)]
    elif cls == "congas":
        pattern = CONGA_PATTERNS[int(rng.integers(len(CONGA_PATTERNS)))]
        if style == "rhythmic":
            keys = [pattern[i % len(pattern)] for i in range(n)]
        else:
            keys = [int(k) for k in rng.choice([62, 63, 64], size=n)]
    else:
        pool = _pitch_pool(cls, scale, root)
        if style == "rhythmic":
            motif = _walk(rng, pool, int(rng.integers(2, 5)), 2)
            keys = [motif[i % len(motif)] for i in range(n)]
        else:
            keys = _walk(rng, pool, n, 2 if style == "melodic" else 1)
    cap = MAX_NOTE_SECONDS if spec.family != "percussion" else 0.6
    notes = []
    for s, d, k, g in zip(starts, durs, keys, gains, strict=True):
        d = min(d, cap, offset - s)
        if d < 0.08:
            continue
        notes.append([_r(s), _r(d), int(k), _r(g, 2)])
    return notes


def rhythm_score(starts: list[float], span: float) -> float:
    """Rhythmicity = onset rate (onsets per second of active span) x regularity.

    Regularity = max(0, 1 - CV) of the inter-onset intervals (CV = std / mean): a steady pulse
    scores ~1, free timing less. Same formula in the docs and in the stem-based test.
    """
    if len(starts) < 3 or span <= 0:
        return 0.0
    ioi = np.diff(np.asarray(starts, dtype=float))
    cv = float(ioi.std() / ioi.mean())
    return float(len(starts) / span * max(0.0, 1.0 - cv))


def active_seconds(onset: float, offset: float) -> list[int]:
    """Whole seconds the instrument covers (see the time grid in the module docstring)."""
    return list(range(int(np.floor(onset + 1e-6)), int(np.ceil(offset - 1e-6))))


def _positions(rng: np.random.Generator, n: int) -> list[str]:
    if n == 1:
        return [str(rng.choice(POSITIONS, p=[0.2, 0.6, 0.2]))]
    if n == 2:
        pairs = [("left", "right"), ("left", "middle"), ("middle", "right")]
        return list(pairs[int(rng.choice(3, p=[0.6, 0.2, 0.2]))])
    return list(POSITIONS)


def sample_scene(
    rng: np.random.Generator, video_id: str, split: str, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Draw one scene (see the module docstring for the fields)."""
    seconds = int(cfg["seconds"])
    classes = list(avqa.INSTRUMENTS)
    images = image_index()

    # --- what is seen --------------------------------------------------------------------
    n_vis = int(rng.choice([1, 2, 3], p=[0.25, 0.4, 0.35]))
    positions = _positions(rng, n_vis)
    picked = [str(c) for c in rng.choice(classes, size=n_vis, replace=False)]
    if n_vis >= 2 and rng.random() < cfg["duplicate_prob"]:
        a, b = rng.choice(n_vis, size=2, replace=False)
        picked[int(b)] = picked[int(a)]
    variants: dict[str, str] = {}
    instruments: list[dict[str, Any]] = []
    for pos, cls in zip(positions, picked, strict=True):
        if cls not in variants:  # duplicates look alike
            variants[cls] = images[cls][int(rng.integers(len(images[cls])))]["file"]
        instruments.append({
            "class": cls, "visible": True, "position": pos, "image": variants[cls],
            "x": _r(POSITION_X[pos] + rng.uniform(-0.04, 0.04)),
            "y": _r(rng.uniform(0.8, 0.93)),
            "size": _r(rng.uniform(0.27, 0.36) * SIZE_FACTOR[cls]),
            "flip": bool(rng.random() < 0.3),
            "sounding": bool(rng.random() < cfg["sounding_prob"]),
        })  # fmt: skip

    # --- what is heard but not seen ------------------------------------------------------
    if rng.random() < cfg["offscreen_prob"]:
        n_off = 2 if rng.random() < 0.15 else 1
        unseen = [c for c in classes if c not in picked]
        for cls in rng.choice(unseen, size=n_off, replace=False):
            instruments.append({
                "class": str(cls), "visible": False, "position": None, "image": None,
                "x": None, "y": None, "size": None, "flip": False, "sounding": True,
            })  # fmt: skip
    if not any(i["sounding"] for i in instruments):
        instruments[int(rng.integers(n_vis))]["sounding"] = True

    # --- when and how they sound ---------------------------------------------------------
    scale_name = str(rng.choice(list(SCALES)))
    root = int(rng.integers(12))
    onsets_so_far: list[float] = []
    for idx, inst in enumerate(instruments):
        inst["id"] = idx
        for key in ("onset", "offset", "loudness_db", "rhythm", "rhythm_score", "pitch"):
            inst[key] = None
        inst["always_playing"] = False
        inst["active_seconds"] = []
        inst["notes"] = []
        if not inst["sounding"]:
            continue
        twin = [
            j["onset"] for j in instruments[:idx] if j["sounding"] and j["class"] == inst["class"]
        ]
        if twin and rng.random() < 0.5:
            onset = twin[0]  # duplicates often start together
        elif onsets_so_far and rng.random() < 0.2:
            onset = onsets_so_far[int(rng.integers(len(onsets_so_far)))]
        else:
            onset = _onset_grid(rng, seconds)
        offset = _offset_grid(rng, onset, seconds)
        onsets_so_far.append(onset)
        family = INSTRUMENT_SPECS[inst["class"]].family
        style = str(rng.choice(STYLES[:2] if family == "percussion" else STYLES))
        notes = make_notes(rng, inst["class"], style, onset, offset, SCALES[scale_name], root)
        pitched = INSTRUMENT_SPECS[inst["class"]].pitched
        inst.update({
            "onset": onset, "offset": offset,
            "loudness_db": _r(rng.uniform(*LOUDNESS_RANGE_DB), 1),
            "rhythm": style,
            "rhythm_score": _r(rhythm_score([n[0] for n in notes], offset - onset), 4),
            "pitch": float(np.median([n[2] for n in notes])) if pitched else None,
            "always_playing": bool(onset == 0.0 and offset == float(seconds)),
            "active_seconds": active_seconds(onset, offset),
            "notes": notes,
        })  # fmt: skip

    # --- voiceover, room, background -----------------------------------------------------
    voiceover = None
    if rng.random() < cfg["voiceover_prob"]:
        n_phr = 1 if rng.random() < 0.7 else 2
        phrases = []
        for _ in range(n_phr):
            phrases.append([int(rng.integers(cfg["_n_voice_clips"])),
                            _r(rng.uniform(0.0, max(0.1, seconds - 3.5)), 2),
                            _r(rng.uniform(-2.0, 2.0), 2)])  # fmt: skip
        voiceover = {"phrases": phrases, "level_db": _r(rng.uniform(-8.0, 0.0), 1)}
    indoor = bool(rng.random() < cfg["indoor_prob"])
    mix = {
        "seed": int(rng.integers(2**31 - 1)),
        "rt60": _r(rng.uniform(0.5, 1.3) if indoor else rng.uniform(0.1, 0.35), 2),
        "wet_db": _r(rng.uniform(-10.0, -4.0) if indoor else rng.uniform(-18.0, -10.0), 1),
        "snr_db": _r(rng.uniform(12.0, 30.0), 1),
        "noise_tilt": _r(rng.uniform(0.3, 1.0) if indoor else rng.uniform(1.0, 2.0), 2),
    }
    visible = [i for i in instruments if i["visible"]]
    return {
        "video_id": video_id,
        "split": split,
        # class lists for scene_metadata (visible ones left to right; may repeat a class)
        "visible": [
            i["class"] for i in sorted(visible, key=lambda i: POSITIONS.index(i["position"]))
        ],
        "sounding": sorted({i["class"] for i in instruments if i["sounding"]}),
        "background": {
            "kind": "indoor" if indoor else "outdoor",
            "seed": int(rng.integers(2**31 - 1)),
        },
        "voiceover": voiceover,
        "key": {"root": root, "scale": scale_name},
        "mix": mix,
        "frame_seed": int(rng.integers(2**31 - 1)),
        "seconds": seconds,
        "sample_rate": int(cfg["sample_rate"]),
        "sound_source": str(cfg["_sound_source_by_split"][split]),
        "instruments": instruments,
    }
