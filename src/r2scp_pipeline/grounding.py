"""Targets of stage I's grounding heads (not in the paper; docs/model.md "Grounding").

Per audio segment the audio head tags, for each of the K instrument classes, whether it sounds
and, with ``pretrain.grounding_attributes``, how it sounds next to the video's other instruments:

    y [3K] = [ sounds_c | sounds_c * loud_c | sounds_c * rhythmic_c ]   (c over avqa.INSTRUMENTS)

    loud_c     = sigmoid((L_c - mean_j L_j) / LOUD_SCALE_DB)   L: the stem's RMS level (dB) over
                                                              its active span, j: the video's
                                                              sounding instruments
    rhythmic_c = sigmoid(RHYTHM_GAIN * ln max(r_c, 1e-3))      r: the stem's rhythm score (>= 0)

These are the quantities the comparative questions ask about ("Is the <Object> louder / more
rhythmic than the <Object>?", ``generator/questions.py``): presence alone tells the audio expert
*what* sounds *when*, not which of two instruments is the louder one. Both tags are soft
targets of the same binary cross-entropy as presence. Two instruments of one class sounding in
the same second give that class their larger tag.

Per visual grid cell and segment the visual head tags which classes stand in the cell and,
with ``pretrain.grounding_playing``, which of them are being played in that second:

    y [2K] = [ seen_c | seen_c * playing_c ]

The frames show who plays (the embedded generator's glow and hop, real videos' bowing and
strumming): with this tag the visual expert's tokens say *where* the sound comes from, which the
audio-visual Location and Temporal questions ask ("Where is the first sounding instrument?").
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import torch

from r2scp_pipeline import avqa

#: per-class attribute tags after the K presence tags, in this order
AUDIO_ATTRIBUTES: tuple[str, ...] = ("loud", "rhythmic")
#: per-class tags of the visual head after its K presence tags
VISUAL_ATTRIBUTES: tuple[str, ...] = ("playing",)
#: each head's tags after presence: the ``grounding_labels`` columns that hold them
ATTRIBUTES: dict[str, tuple[str, ...]] = {"audio": AUDIO_ATTRIBUTES, "visual": VISUAL_ATTRIBUTES}
#: dB above the video's mean level at which loud_c = sigmoid(1) (the questions' margin is 4 dB)
LOUD_SCALE_DB = 3.0
#: rhythm scores 1.65x apart (the questions' ratio is 1.5) move rhythmic_c by sigmoid(1)
RHYTHM_GAIN = 2.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def attribute_tags(loudness_db: Sequence[float], rhythm_score: Sequence[float]) -> list[tuple[float, float]]:
    """``(loud, rhythmic)`` of each of a video's sounding instruments (same order), from their
    levels in dB and rhythm scores (>= 0; a score of 0, no rhythm at all, tags
    about 0). Loudness is relative to the mean of these instruments
    (one instrument alone: 0.5)."""
    if len(loudness_db) != len(rhythm_score):
        raise ValueError(f"{len(loudness_db)} loudness values for {len(rhythm_score)} rhythm scores")
    if not loudness_db:
        return []
    mean = float(np.mean(loudness_db))
    return [(_sigmoid((float(db) - mean) / LOUD_SCALE_DB),
             _sigmoid(RHYTHM_GAIN * math.log(max(float(r), 1e-3))))
            for db, r in zip(loudness_db, rhythm_score, strict=True)]  # fmt: skip


def tag_target(instruments: Sequence[str], tags: Sequence[Sequence[float]] = ()) -> np.ndarray:
    """One token's target ``[K (1 + len(tags))]``: presence of ``instruments`` (class order of
    ``avqa.INSTRUMENTS``), then each tag list (aligned with ``instruments``) as per-class
    values; two instruments of one class give it their larger tag."""
    k = len(avqa.INSTRUMENTS)
    for values in tags:
        if len(values) != len(instruments):
            raise ValueError(f"{len(values)} tags for {len(instruments)} instruments")
    y = np.zeros(k * (1 + len(tags)), dtype=np.float32)
    for j, name in enumerate(instruments):
        try:
            c = avqa.INSTRUMENTS.index(name)
        except ValueError:
            raise ValueError(f"unknown instrument {name!r} (see avqa.INSTRUMENTS)") from None
        y[c] = 1.0
        for a, values in enumerate(tags, start=1):
            y[a * k + c] = max(y[a * k + c], float(values[j]))
    return y


def audio_target(
    instruments: Sequence[str],
    loud: Sequence[float] | None = None,
    rhythmic: Sequence[float] | None = None,
) -> np.ndarray:
    """One segment's target: ``[K]`` presence of ``instruments``, or ``[3K]`` with their
    ``loud`` / ``rhythmic`` tags (aligned with ``instruments``) when both are given."""
    return tag_target(instruments, (loud, rhythmic) if loud is not None and rhythmic is not None else ())


def segment_sounds(
    sounding: Sequence[tuple[str, Collection[int], float, float]], seconds: Sequence[int]
) -> list[tuple[list[str], list[float], list[float]]]:
    """Per segment, the source second it reads (``seconds``): the classes sounding then, in
    class order, with their ``loud`` and ``rhythmic`` tags, from ``sounding``: ``(class,
    active seconds, loudness_db, rhythm_score)`` of each of a video's sounding instruments
    (the tags are relative to all of them). What ``grounding_labels`` stores for a dataset
    video and :func:`audio_target` turns into a target."""
    tags = attribute_tags([s[2] for s in sounding], [s[3] for s in sounding])
    out = []
    for second in seconds:
        now = sorted((c, *tag) for (c, active, _, _), tag in zip(sounding, tags, strict=True)
                     if second in active)  # fmt: skip
        out.append(([c for c, _, _ in now], [lo for _, lo, _ in now], [r for _, _, r in now]))
    return out


def presence(y: torch.Tensor) -> torch.Tensor:
    """The K presence tags of targets or logits ``[..., K(1 + A)]`` (the attribute tags follow
    them)."""
    return y[..., : len(avqa.INSTRUMENTS)]
