"""Memory-bank retrieval at scale: FAISS Flat / IVF / HNSW (/ IVF-PQ) vs torch brute force.

Builds indices over N clustered synthetic unit keys (d = 512 by default) with the same code
path as the ``build_index`` pipeline (``build_index`` in ``pipelines/build_index/index.py``:
cosine = inner product of L2-normalised vectors), then for each method prints

* build time (train + add),
* batched query throughput (all queries in one ``search`` call; torch: 128-query batches of
  ``topk(q @ K.T)``, what public missing-modality code does),
* memory: RSS growth after the build, and the peak RSS reached during build + search
  (``VmHWM`` reset before each method through ``/proc/self/clear_refs``),
* recall@3 against exact search (the Flat index's top-3).

Approximate methods are swept over their search knob (``nprobe`` / ``efSearch``); the headline
row is the fastest setting with recall@3 >= 0.95.

    python benchmarks/retrieval.py                       # 100k and 1M keys, 2 threads
    python benchmarks/retrieval.py --sizes 20000 --queries 200   # smoke test
    python benchmarks/retrieval.py --out docs/results/retrieval.json   # the docs' figures

``--out`` writes every row, the command, the machine and the load averages to a JSON file
(rendered into docs/build_index.md by ``scripts/render_docs.py``).

The machine may be shared: the load average before and after each size is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from r2scp_pipeline.pipelines.build_index.index import build_index

K = 3  # recall@3, the pipeline's default n


def rss_mb() -> float:
    return _status("VmRSS")


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def clustered(
    n: int, nq: int, d: int, clusters: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` keys and ``nq`` queries: unit vectors around ``clusters`` random unit centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def sample(m: int) -> np.ndarray:
        out = np.empty((m, d), np.float32)
        for s in range(0, m, 100_000):  # chunked to bound temporary memory
            c = min(100_000, m - s)
            x = centres[rng.integers(0, clusters, c)]
            x += spread / math.sqrt(d) * rng.standard_normal((c, d), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[s : s + c] = x
        return out

    return sample(n), sample(nq)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact, strict=True)]))


def torch_topk(keys: np.ndarray, queries: np.ndarray, batch: int = 128) -> np.ndarray:
    kt = torch.from_numpy(keys)  # shares memory with the numpy keys
    out = []
    with torch.no_grad():
        for s in range(0, len(queries), batch):
            q = torch.from_numpy(queries[s : s + batch])
            sims = q @ kt.T  # [B, N]
            out.append(torch.topk(sims, K, dim=1).indices.numpy())
    return np.concatenate(out)


PEAK_MB = [0.0]  # the process' highest RSS seen (VmHWM is reset per method)


def row(
    name: str, build_s: float, qps: float, mem_mb: float, base_mb: float, rec: float, note: str = ""
) -> dict:
    """Print and return one result; ``base_mb`` is the RSS before the method started."""
    hwm = _status("VmHWM")
    PEAK_MB[0] = max(PEAK_MB[0], hwm)
    r = dict(
        method=name,
        build_s=build_s,
        qps=qps,
        mem_mb=mem_mb,
        peak_mb=hwm - base_mb,
        recall3=rec,
        note=note,
    )
    print(
        f"  {name:<26} build {build_s:6.1f} s  {qps:7.0f} q/s  index +{mem_mb:5.0f} MB  "
        f"peak +{hwm - base_mb:5.0f} MB  recall@3 {rec:.3f}  {note}",
        flush=True,
    )
    return r


def bench_size(n: int, args: argparse.Namespace) -> dict:
    print(
        f"\n=== N = {n:,} keys, d = {args.dim}, {args.queries} queries, "
        f"{args.threads} threads, load avg {os.getloadavg()} ===",
        flush=True,
    )
    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    keys, queries = clustered(n, args.queries, args.dim, args.clusters, args.spread, args.seed)
    print(
        f"  data: {time.perf_counter() - t:.1f} s, keys {keys.nbytes / 2**20:.0f} MB, "
        f"process RSS {rss_mb():.0f} MB",
        flush=True,
    )
    ids = np.arange(n).astype(str).tolist()
    rows = []

    # exact FAISS (also the ground truth)
    reset_peak()
    base = rss_mb()
    t = time.perf_counter()
    flat = build_index(keys, ids, "Flat", modality="bench", threads=args.threads)
    build = time.perf_counter() - t
    mem = rss_mb() - base
    t = time.perf_counter()
    _, exact = flat.index.search(queries, K)
    qps = len(queries) / (time.perf_counter() - t)
    rows.append(row("Flat (exact)", build, qps, mem, base, 1.0))
    del flat

    # torch brute force
    reset_peak()
    base = rss_mb()
    t = time.perf_counter()
    found = torch_topk(keys, queries)
    qps = len(queries) / (time.perf_counter() - t)
    rows.append(
        row(
            "torch brute force",
            0.0,
            qps,
            0.0,
            base,
            recall(found, exact),
            "topk(q @ K.T), 128-query batches",
        )
    )
    torch_qps = qps

    nlist = 2 ** round(math.log2(math.sqrt(n)))  # ~sqrt(N) lists
    train = min(n, 50 * nlist)  # faiss wants >= 39 training points per list
    approx = [(f"IVF{nlist},Flat", "nprobe", [1, 2, 4, 8, 16, 32])]
    if n <= args.hnsw_max:
        approx.append(("HNSW32", "efSearch", [16, 32, 64, 128, 256, 512]))
    if args.pq:
        approx.append((f"IVF{nlist},PQ{args.dim // 8}", "nprobe", [4, 8, 16, 32]))
    for factory, knob, values in approx:
        reset_peak()
        base = rss_mb()
        t = time.perf_counter()
        keyed = build_index(
            keys,
            ids,
            factory,
            modality="bench",
            threads=args.threads,
            train_size=train,
            seed=args.seed,
        )
        build = time.perf_counter() - t
        mem = rss_mb() - base
        best = None
        for v in values:
            faiss.ParameterSpace().set_index_parameters(keyed.index, f"{knob}={v}")
            t = time.perf_counter()
            _, found = keyed.index.search(queries, K)
            qps = len(queries) / (time.perf_counter() - t)
            r = row(
                f"{factory} {knob}={v}",
                build,
                qps,
                mem,
                base,
                recall(found, exact),
                f"{qps / torch_qps:.1f}x torch",
            )
            rows.append(r)
            if r["recall3"] >= 0.95 and (best is None or r["qps"] > best["qps"]):
                best = r
        if best:
            trained = keyed.metadata["trained_on"]
            how = f" (trained on {trained:,} keys)" if trained else ""
            print(
                f"  -> {factory}{how}: best with recall@3 >= 0.95: {best['method']}, "
                f"{best['qps'] / torch_qps:.1f}x torch brute-force throughput",
                flush=True,
            )
        del keyed
    print(
        f"  load avg after: {os.getloadavg()}, process peak RSS so far {PEAK_MB[0]:.0f} MB",
        flush=True,
    )
    return {
        "n": n,
        "keys_mb": round(keys.nbytes / 2**20),
        "load_average_start": round(load_start, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0, help="within-cluster noise scale")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pq", action="store_true", help="also benchmark IVF,PQ")
    p.add_argument("--hnsw-max", type=int, default=10**9, help="skip HNSW above this N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    args = p.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(
        f"faiss {faiss.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs "
        f"visible, using {args.threads} threads"
    )
    t0 = time.perf_counter()
    sizes = [bench_size(n, args) for n in args.sizes]
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s, process peak RSS {PEAK_MB[0]:.0f} MB")
    if args.out:
        result = {
            "command": "python benchmarks/retrieval.py " + " ".join(sys.argv[1:]),
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "faiss": faiss.__version__,
            "torch": torch.__version__,
            "threads": args.threads,
            "dim": args.dim,
            "queries": args.queries,
            "keys": f"clustered: {args.clusters} random unit centres, spread {args.spread}",
            "total_s": round(total, 1),
            "peak_rss_mb": round(PEAK_MB[0]),
            "sizes": sizes,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
