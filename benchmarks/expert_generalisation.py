"""Do the stage-I experts see and hear as well on unseen videos as on their training videos?

Reads an existing run (``data/`` after a default ``kedro run``: the features, the grounding
labels and ``06_models/stage1_experts.pt``) and scores the frozen experts on the training, val
and test splits:

- each expert's answer accuracy alone (eq. 10 heads), and the plain average of the three
  experts' answer probabilities (what stage II could reach by weighting them evenly);
- the grounding heads (docs/model.md "Grounding") against the generator's labels: per audio
  second and per visual grid cell, precision and recall of the instruments tagged above 0.5
  and the share of seconds / cells whose whole set is right.

A large train-test gap in the grounding says the experts memorise what they see and hear in
the training videos rather than recognise the instruments: the limit of the answers that need
the instruments (localisation, temporal order) on test videos.

    python benchmarks/expert_generalisation.py --data data --out docs/results/expert_generalisation.json
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

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.grounding import presence
from r2scp_pipeline.training import load_model, predict_expert_log_probs
from r2scp_pipeline.vocabulary import EXPERTS, MODALITIES

SPLITS = ("train", "val", "test")


def grounding_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Tags above 0.5 against multi-hot labels ``[..., K]``: precision, recall, exact set."""
    hit, y = logits > 0, labels > 0.5
    tp, fp, fn = (hit & y).sum().item(), (hit & ~y).sum().item(), (~hit & y).sum().item()
    return {"precision": round(tp / max(tp + fp, 1), 3), "recall": round(tp / max(tp + fn, 1), 3),
            "exact_set": round((hit == y).all(-1).float().mean().item(), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="stage-I model (default <data>/06_models/stage1_experts.pt)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    read = lambda name: pd.read_parquet(args.data / name)  # noqa: E731
    labels_path = args.data / "04_feature/grounding_labels.parquet"
    if not labels_path.exists():
        raise SystemExit(f"{labels_path} is missing: the grounding labels exist for the embedded "
                         "dataset only (run `kedro run --pipelines=dataset,features` first)")  # fmt: skip
    tensors = build_tensors(read("02_intermediate/qa_pairs.parquet"),
                            read("04_feature/audio_features.parquet"),
                            read("04_feature/visual_features.parquet"),
                            read("04_feature/question_features.parquet"),
                            grounding_labels=pd.read_parquet(labels_path))  # fmt: skip
    ckpt_path = args.checkpoint or args.data / "06_models/stage1_experts.pt"
    model = load_model(torch.load(ckpt_path, map_location="cpu", weights_only=False)).eval()
    if model.grounding is None:
        raise SystemExit(f"{ckpt_path} has no grounding heads (pretrain.grounding_weight: 0)")
    result: dict = {
        "command": "python benchmarks/expert_generalisation.py " + " ".join(argv or sys.argv[1:]),
        "checkpoint": str(ckpt_path), "answers": {}, "grounding": {},
    }  # fmt: skip
    for split in SPLITS:
        rows = tensors.indices(split)
        if not len(rows):
            continue
        logp = predict_expert_log_probs(model, tensors, split)  # {m: [Q, n_answers]}
        y = tensors.answer[rows]
        acc = {m: round(100 * (logp[m].argmax(-1) == y).float().mean().item(), 2) for m in EXPERTS}
        avg = torch.stack([logp[m].exp() for m in EXPERTS]).mean(0)
        acc["average of the three"] = round(100 * (avg.argmax(-1) == y).float().mean().item(), 2)
        result["answers"][split] = {"questions": len(rows), **acc}
        videos = torch.as_tensor(np.unique(tensors.video[rows].numpy()))
        known = tensors.grounding_known[videos]
        videos = videos[known]
        result["grounding"][split] = {"videos": len(videos)}
        with torch.no_grad():
            for m in MODALITIES:
                h = model.encode(m, tensors.features(m)[videos])
                result["grounding"][split][m] = grounding_scores(  # the audio tags: presence
                    presence(model.grounding(m, h)), presence(tensors.grounding[m][videos])
                )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "load_average": list(os.getloadavg())}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
