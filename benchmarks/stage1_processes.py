"""Stage I in one process and on worker processes (`pretrain.expert_processes`): same weights?
how much wall time and memory?

Trains stage I on an existing run's features (with its audio pretraining set and grounding
labels, the configuration's own `model`, `pretrain` and `train_missing` parameters, no
checkpoints) once per value of `--processes`, one after the other in this process, and reports
for each: wall time, CPU time (this process and its worker processes), the peak of the summed
resident memory of this process and its workers (RSS, what `scripts/reference_run.py` reports;
and PSS, where a page that several processes share counts once, split between them), the
stage-I timing of `pretrain_history.json`, and whether the weights, best epochs and val
history equal the first value's (the summed train loss compared to 1e-6).

    python benchmarks/stage1_processes.py --data data --processes 1 2 [--pretrain epochs=22] --out docs/results/stage1_processes.json
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from kedro.config import OmegaConfigLoader

import r2scp_pipeline
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.provenance import checkout, cpu_model
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.training import train_stage_one

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from reference_run import TreeMemory  # noqa: E402
from stage1_seeds import TABLES, emit, pretrain_overrides, seeds_parser  # noqa: E402

PACKAGE = Path(r2scp_pipeline.__file__).resolve().parent


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def same_history(a: dict, b: dict) -> bool:
    """Equal histories, the summed train loss to 1e-6 (each process sums its own experts)."""
    if list(a) != list(b):
        return False
    for key, values in a.items():
        if key == "train_loss":
            if len(values) != len(b[key]) or any(
                    abs(x - y) > 1e-6 * max(abs(x), 1.0) for x, y in zip(values, b[key], strict=True)):  # fmt: skip
                return False
        elif values != b[key]:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = seeds_parser(__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pretrain", action="append", default=[], metavar="KEY=VALUE",
                        help="change this pretrain parameter (value read as YAML), e.g. the "
                             "epochs of a run config")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    params = OmegaConfigLoader(str(args.conf), env=args.env, **CONFIG_LOADER_ARGS)["parameters"]
    overrides = pretrain_overrides(args.pretrain, params["pretrain"])
    pretrain = {**params["pretrain"], "checkpoint_dir": None, "progress_desc": None, **overrides}
    set_path = args.data / "04_feature/audio_pretraining_set.pt"
    if int((pretrain.get("audio_encoder") or {}).get("videos", 0)) and not set_path.exists():
        raise SystemExit(f"{set_path} is missing: run kedro run --pipelines=pretrain first")
    audio_set = torch.load(set_path, weights_only=True) if set_path.exists() else None
    tables = {name: pd.read_parquet(args.data / folder / f"{name}.parquet")
              for folder, name in TABLES}  # fmt: skip
    labels = args.data / "04_feature/grounding_labels.parquet"
    tensors = build_tensors(**tables,
                            grounding_labels=pd.read_parquet(labels) if labels.exists() else None)  # fmt: skip
    seed = int(args.seeds[0])
    runs, first = [], None
    for n in args.processes:
        cpu, tick = _cpu_seconds(), time.perf_counter()
        with TreeMemory(os.getpid()) as peak:  # this process and its workers
            model, summary = train_stage_one(tensors, params["model"],
                                             {**pretrain, "expert_processes": n},
                                             params.get("train_missing") or {}, seed, audio_set)  # fmt: skip
        run = {"expert_processes": n, "wall_s": round(time.perf_counter() - tick, 1),
               "cpu_s": round(_cpu_seconds() - cpu, 1),
               "peak_tree_rss_gb": round(peak.peak_bytes / 2**30, 2),
               "peak_tree_pss_gb": round(peak.peak_pss_bytes / 2**30, 2),
               "audio_encoder_s": (summary.get("audio_encoder") or {}).get("seconds"),
               "timing": summary["timing"], "epochs_run": summary["epochs_run"],
               "best_epoch": summary["best_epoch"], "best": summary["best"]}  # fmt: skip
        state = {k: v.clone() for k, v in model.state_dict().items()}
        if first is None:
            first = (state, summary)
        else:
            run["same_weights"] = all(torch.equal(v, state[k]) for k, v in first[0].items())
            run["same_history"] = same_history(first[1]["history"], summary["history"])
            run["same_best"] = (first[1]["best_epoch"], first[1]["best"]) == (
                summary["best_epoch"], summary["best"])
        runs.append(run)
    result = {
        "command": "python benchmarks/stage1_processes.py " + " ".join(argv or sys.argv[1:]),
        "env": args.env or "base", "seed": seed, "pretrain_overrides": overrides,
        "train_questions": int((tensors.split == "train").sum()),
        "videos": len(tensors.video_ids), "runs": runs, "torch": torch.__version__,
        "package": str(PACKAGE), **checkout(PACKAGE),
        "machine": dict(cpus=os.cpu_count(), cpu=cpu_model(), platform=platform.platform(),
                        load_average=list(os.getloadavg())),
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
