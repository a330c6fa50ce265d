"""Feature-extraction throughput on a Dask LocalCluster: 1 worker against 2 (prints a table).

    python benchmarks/dask_features.py                                # 200 synthetic videos
    nice -n 10 python benchmarks/dask_features.py --videos 8 --size 96 --shards 4   # smoke test
    python benchmarks/dask_features.py --videos 200 --out docs/results/dask_features.json

What runs: the ``features`` pipeline's audio and visual part (``--shards`` shards per
modality, then the two merge nodes) with ``r2scp_pipeline.runner.DaskRunner`` on a
``LocalCluster`` of N single-threaded worker processes (``--workers``, default 1 and 2;
``r2scp_pipeline.runner.local_cluster``, which starts the workers without Dask's
``MALLOC_TRIM_THRESHOLD_``; ``--malloc-trim`` keeps Dask's default to show its cost), on the
synthetic media of ``benchmarks/features.py`` (10 s wavs + ten 224 px JPEG frames per video),
with the base parameters (``num_threads: 1``). Each configuration starts its cluster, runs a
warm-up on ``--shards`` videos (imports, model weights in every worker), then times one run
over all videos: the wall time from submitting the first node to the last merge, cluster
start-up excluded. The speedup is the 1-worker wall time over the N-worker one (target:
>= 1.7 with 2 workers on a 2-core machine, measured on an otherwise idle machine: the load
average is recorded before and after).

Every run's tables are compared with one sequential pass of the nodes over all videos
(``extract_audio_features`` / ``extract_visual_features``): audio must match bit for bit,
visual within 1e-4 (frames batched with other videos, see tests/test_dask_features.py); the
largest differences are recorded. ``--out`` writes the figures, the command, the machine and
the load averages to a JSON file that ``scripts/render_docs.py`` renders into
docs/scaling.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from features import synth_media  # noqa: E402  (benchmarks/features.py)

from r2scp_pipeline.pipelines.features import create_pipeline  # noqa: E402
from r2scp_pipeline.pipelines.features.nodes import (  # noqa: E402
    extract_audio_features,
    extract_visual_features,
)

OUTPUTS = ("audio_features_extracted", "visual_features_extracted")
VISUAL_ATOL = 1e-4


def run_features(runner, video_index, params: dict, shards: int) -> tuple[dict, float]:
    """(the two feature tables, wall seconds) of one run of the sharded pipeline."""
    from kedro.io import DataCatalog, MemoryDataset

    catalog = DataCatalog(
        datasets={
            "video_index": MemoryDataset(video_index),
            "params:features": MemoryDataset(params),
        }
    )
    pipe = create_pipeline(shards=shards).to_outputs(*OUTPUTS)
    t0 = time.perf_counter()
    out = runner.run(pipe, catalog)
    tables = {name: out[name].load() for name in OUTPUTS}
    for name in OUTPUTS:
        out[name].release()  # free the cluster's copy
    return tables, time.perf_counter() - t0


def max_diff(got, want) -> float:
    if list(got["video_id"]) != list(want["video_id"]) or list(got["t"]) != list(want["t"]):
        return float("inf")  # other rows or another order
    a, b = np.stack(got["feature"].to_numpy()), np.stack(want["feature"].to_numpy())
    return float(np.abs(a - b).max())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=200, help="synthetic videos")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="cluster sizes")
    ap.add_argument("--shards", type=int, default=8, help="shards per modality")
    ap.add_argument("--size", type=int, default=None, help="visual input size (px)")
    ap.add_argument(
        "--malloc-trim",
        action="store_true",
        help="start the workers with Dask's default MALLOC_TRIM_THRESHOLD_=65536",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    args = ap.parse_args()

    import logging

    from distributed import Client, LocalCluster

    from r2scp_pipeline.runner import DaskRunner, local_cluster

    logging.getLogger("kedro").setLevel(logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    params = yaml.safe_load((ROOT / "conf/base/parameters_features.yml").read_text())["features"]
    params.update(progress=False, num_threads=1)
    if args.size:
        params["visual"]["efficientnet_lite0"]["input_size"] = args.size
    results: dict = {
        "command": "python benchmarks/dask_features.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_average_start": round(os.getloadavg()[0], 2),
        "videos": args.videos,
        "shards": args.shards,
        "input_size": params["visual"]["efficientnet_lite0"]["input_size"],
        "malloc_trim_threshold": 65536 if args.malloc_trim else None,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="dask_features_bench_") as tmp:
        t0 = time.perf_counter()
        vi = synth_media(Path(tmp), args.videos)
        params["media_root"] = tmp
        print(f"{args.videos} synthetic videos made in {time.perf_counter() - t0:.0f} s")

        t0 = time.perf_counter()
        want = {
            "audio_features_extracted": extract_audio_features(vi, params)[0],
            "visual_features_extracted": extract_visual_features(vi, params)[0],
        }
        sequential = time.perf_counter() - t0
        results["sequential_s"] = round(sequential, 3)
        print(f"sequential, one process, one node per modality: {sequential:.2f} s")
        print(
            f"{'workers':>8}{'wall s':>9}{'videos/s':>10}{'speedup':>9}{'audio diff':>12}{'visual diff':>13}"
        )

        base_wall = None
        for n in args.workers:
            with (
                (
                    LocalCluster(  # Dask's defaults
                        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
                    )
                    if args.malloc_trim
                    else local_cluster(n_workers=n, threads_per_worker=1)
                ) as cluster,
                Client(cluster) as client,
            ):
                runner = DaskRunner(client=client)
                run_features(runner, vi.head(args.shards), copy.deepcopy(params), args.shards)
                tables, wall = run_features(runner, vi, copy.deepcopy(params), args.shards)
            audio = max_diff(tables["audio_features_extracted"], want["audio_features_extracted"])
            visual = max_diff(
                tables["visual_features_extracted"], want["visual_features_extracted"]
            )
            base_wall = base_wall or wall
            row = {
                "workers": n,
                "threads_per_worker": 1,
                "wall_s": round(wall, 3),
                "videos_per_s": round(args.videos / wall, 3),
                "speedup": round(base_wall / wall, 3),
                "audio_max_abs_diff": audio,
                "visual_max_abs_diff": visual,
                "equal": audio == 0.0 and visual <= VISUAL_ATOL,
                "load_average": round(os.getloadavg()[0], 2),
            }
            results["runs"].append(row)
            print(
                f"{n:>8}{wall:>9.2f}{row['videos_per_s']:>10.2f}{row['speedup']:>9.2f}"
                f"{audio:>12.2e}{visual:>13.2e}"
            )
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    print(f"load average {results['load_average_start']} -> {results['load_average_end']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
