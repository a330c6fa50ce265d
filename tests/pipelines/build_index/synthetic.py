"""Synthetic upstream inputs in the data contracts' format, with audio-visual structure.

Each video plays 1-2 instruments; its audio segments are the sum of the instruments' audio
prototypes plus noise, its visual segments the sum of their (different) visual prototypes plus
noise, so a video's two modalities share meaning only through the instruments -- enough for a
joint space to learn and for the instrument-overlap metric to mean something.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from r2scp_pipeline.avqa import INSTRUMENTS
from r2scp_pipeline.tensors import tensor_to_frame


def make_inputs(
    n_videos: int = 30,
    audio_dim: int = 16,
    visual_dim: int = 24,
    segments: int = 4,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    noise: float = 0.5,
    n_instruments: int = 8,
    prefix: str = "vid",
) -> dict[str, pd.DataFrame]:
    """``video_index``, ``scene_metadata``, ``audio_features``, ``visual_features``."""
    rng = np.random.default_rng(seed)
    names = list(INSTRUMENTS[:n_instruments])
    proto_a = rng.normal(size=(n_instruments, audio_dim))
    proto_v = rng.normal(size=(n_instruments, visual_dim))
    ids = [f"{prefix}{i:05d}" for i in range(n_videos)]
    n_train = int(round(fractions[0] * n_videos))
    n_val = int(round(fractions[1] * n_videos))
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * (n_videos - n_train - n_val)
    inst, audio, visual = [], [], []
    for _ in ids:
        k = int(rng.integers(1, 3))
        chosen = sorted(rng.choice(n_instruments, size=k, replace=False).tolist())
        inst.append([names[c] for c in chosen])
        audio.append(proto_a[chosen].sum(0) + noise * rng.normal(size=(segments, audio_dim)))
        visual.append(proto_v[chosen].sum(0) + noise * rng.normal(size=(segments, visual_dim)))
    video_index = pd.DataFrame(
        {
            "video_id": ids,
            "split": splits,
            "audio_path": None,
            "frames_dir": None,
            "video_path": None,
        }
    )
    scene_metadata = pd.DataFrame({"video_id": ids, "split": splits, "instruments": inst})
    return {
        "video_index": video_index,
        "scene_metadata": scene_metadata,
        "audio_features": tensor_to_frame(ids, np.stack(audio)),
        "visual_features": tensor_to_frame(ids, np.stack(visual)),
    }
