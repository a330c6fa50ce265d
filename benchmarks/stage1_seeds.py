"""How much does one stage-I run owe to its seed? (the spread behind single-run comparisons)

Trains stage I (the three experts, eq. 10, with the run's grounding heads) on an existing run's
features once per seed, with the configuration's own `model`, `pretrain` and `train_missing`
parameters (read from `conf/` and `--env`; no checkpoints written), and reports per seed each
expert's best val accuracy and its accuracy on the test questions, then the mean and the
sample standard deviation over seeds. Two runs that differ by less than a couple of these
standard deviations in an expert's score cannot tell their configurations apart.

    python benchmarks/stage1_seeds.py --data data --seeds 42 43 44 --out docs/results/stage1_seeds.json

The run's own seed (42 by default) must reproduce its `08_reporting/pretrain_history.json`
epoch for epoch when that file is there; the benchmark says whether it does.

The audio encoder's pretraining (`pretrain.audio_encoder`) reads the run's
`04_feature/audio_pretraining_set.pt`; `--no-audio-pretraining` trains every seed without it
(`pretrain.audio_encoder.videos: 0`, the `no_audio_pretraining` ablation's stage I), so the two
files compare the pretraining on the same data and seeds. `--pretrain KEY=VALUE` (repeatable,
the value read as YAML) changes any other `pretrain` parameter the same way, e.g.
`--pretrain grounding_attributes=false`. Each seed also reports each expert's test accuracy per
question type (`test_<expert>/<modality> <subtype>`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from kedro.config import OmegaConfigLoader

import r2scp_pipeline
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.provenance import checkout
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.training import predict_expert_log_probs, train_stage_one
from r2scp_pipeline.vocabulary import EXPERTS

PACKAGE = Path(r2scp_pipeline.__file__).resolve().parent
TABLES = (("02_intermediate", "qa_pairs"), ("04_feature", "audio_features"),
          ("04_feature", "visual_features"), ("04_feature", "question_features"))  # fmt: skip


def spread(per_seed: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{key: {"mean", "sd"}}`` over the seeds of ``{seed: {key: value}}`` (sd: sample, 0
    for a single seed)."""
    keys = next(iter(per_seed.values())).keys()
    out = {}
    for k in keys:
        values = [float(v[k]) for v in per_seed.values()]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[k] = {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4)}
    return out


def seeds_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every seeds benchmark takes: a run's data, its configuration, the seeds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--conf", type=Path, default=Path("conf"))
    parser.add_argument("--env", default=None, help="configuration environment of the run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    return parser


def emit(result: dict, out: Path | None) -> int:
    """Print ``result`` as JSON and write it to ``out`` when given; the exit status (0)."""
    text = json.dumps(result, indent=1) + "\n"
    sys.stdout.write(text)
    if out:
        out.write_text(text)
    return 0


def by_type(right: np.ndarray, types: np.ndarray, prefix: str) -> dict[str, float]:
    """Accuracy per question type, ``{"<prefix>/<modality> <subtype>": share}``, of ``right``
    (bool per question) with ``types`` (each question's type, same order)."""
    return {f"{prefix}/{t}": round(float(right[types == t].mean()), 4) for t in sorted(set(types))}


def pretrain_overrides(items: list[str], pretrain: dict) -> dict:
    """``["grounding_attributes=false"]`` -> ``{"grounding_attributes": False}`` (values read
    as YAML); a key that ``pretrain`` lacks is refused, so a typo cannot pass unnoticed."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in pretrain:
            raise SystemExit(f"--pretrain {item!r}: expected KEY=VALUE with KEY one of "
                             f"{sorted(pretrain)}")  # fmt: skip
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = seeds_parser(__doc__)
    parser.add_argument("--no-audio-pretraining", action="store_true",
                        help="stage I without the audio encoder's pretraining")
    parser.add_argument("--pretrain", action="append", default=[], metavar="KEY=VALUE",
                        help="change this pretrain parameter (value read as YAML)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    tick = time.perf_counter()
    params = OmegaConfigLoader(str(args.conf), env=args.env, **CONFIG_LOADER_ARGS)["parameters"]
    overrides = pretrain_overrides(args.pretrain, params["pretrain"])
    pretrain = {**params["pretrain"], "checkpoint_dir": None, "progress_desc": None, **overrides}
    if args.no_audio_pretraining:
        pretrain["audio_encoder"] = {**pretrain.get("audio_encoder", {}), "videos": 0}
    set_path = args.data / "04_feature/audio_pretraining_set.pt"
    videos = int((pretrain.get("audio_encoder") or {}).get("videos", 0))
    if videos and not set_path.exists():
        raise SystemExit(f"{set_path} is missing: run kedro run --pipelines=pretrain first, or "
                         "pass --no-audio-pretraining")  # fmt: skip
    audio_set = torch.load(set_path, weights_only=True) if videos else None
    tables = {name: pd.read_parquet(args.data / folder / f"{name}.parquet")
              for folder, name in TABLES}  # fmt: skip
    labels = args.data / "04_feature/grounding_labels.parquet"
    tensors = build_tensors(**tables,
                            grounding_labels=pd.read_parquet(labels) if labels.exists() else None)  # fmt: skip
    test = tensors.indices("test")
    y = tensors.answer[test]
    qa = tables["qa_pairs"].set_index("question_id").loc[tensors.question_id[test]]
    types = (qa["modality"] + " " + qa["subtype"]).to_numpy()
    history_path = args.data / "08_reporting/pretrain_history.json"
    reference = json.loads(history_path.read_text()) if history_path.exists() else None
    per_seed, reproduced = {}, None
    for seed in args.seeds:
        model, summary = train_stage_one(tensors, params["model"], pretrain,
                                         params.get("train_missing") or {}, seed, audio_set)  # fmt: skip
        logp = predict_expert_log_probs(model.eval(), tensors, "test")
        right = {m: (logp[m].argmax(-1) == y).numpy() for m in EXPERTS}
        per_seed[str(seed)] = {
            **{f"val_{m}": round(float(summary["best"][f"val_acc_{m}"]), 4) for m in EXPERTS},
            **{f"test_{m}": round(float(right[m].mean()), 4) for m in EXPERTS},
            **{f"epoch_{m}": int(summary["best_epoch"][m]) for m in EXPERTS},
            **{k: v for m in EXPERTS for k, v in by_type(right[m], types, f"test_{m}").items()},
        }  # fmt: skip
        # the run's own configuration only: with or without the audio encoder's pretraining
        same_config = not overrides and reference is not None and (
            "audio_encoder" in reference) == bool(summary.get("audio_encoder"))  # fmt: skip
        if same_config and seed == int(params["seed"]):
            reproduced = summary["history"] == reference["history"]
    result = {
        "command": "python benchmarks/stage1_seeds.py " + " ".join(argv or sys.argv[1:]),
        "env": args.env or "base", "train_questions": int((tensors.split == "train").sum()),
        "audio_pretraining_videos": videos, "pretrain_overrides": overrides,
        "test_questions": len(test), "seeds": per_seed, "spread": spread(per_seed),
        "run_seed": int(params["seed"]), "run_history_reproduced": reproduced,
        "seconds": round(time.perf_counter() - tick, 1), "torch": torch.__version__,
        # the checkout whose r2scp_pipeline ran (with PYTHONPATH, not necessarily this one)
        "package": str(PACKAGE), **checkout(PACKAGE),
    }  # fmt: skip
    result["machine"] = dict(cpus=os.cpu_count(), platform=platform.platform(),
                             load_average=list(os.getloadavg()))  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
