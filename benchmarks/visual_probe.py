"""Which EfficientNet-Lite0 input size lets a grid cell's feature say which instruments stand
in it? (the evidence behind ``features.visual.efficientnet_lite0.input_size``)

On an existing run's embedded dataset (``data/`` after ``kedro run --pipelines=dataset,features``:
``video_index``, ``04_feature/grounding_labels.parquet``), for each input size: encode a few
frames of every video with the project's :class:`EfficientNetLite0Encoder` at the configured
grid, average them per cell (the instruments stand still; only the sounding cue moves), train a
linear probe on the training videos' cells to tag the instruments seen in the cell (the visual
grounding heads' task, per-class binary cross-entropy) and score it on the test videos' cells:
micro precision / recall / F1 of the tags above 0.5 and the share of cells whose whole set is
right. CPU milliseconds per frame of the encoder, one thread, are reported next to them.

    python benchmarks/visual_probe.py --data data --sizes 128 160 192 224 --out docs/results/visual_probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from r2scp_pipeline import avqa
from r2scp_pipeline.encoders import (
    EfficientNetLite0Encoder,
    decode_frame,
    feature_map_size,
    list_frames,
)


def tag_scores(p: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Tags above 0.5 against multi-hot labels [N, K]: micro precision, recall, F1, exact set."""
    hit, yb = p > 0.5, y.bool()
    tp, fp, fn = (hit & yb).sum().item(), (hit & ~yb).sum().item(), (~hit & yb).sum().item()
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": round(prec, 3), "recall": round(rec, 3),
            "f1": round(2 * prec * rec / max(prec + rec, 1e-12), 3),
            "exact_set": round((hit == yb).all(1).float().mean().item(), 3)}  # fmt: skip


def linear_probe(x: torch.Tensor, y: torch.Tensor, tr: torch.Tensor, te: torch.Tensor,
                 c: float, steps: int) -> dict[str, float]:  # fmt: skip
    """L2-regularised logistic regression per instrument on standardised features (the
    objective of scikit-learn's ``LogisticRegression(C=c)``, one-vs-rest), fitted with L-BFGS on
    the training cells and scored on the test cells."""
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    x = (x - mu) / sd
    net = torch.nn.Linear(x.shape[1], y.shape[1])
    torch.nn.init.zeros_(net.weight)
    torch.nn.init.zeros_(net.bias)
    n = int(tr.sum())
    opt = torch.optim.LBFGS(net.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        # per class: C * sum of log losses + ||w||^2 / 2, divided by C * n (same minimiser)
        loss = F.binary_cross_entropy_with_logits(net(x[tr]), y[tr], reduction="sum") / n
        loss = loss + net.weight.pow(2).sum() / (2 * c * n)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return tag_scores(net(x[te]).sigmoid(), y[te])


def machine() -> dict:
    """Cores, platform and the 1/5/15-minute load averages at the end of the run."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average": list(os.getloadavg())}  # fmt: skip


def cell_labels(path: Path, ids: list[str], cells: int) -> torch.Tensor:
    """``grounding_labels`` visual rows -> instruments seen in each cell over the video [V*S, K]."""
    labels = pd.read_parquet(path)
    labels = labels[labels["modality"] == "visual"]
    if labels.empty:
        raise SystemExit(f"{path} has no visual rows: the labels exist for the embedded dataset")
    if int(labels["s"].max()) >= cells:
        raise SystemExit(f"{path} labels cell {int(labels['s'].max())}, outside the {cells} cells "
                         "of --grid: pass the grid the features were made with")  # fmt: skip
    pos = {v: i for i, v in enumerate(ids)}
    y = torch.zeros(len(ids), cells, len(avqa.INSTRUMENTS))
    for vid, s, names in zip(labels["video_id"], labels["s"], labels["instruments"], strict=True):
        if vid in pos:
            for c in names:
                y[pos[vid], s, avqa.INSTRUMENTS.index(c)] = 1.0
    return y.view(-1, y.shape[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--root", type=Path, default=Path("."), help="base of video_index's paths")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 192, 224])
    ap.add_argument("--grid", type=int, nargs=2, default=[1, 3], metavar=("ROWS", "COLS"))
    ap.add_argument("--frames", type=int, nargs="+", default=[0, 5],
                    help="frame indices encoded per video (averaged per cell)")  # fmt: skip
    ap.add_argument("--c", type=float, default=0.5, help="inverse L2 strength of the probe")
    ap.add_argument("--steps", type=int, default=200, help="L-BFGS iterations")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    index = pd.read_parquet(args.data / "02_intermediate/video_index.parquet")
    index = index.sort_values("video_id").reset_index(drop=True)
    ids = index["video_id"].astype(str).tolist()
    cells = args.grid[0] * args.grid[1]
    y = cell_labels(args.data / "04_feature/grounding_labels.parquet", ids, cells)
    split = index["splits"].astype(str).str.split("+")
    in_train = split.apply(lambda s: "train" in s).to_numpy()
    in_test = split.apply(lambda s: "test" in s and "train" not in s).to_numpy()
    tr, te = (torch.as_tensor(np.repeat(m, cells)) for m in (in_train, in_test))  # per cell
    frames = {vid: list_frames(args.root / d) for vid, d in zip(ids, index["frames_dir"], strict=True)}
    short = [vid for vid, f in frames.items() if len(f) <= max(args.frames)]
    if short:
        raise SystemExit(f"video {short[0]!r} has {len(frames[short[0]])} frames; --frames asks "
                         f"for frame index {max(args.frames)}")  # fmt: skip
    result = {
        "command": "python benchmarks/visual_probe.py " + " ".join(argv or sys.argv[1:]),
        "videos": {"train": int(tr.sum()) // cells, "test": int(te.sum()) // cells},
        "grid": args.grid, "frames_per_video": len(args.frames),
        "labels_per_cell": round(float(y.sum(1).mean()), 2),
        "torch": torch.__version__, "sizes": {},
    }  # fmt: skip
    for size in args.sizes:
        enc = EfficientNetLite0Encoder(size, args.grid)
        feats, cpu = [], 0.0
        for vid in tqdm(ids, desc=f"visual probe {size} px", unit="video", mininterval=2.0):
            x = np.stack([decode_frame(frames[vid][i], size) for i in args.frames])
            tick = time.process_time()
            feats.append(torch.from_numpy(enc(x)).mean(0))  # [S, D]
            cpu += time.process_time() - tick
        x = torch.stack(feats).view(-1, enc.dim)  # [V*S, D]
        result["sizes"][str(size)] = {
            "feature_map": feature_map_size(size),
            "cpu_ms_per_frame": round(1000 * cpu / (len(ids) * len(args.frames)), 1),
            **linear_probe(x, y, tr, te, args.c, args.steps),
        }
    result["machine"] = machine()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
