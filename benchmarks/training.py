"""Training throughput of R2ScP: stage I and stage II samples/s and peak memory.

    python benchmarks/training.py                       # synthetic, default-dataset scale
    python benchmarks/training.py --project /path/to/kedro/project   # its catalog tables
    python benchmarks/training.py --epochs 2 --threads 2 --d-model 128

Synthetic data has the default dataset's shape (700 train videos of 1000, ~6.5 questions per
video, Da=128, Dv=1280, Dt=384, T=10, 3 neighbours). Both stages run ``--epochs`` epochs with
the default parameters of conf/base (patience off); samples/s counts training steps only
(the per-epoch val evaluation and stage II's one-off expert-encoding cache are printed
separately). Peak memory is the process's max RSS (and CUDA's max allocated, on a GPU).
"""

from __future__ import annotations

import argparse
import resource
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


def base_params(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf/base" / f"parameters_{name}.yml").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--project", type=Path, help="read the catalog tables of this Kedro project")
    ap.add_argument("--videos", type=int, default=1000, help="synthetic videos (70%% train)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()

    params = base_params("model")
    model_params, train_missing = params["model"], params["train_missing"]
    if args.d_model:
        model_params = {**model_params, "d_model": args.d_model}
    loops = {}
    for stage in ("pretrain", "mix"):
        p = base_params(stage)[stage]
        p.update(epochs=args.epochs, patience=10**6, checkpoint_dir=None, threads=args.threads)
        if args.batch_size:
            p["batch_size"] = args.batch_size
        loops[stage] = p

    tick = time.perf_counter()
    if args.project:
        tables = {k: pd.read_parquet(args.project / v) for k, v in TABLES.items()}
        source = f"project {args.project}"
    else:
        tables = make_synthetic_tables(n_videos=args.videos, d_audio=128, d_visual=1280, d_text=384,
                                       n_instruments=22, neighbor_ranks=3, seed=0)  # fmt: skip
        source = f"synthetic, {args.videos} videos"
    tensors = build_tensors(**tables, n_neighbors=model_params["n_retrieve"])
    n_train = int((tensors.split == "train").sum())
    print(f"data: {source}; {n_train} training questions; dims {tensors.dims}; "
          f"built in {time.perf_counter() - tick:.1f} s")  # fmt: skip
    print(f"torch threads {args.threads}, device {loops['pretrain']['device']}, "
          f"d_model {model_params['d_model']}, batch {loops['pretrain']['batch_size']}, epochs {args.epochs}")  # fmt: skip

    model, s1 = train_stage_one(tensors, model_params, loops["pretrain"], train_missing, seed=0)
    _, s2 = train_stage_two(model_checkpoint(model, {"stage_one": True}), tensors, model_params,
                            loops["mix"], train_missing, seed=0)  # fmt: skip
    t1, t2 = s1["timing"], s2["timing"]
    rate1, rate2 = t1["train_samples_per_s"], t2["train_samples_per_s"]
    print(f"stage I : {rate1:8.1f} training samples/s  (train {t1['train_seconds']:.1f} s, "
          f"val eval {t1['eval_seconds']:.1f} s for {args.epochs} epochs)")  # fmt: skip
    print(f"stage II: {rate2:8.1f} training samples/s  (train {t2['train_seconds']:.1f} s, "
          f"val eval {t2['eval_seconds']:.1f} s, expert cache {t2['cache_seconds']:.1f} s)")  # fmt: skip
    cpu1, cpu2 = t1["train_samples_per_cpu_s"], t2["train_samples_per_cpu_s"]
    print(f"per CPU-second (robust on a shared machine): stage I {cpu1:.1f}, stage II {cpu2:.1f}")
    print(f"stage II cost per sample = {rate1 / rate2:.2f} x stage I wall, {cpu1 / cpu2:.2f} x CPU (goal <= 2)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if torch.cuda.is_available():
        print(f"peak CUDA allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    per_epoch = n_train / rate1 + n_train / rate2
    print(f"=> one epoch of each stage ~ {per_epoch:.0f} s of training steps")


if __name__ == "__main__":
    main()
