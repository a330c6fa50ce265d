"""Data-parallel training throughput: 1 process x 1 thread against N processes x 1 thread.

    python benchmarks/ddp.py                          # writes docs/results/ddp.json
    python benchmarks/ddp.py --videos 150 --epochs 1 --out /tmp/ddp_smoke.json   # smoke test

Synthetic data of the default dataset's shape (``--videos``, 70% train; Da=128, Dv=1280,
Dt=384, T=10, 3 neighbours; tests/synthetic.py) and the parameters of conf/base (patience
off, no checkpoints, ``threads: 1``). Each configuration runs in fresh processes: one plain
``python`` process (the one-process path, no process group), then ``torchrun
--nproc-per-node=N`` (gloo); each trains stage I, then stage II from its own experts, for
``--epochs`` epochs. samples/s counts training steps only (the global batches of all ranks;
the per-epoch val evaluation, on rank 0, and stage II's expert cache are reported apart as
part of each stage's wall time). Accuracy: each stage's best val score (stage I: mean of the
three experts; stage II: mean over the val settings); the runs draw other dropout masks, so
they agree within ``--accuracy-tolerance`` points, not bitwise (docs/scaling.md).

The target (issue 13): N=2 reaches >= 1.6x the samples/s of one process, on an otherwise idle
machine with >= 2 cores; the 1-minute load average before and after each run is recorded.

A third run, one process at the per-rank batch (global / N), gives the bound without
communication: N times its samples/s over the one-process figure at the global batch is the
speedup N ranks would reach if their gradients were averaged for free and no rank ever waited.
Per-step costs that do not shrink with the batch (operator dispatch, the optimizer) keep it
below N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 1.6


def worker(args: argparse.Namespace) -> None:
    """One configuration (run as a plain process or as every rank under torchrun)."""
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(1, str(ROOT))  # the synthetic tables are a test fixture: tests/synthetic.py
    import torch

    from r2scp_pipeline import distributed
    from r2scp_pipeline.data import build_tensors
    from r2scp_pipeline.training import model_checkpoint, train_stage_one, train_stage_two
    from tests.synthetic import make_synthetic_tables

    torch.set_num_threads(1)
    dist = distributed.init()
    try:
        base = {n: yaml.safe_load((ROOT / f"conf/base/parameters_{n}.yml").read_text())
                for n in ("model", "pretrain", "mix")}  # fmt: skip
        model_params = {**base["model"]["model"]}
        if args.dropout is not None:
            model_params["dropout"] = args.dropout
        loops = {s: {**base[s][s], "epochs": args.epochs, "patience": 10**6, "checkpoint_dir": None,
                     "threads": 1, "device": "cpu"} for s in ("pretrain", "mix")}  # fmt: skip
        if args.batch_size is not None:  # the global (effective) batch of both stages
            for s in loops:
                loops[s]["batch_size"] = args.batch_size
        tables = make_synthetic_tables(n_videos=args.videos, d_audio=128, d_visual=1280, d_text=384,
                                       n_instruments=22, neighbor_ranks=3, seed=0)  # fmt: skip
        tensors = build_tensors(**tables, n_neighbors=model_params["n_retrieve"])
        out = {"world_size": dist.world_size if dist else 1,
               "train_questions": int((tensors.split == "train").sum()),
               "val_questions": int((tensors.split == "val").sum())}  # fmt: skip
        tick = time.perf_counter()
        model, s1 = train_stage_one(tensors, model_params, loops["pretrain"], {}, seed=0)
        wall1 = time.perf_counter() - tick
        tick = time.perf_counter()
        _, s2 = train_stage_two(model_checkpoint(model, {"stage_one": True}), tensors,
                                model_params, loops["mix"], {}, seed=0)  # fmt: skip
        wall2 = time.perf_counter() - tick
        for key, s, wall in (("stage_one", s1, wall1), ("stage_two", s2, wall2)):
            t = s["timing"]
            out[key] = {"samples_per_s": t["train_samples_per_s"], "train_s": t["train_seconds"],
                        "train_cpu_s": t["train_cpu_seconds"], "eval_s": t["eval_seconds"],
                        "wall_s": round(wall, 2),
                        "best_val_score": round(100 * s["best"]["val_score"], 2)}  # fmt: skip
        if not dist or dist.is_main:
            Path(args.worker_out).write_text(json.dumps(out))
    finally:
        distributed.teardown()


def global_batch(args: argparse.Namespace) -> int:
    """The global batch of both stages: ``--batch-size``, else conf/base's (equal in both)."""
    if args.batch_size is not None:
        return args.batch_size
    sizes = {int(yaml.safe_load((ROOT / f"conf/base/parameters_{s}.yml").read_text())[s]["batch_size"])
             for s in ("pretrain", "mix")}  # fmt: skip
    if len(sizes) != 1:
        raise SystemExit(f"pretrain and mix batch sizes differ in conf/base ({sorted(sizes)}): "
                         "pass --batch-size")  # fmt: skip
    return sizes.pop()


