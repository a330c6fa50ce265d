"""Which test videos lose a modality: drawn once from the seed, stored, shared by every method.

For each missing setting (``audio_missing``, ``visual_missing``) the test videos are put in one
random order, drawn from ``(seed, setting name)``; at missing rate ``r`` the first
``round(r * N)`` videos of that order miss the modality *entirely* (all ``T`` segments). So the
sets are nested (the 30% set is inside the 50% set, inside the 70% set, inside 100% = all), a
rate added to or removed from the parameter list changes no other rate's set, and reordering
the settings list changes nothing. ``complete`` is stored at rate 0.0 with no video missing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from r2scp_pipeline.data import AVQATensors
from r2scp_pipeline.vocabulary import SETTINGS

MASK_COLUMNS: tuple[str, ...] = ("setting", "missing_rate", "video_id", "missing")


def n_missing(rate: float, n_videos: int) -> int:
    """How many of ``n_videos`` miss the modality at ``rate`` (round half up)."""
    return int(np.floor(rate * n_videos + 0.5))


def setting_order(video_ids: Iterable[str], setting: str, seed: int) -> list[str]:
    """The seeded order in which ``setting`` drops videos (independent of the input order)."""
    ids = sorted({str(v) for v in video_ids})
    rng = np.random.default_rng([int(seed), zlib.crc32(setting.encode())])
    return [ids[i] for i in rng.permutation(len(ids))]


def draw_masks(
    video_ids: Sequence[str], settings: Sequence[str], rates: Sequence[float], seed: int
) -> pd.DataFrame:
    """The ``missing_masks`` table: one row per (setting, missing_rate, video).

    Columns ``setting:str, missing_rate:float64, video_id:str, missing:bool``, sorted by
    ``setting, missing_rate, video_id``. ``complete`` gets a single rate 0.0.
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    bad = [r for r in rates if not 0.0 <= float(r) <= 1.0]
    if bad:
        raise ValueError(f"missing rates {bad} are outside [0, 1]")
    ids = sorted({str(v) for v in video_ids})
    if not ids:
        raise ValueError("no video to draw missing masks for")
    frames = []
    for setting in settings:
        setting_rates = [0.0] if SETTINGS[setting] is None else sorted({float(r) for r in rates})
        order = setting_order(ids, setting, seed) if SETTINGS[setting] else ids
        for rate in setting_rates:
            dropped = set(order[: n_missing(rate, len(ids))]) if SETTINGS[setting] else set()
            frames.append(
                pd.DataFrame(
                    {
                        "setting": setting,
                        "missing_rate": np.float64(rate),
                        "video_id": ids,
                        "missing": np.array([v in dropped for v in ids], dtype=bool),
                    }
                )
            )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["setting", "missing_rate", "video_id"], ignore_index=True)


def mask_lookup(masks: pd.DataFrame, setting: str, rate: float) -> dict[str, bool]:
    """``{video_id: missing}`` of one (setting, rate) of a ``missing_masks`` table."""
    sel = masks[(masks["setting"] == setting) & np.isclose(masks["missing_rate"], rate)]
    if sel.empty:
        raise KeyError(
            f"missing_masks has no rows for setting={setting!r}, missing_rate={rate}; "
            "re-run the evaluate pipeline's draw_missing_masks node"
        )
    return dict(zip(sel["video_id"].astype(str), sel["missing"].astype(bool), strict=True))


def video_mask(tensors: AVQATensors, lookup: dict[str, bool], split: str) -> np.ndarray:
    """Per-video bool mask aligned with ``tensors.video_ids`` from a ``{video_id: missing}``
    lookup; every video of ``split`` must be in the lookup."""
    split_videos = {tensors.video_ids[i] for i in tensors.videos_of(split)}
    absent = sorted(split_videos - set(lookup))
    if absent:
        raise ValueError(
            f"missing_masks has no row for {len(absent)} {split} videos (e.g. {absent[:3]}): "
            "it was drawn for other data; re-run the evaluate pipeline's draw_missing_masks node"
        )
    return np.array([bool(lookup.get(v, False)) for v in tensors.video_ids], dtype=bool)
