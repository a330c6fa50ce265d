"""``benchmarks/visual_probe.py``: a linear probe per input size tags what stands in each grid
cell, trained on the training videos' cells and scored on the test videos'."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("visual_probe", ROOT / "benchmarks/visual_probe.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_tag_scores_count_tags_above_one_half():
    p = torch.tensor([[0.9, 0.2, 0.7], [0.1, 0.1, 0.1]])
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert bench.tag_scores(p, y) == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "exact_set": 0.5}


def _scene(root: Path, n_videos: int = 24) -> Path:
    """Videos of two frames, a grey stage with one bright square in the left or right third:
    a red square is a 'cello', a blue one a 'violin' (grounding labels of that cell)."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(n_videos):
        vid = f"{i:04d}"
        cls, cell = ("cello", "violin")[i % 2], (0, 2)[(i // 2) % 2]
        frames = root / "frames" / vid
        frames.mkdir(parents=True)
        for k in range(2):
            img = np.full((96, 96, 3), 120, np.uint8) + rng.integers(0, 20, (96, 96, 1), np.uint8)
            x0 = 6 + 64 * (cell // 2) + int(rng.integers(0, 4))
            img[30:60, x0 : x0 + 24] = (220, 30, 30) if cls == "cello" else (30, 30, 220)
            Image.fromarray(img).save(frames / f"{k + 1:06d}.jpg")
        split = "test" if i >= 16 else "train"
        rows.append({"video_id": vid, "splits": split, "frames_dir": f"frames/{vid}"})
        for s in range(3):
            labels.append({"video_id": vid, "modality": "visual", "t": 0, "s": s,
                           "instruments": [cls] if s == cell else []})  # fmt: skip
    data = root / "data"
    (data / "02_intermediate").mkdir(parents=True)
    (data / "04_feature").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(data / "02_intermediate/video_index.parquet")
    pd.DataFrame(labels).to_parquet(data / "04_feature/grounding_labels.parquet")
    return data


def test_the_probe_finds_what_stands_in_each_cell(tmp_path):
    data = _scene(tmp_path)
    out = tmp_path / "r.json"
    argv = ["--data", str(data), "--root", str(tmp_path), "--sizes", "96", "--frames", "0", "1",
            "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    r = json.loads(out.read_text())
    assert r["videos"] == {"train": 16, "test": 8} and r["grid"] == [1, 3]
    s = r["sizes"]["96"]
    assert s["feature_map"] == 3 and s["cpu_ms_per_frame"] > 0
    assert s["f1"] >= 0.75  # a red or blue square on grey: the probe must see which and where
    assert r["labels_per_cell"] == pytest.approx(1 / 3, abs=0.01)


def test_no_visual_labels_is_a_clear_error(tmp_path):
    data = _scene(tmp_path, n_videos=4)
    labels = pd.read_parquet(data / "04_feature/grounding_labels.parquet")
    labels.assign(modality="audio").to_parquet(data / "04_feature/grounding_labels.parquet")
    with pytest.raises(SystemExit, match="no visual rows"):
        bench.main(["--data", str(data), "--root", str(tmp_path), "--sizes", "64"])


def test_too_few_frames_or_a_grid_the_labels_do_not_fit_are_clear_errors(tmp_path):
    data = _scene(tmp_path, n_videos=4)
    common = ["--data", str(data), "--root", str(tmp_path), "--sizes", "96"]
    with pytest.raises(SystemExit, match="has 2 frames; --frames asks for frame index 5"):
        bench.main([*common, "--frames", "0", "5"])
    with pytest.raises(SystemExit, match="outside the 2 cells of --grid"):
        bench.main([*common, "--grid", "1", "2"])