def run_config(nproc: int, args: argparse.Namespace, tmp: Path, batch: int | None = None) -> dict:
    """One configuration: ``nproc`` processes at the global batch, or one process at
    ``batch`` (the per-rank batch of the bound without communication)."""
    out = tmp / f"nproc{nproc}_batch{batch}.json"
    flags = ["--worker-out", str(out), "--videos", str(args.videos), "--epochs", str(args.epochs)]
    if args.dropout is not None:
        flags += ["--dropout", str(args.dropout)]
    batch = batch or args.batch_size
    if batch is not None:
        flags += ["--batch-size", str(batch)]
    script = [str(Path(__file__).resolve()), *flags]
    if nproc == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", *script]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    load_before = os.getloadavg()[0]
    print(f"$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    r = json.loads(out.read_text())
    r["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=2000, help="synthetic videos (70%% train)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each stage")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the DDP run")
    ap.add_argument("--dropout", type=float, default=None, help="default: conf/base's")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="global batch of both stages, equal for 1 and N processes (default: conf/base's)")
    ap.add_argument("--accuracy-tolerance", type=float, default=2.0,
                    help="points of best val score the runs may differ by (docs/scaling.md)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "docs/results/ddp.json")
    ap.add_argument("--label", default="", help="a note stored with the result (e.g. smoke test)")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
        return

    import torch

    command = "python benchmarks/ddp.py " + shlex.join(sys.argv[1:])
    per_rank = global_batch(args) // args.nproc
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_config(n, args, Path(tmp)) for n in (1, args.nproc)]
        sliced = run_config(1, args, Path(tmp), batch=per_rank)
    one, many = runs
    result = {
        "command": command.strip(),
        "label": args.label,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__.split("+")[0]},  # fmt: skip
        "videos": args.videos,
        "epochs": args.epochs,
        "dropout": args.dropout,
        "batch_size": args.batch_size,
        "train_questions": one["train_questions"],
        "val_questions": one["val_questions"],
        "accuracy_tolerance": args.accuracy_tolerance,
        "target_speedup": TARGET_SPEEDUP,
        "runs": runs,
        "per_rank_batch": per_rank,
        "one_process_at_per_rank_batch": sliced,
    }
    for stage in ("stage_one", "stage_two"):
        speedup = many[stage]["samples_per_s"] / one[stage]["samples_per_s"]
        delta = many[stage]["best_val_score"] - one[stage]["best_val_score"]
        bound = args.nproc * sliced[stage]["samples_per_s"] / one[stage]["samples_per_s"]
        result[stage] = {"speedup": round(speedup, 2), "speedup_met": speedup >= TARGET_SPEEDUP,
                         "bound_without_communication": round(bound, 2),
                         "accuracy_delta": round(delta, 2),
                         "accuracy_met": abs(delta) <= args.accuracy_tolerance}  # fmt: skip
        print(f"{stage}: {one[stage]['samples_per_s']:.1f} samples/s (1 x 1 thread) -> "
              f"{many[stage]['samples_per_s']:.1f} ({args.nproc} x 1 thread): {speedup:.2f}x "
              f"(target >= {TARGET_SPEEDUP}); best val score {one[stage]['best_val_score']:.2f} -> "
              f"{many[stage]['best_val_score']:.2f} (tolerance {args.accuracy_tolerance}); "
              f"bound without communication {bound:.2f}x (1 process at batch {per_rank})")  # fmt: skip
    print(f"load average (1 min) before/after: {one['load_average']}, {many['load_average']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
