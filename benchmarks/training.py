"""Training throughput of R2ScP: stage I and stage II samples/s and peak memory.

    python benchmarks/training.py                       # synthetic, default-dataset scale
    python benchmarks/training.py --project /path/to/kedro/project   # its catalog tables
    python benchmarks/training.py --epochs 2 --threads 2 --d-model 128
    python benchmarks/training.py --project PROJECT --threads 1 2 --out docs/results/training_threads.json

Synthetic data has the default dataset's shape (700 train videos of 1000, ~6.5 questions per
video, Da=128, Dv=1280, Dt=384, T=10, 3 neighbours). Both stages run ``--epochs`` epochs with
the default parameters of conf/base (patience off); samples/s counts training steps only
(the per-epoch val evaluation and stage II's one-off expert-encoding cache are printed
separately). Peak memory is the process's max RSS (and CUDA's max allocated, on a GPU).

With several ``--threads`` both stages run once per count, from the same seed: the rates say
what the ``<stage>.threads`` parameters buy on this machine, and the best val scores whether
the numbers stay the same (more threads may sum in another order). ``--out`` writes it all as
JSON (docs/model.md renders ``docs/results/training_threads.json``). Run it on an otherwise
idle machine: threads share the cores with everything else. ``--busy N`` keeps N other
processes spinning meanwhile, to see what the thread counts cost on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))  # the synthetic tables are a test fixture: tests/synthetic.py

from r2scp_pipeline.data import build_tensors  # noqa: E402
from r2scp_pipeline.provenance import checkout, cpu_model  # noqa: E402
from r2scp_pipeline.training import model_checkpoint, train_stage_one, train_stage_two  # noqa: E402
from tests.synthetic import make_synthetic_tables  # noqa: E402

TABLES = {
    "qa_pairs": "data/02_intermediate/qa_pairs.parquet",
    "audio_features": "data/04_feature/audio_features.parquet",
    "visual_features": "data/04_feature/visual_features.parquet",
    "question_features": "data/04_feature/question_features.parquet",
    "memory_bank_audio": "data/05_model_input/memory_bank_audio.parquet",
    "memory_bank_visual": "data/05_model_input/memory_bank_visual.parquet",
    "neighbors": "data/05_model_input/neighbors.parquet",
}
GROUNDING_LABELS = "data/04_feature/grounding_labels.parquet"


def base_params(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf/base" / f"parameters_{name}.yml").read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--project", type=Path, help="read the catalog tables of this Kedro project")
    ap.add_argument("--videos", type=int, default=1000, help="synthetic videos (70%% train)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="torch CPU threads; several: one run of both stages per count")  # fmt: skip
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the measurements as JSON")
    ap.add_argument("--busy", type=int, default=0,
                    help="processes that keep a core busy while the stages run (a shared machine)")  # fmt: skip
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.threads):
        ap.error(f"--threads must be positive, got {args.threads}")

    params = base_params("model")
    model_params, train_missing = params["model"], params["train_missing"]
    if args.d_model:
        model_params = {**model_params, "d_model": args.d_model}
    loops = {}
    for stage in ("pretrain", "mix"):
        p = base_params(stage)[stage]
        p.update(epochs=args.epochs, patience=10**6, checkpoint_dir=None)
        if args.batch_size:
            p["batch_size"] = args.batch_size
        loops[stage] = p

    tick = time.perf_counter()
    if args.project:
        tables = {k: pd.read_parquet(args.project / v) for k, v in TABLES.items()}
        labels = args.project / GROUNDING_LABELS
        if labels.exists():  # the embedded dataset's: stage I then trains its grounding heads
            tables["grounding_labels"] = pd.read_parquet(labels)
        source = f"project {args.project}"
    else:
        tables = make_synthetic_tables(n_videos=args.videos, d_audio=128, d_visual=1280, d_text=384,
                                       n_instruments=22, neighbor_ranks=3, seed=0)  # fmt: skip
        source = f"synthetic, {args.videos} videos"
    tensors = build_tensors(**tables, n_neighbors=model_params["n_retrieve"])
    n_train = int((tensors.split == "train").sum())
    print(f"data: {source}; {n_train} training questions; dims {tensors.dims}; "
          f"built in {time.perf_counter() - tick:.1f} s")  # fmt: skip
    with busy_cores(args.busy):
        runs = [measure(tensors, model_params, train_missing, loops, n) for n in args.threads]
    if len(runs) > 1:
        first = runs[0]
        for r in runs[1:]:
            r["speedup_vs_first"] = {st: round(r[st]["train_samples_per_s"] / first[st]["train_samples_per_s"], 2)
                                     for st in ("stage_one", "stage_two")}  # fmt: skip
            r["same_scores_as_first"] = {st: r[st]["best_val_score"] == first[st]["best_val_score"]
                                         for st in ("stage_one", "stage_two")}  # fmt: skip
            print(f"threads {r['threads']} vs {first['threads']}: speed-up {r['speedup_vs_first']}, "
                  f"same best val score {r['same_scores_as_first']}")  # fmt: skip
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if torch.cuda.is_available():
        print(f"peak CUDA allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    if args.out:
        result = {
            "command": "python benchmarks/training.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "data": source, "train_questions": n_train, "epochs": args.epochs, "busy": args.busy,
            "d_model": model_params["d_model"], "runs": runs,
            "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(),
                        "platform": platform.platform(), "torch": torch.__version__},
            **checkout(ROOT),  # the commit and changed files of the code that ran
        }  # fmt: skip
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


@contextlib.contextmanager
def busy_cores(n: int):
    """``n`` Python processes spinning on a core each for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def measure(tensors, model_params: dict, train_missing: dict, loops: dict, threads: int) -> dict:
    """Both stages from seed 0 with ``threads`` torch threads: rates, seconds, best val scores."""
    loops = {stage: {**p, "threads": threads} for stage, p in loops.items()}
    print(f"torch threads {threads}, device {loops['pretrain']['device']}, d_model "
          f"{model_params['d_model']}, batch {loops['pretrain']['batch_size']}")  # fmt: skip
    load_before = os.getloadavg()[0]
    model, s1 = train_stage_one(tensors, model_params, loops["pretrain"], train_missing, seed=0)
    _, s2 = train_stage_two(model_checkpoint(model, {"stage_one": True}), tensors, model_params,
                            loops["mix"], train_missing, seed=0)  # fmt: skip
    t1, t2 = s1["timing"], s2["timing"]
    rate1, rate2 = t1["train_samples_per_s"], t2["train_samples_per_s"]
    print(f"stage I : {rate1:8.1f} training samples/s  (train {t1['train_seconds']:.1f} s, "
          f"val eval {t1['eval_seconds']:.1f} s)")  # fmt: skip
    print(f"stage II: {rate2:8.1f} training samples/s  (train {t2['train_seconds']:.1f} s, "
          f"val eval {t2['eval_seconds']:.1f} s, expert cache {t2['cache_seconds']:.1f} s)")  # fmt: skip
    cpu1, cpu2 = t1["train_samples_per_cpu_s"], t2["train_samples_per_cpu_s"]
    print(f"per CPU-second: stage I {cpu1:.1f}, stage II {cpu2:.1f}")
    print(f"stage II cost per sample = {rate1 / rate2:.2f} x stage I wall (goal <= 2)")
    keep = ("train_seconds", "eval_seconds", "train_samples_per_s", "train_samples_per_cpu_s")
    return {
        "threads": threads,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "stage_one": {**{k: t1[k] for k in keep}, "best_val_score": s1["best"]["val_score"]},
        "stage_two": {**{k: t2[k] for k in keep}, "cache_seconds": t2["cache_seconds"],
                      "best_val_score": s2["best"]["val_score"]},
        "stage_two_per_sample_vs_stage_one": round(rate1 / rate2, 2),
    }  # fmt: skip


if __name__ == "__main__":
    main()
