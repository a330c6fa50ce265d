"""Does a stage-II option change what R2ScP learns? (stage II's seed spread, with and without it)

Trains R2ScP's stage II (CMR + CAP + router, eqs. 11-15) on an existing run's data and frozen
stage-I experts once per seed: the configuration as it is (`conf/` and `--env`), and once more
per `--variant NAME KEY=VALUE[,KEY=VALUE...]` with those `mix.` or `model.` parameters changed.
Reports per variant and seed the best val score, the test accuracy with both modalities, with
the audio missing and with the picture missing (every test video, rate 1.0), the accuracy on
the memorisation check's training questions, the epochs run, the training samples/s and the
complete test accuracy per question type, then mean and sample sd over seeds. No checkpoints
are written.

    python benchmarks/stage2_seeds.py --data data --seeds 42 43 44 \\
        --variant uniform_batches mix.batch_by_video=false --out docs/results/stage2_batching.json

The run's own seed with the configuration as it is must repeat the run's
`08_reporting/mix_history.json` epoch for epoch when that file is there (and the run's code
and processor are this one's); the benchmark says whether it does.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from kedro.config import OmegaConfigLoader

import r2scp_pipeline
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.provenance import checkout, cpu_model
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.training import predict, train_stage_two

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage1_seeds import by_type, emit, seeds_parser, spread  # noqa: E402

PACKAGE = Path(r2scp_pipeline.__file__).resolve().parent
TABLES = (("02_intermediate", "qa_pairs"), ("04_feature", "audio_features"),
          ("04_feature", "visual_features"), ("04_feature", "question_features"),
          ("05_model_input", "memory_bank_audio"), ("05_model_input", "memory_bank_visual"),
          ("05_model_input", "neighbors"))  # fmt: skip
STAGE1 = "06_models/stage1_experts.pt"
BLOCKS = ("mix", "model")


def parse_variant(name: str, assignments: str) -> tuple[str, dict[str, dict]]:
    """``("uniform", "mix.batch_by_video=false,model.k_purge=3")`` -> the name and
    ``{"mix": {...}, "model": {...}}`` (values read as YAML)."""
    over: dict[str, dict] = {b: {} for b in BLOCKS}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        block, _, field = key.partition(".")
        if not sep or block not in BLOCKS or not field or "." in field:
            raise SystemExit(f"--variant {name}: {item!r} is not mix.KEY=VALUE or model.KEY=VALUE")
        over[block][field] = yaml.safe_load(value)
    return name, over


def main(argv: list[str] | None = None) -> int:
    parser = seeds_parser(__doc__)
    parser.add_argument("--variant", nargs=2, action="append", default=[],
                        metavar=("NAME", "KEY=VALUE,..."),
                        help="also train with these mix./model. parameters changed")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = [("configured", {b: {} for b in BLOCKS})] + [parse_variant(*v) for v in args.variant]
    if len({name for name, _ in variants}) < len(variants):
        raise SystemExit("--variant names must differ from each other and from 'configured'")
    tick = time.perf_counter()
    params = OmegaConfigLoader(str(args.conf), env=args.env, **CONFIG_LOADER_ARGS)["parameters"]
    stage1_path = args.data / STAGE1
    if not stage1_path.exists():
        raise SystemExit(f"{stage1_path} is missing: run kedro run --pipelines=pretrain first")
    stage1 = torch.load(stage1_path, map_location="cpu", weights_only=False)
    tables = {name: pd.read_parquet(args.data / folder / f"{name}.parquet")
              for folder, name in TABLES}  # fmt: skip
    model_params = params["model"]
    tensors = build_tensors(**tables, n_neighbors=int(model_params["n_retrieve"]))
    qa = tables["qa_pairs"]
    types = pd.Series((qa["modality"] + " " + qa["subtype"]).to_numpy(), index=qa["question_id"])
    history_path = args.data / "08_reporting/mix_history.json"
    reference = json.loads(history_path.read_text()) if history_path.exists() else None
    runs, reproduced = {}, None
    for name, over in variants:
        mix = {**params["mix"], "checkpoint_dir": None, "progress_desc": None, **over["mix"]}
        model_cfg = {**model_params, **over["model"]}
        per_seed = {}
        for seed in args.seeds:
            model, summary = train_stage_two(stage1, tensors, model_cfg, mix,
                                             params.get("train_missing") or {}, seed)  # fmt: skip
            best = summary["best"]
            preds = {s: predict(model, tensors, "test", s) for s in ("none", "audio", "visual")}
            per_seed[str(seed)] = {
                "val_score": round(float(best["val_score"]), 4),
                **{f"test_{s}": round(p.accuracy, 4) for s, p in preds.items()},
                "train_none": round(float(best["train_acc_none"]), 4),
                "epochs": int(summary["epochs_run"]),
                "samples_per_s": float(summary["timing"]["train_samples_per_s"]),
                **by_type(preds["none"].pred == preds["none"].answer,
                          types.loc[preds["none"].question_id].to_numpy(), "test_none"),
            }  # fmt: skip
            if name == "configured" and reference is not None and seed == int(params["seed"]):
                reproduced = summary["history"] == reference["history"]
        runs[name] = {"overrides": over, "seeds": per_seed, "spread": spread(per_seed)}
    result = {
        "command": "python benchmarks/stage2_seeds.py " + " ".join(argv or sys.argv[1:]),
        "env": args.env or "base", "data": str(args.data),
        "train_questions": int((tensors.split == "train").sum()),
        "test_questions": len(tensors.indices("test")), "variants": runs,
        "run_seed": int(params["seed"]), "run_history_reproduced": reproduced,
        "seconds": round(time.perf_counter() - tick, 1), "torch": torch.__version__,
        "package": str(PACKAGE), **checkout(PACKAGE),
        "machine": dict(cpus=os.cpu_count(), cpu_model=cpu_model(), platform=platform.platform(),
                        load_average=list(os.getloadavg())),
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
