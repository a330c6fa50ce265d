"""Memory banks of 1M and 10M keys: compressed FAISS indices, memory-mapped, vs exact torch search.

    python benchmarks/large_index.py --out docs/results/large_index.json   # 1M and 10M keys
    nice -n 10 python benchmarks/large_index.py --sizes 100000 --queries 200   # smoke test

**Keys.** ``--keys embeddings`` (default) draws keys like the project's unified-space
embeddings: the ``unified_embeddings`` table of a run (``--embeddings``, default
``data/05_model_input/unified_embeddings.parquet``; both modalities, unit-normalised) gives
base points ``b`` and their covariance ``C``; a key is ``normalise(b_i + jitter * z)`` with
``b_i`` a random base point and ``z ~ N(0, C)``: every key is a new point with the real
embeddings' directions of spread (their anisotropy, low effective dimension), and ``--jitter``
(default 0.5) sets how far keys stray from the run's videos. Without the table, base points
come from a Gaussian with the same kind of spectrum (eigenvalues ~ k^-1.5 over d = 256; said
in the output). Queries are drawn the same way (another seed). ``--keys clustered`` draws
the clustered keys of ``benchmarks/retrieval.py`` (1000 tight clusters) for comparison.

**How hard.** The report says what one IVF probe can find: the share of the exact top-3 that
lies in the query's nearest inverted list (and in its 4 / 16 nearest), with the first IVF
index's coarse quantizer. ``benchmarks/retrieval.py``'s 1M clustered keys: 98 % with one probe.

**Build.** Each ``--factories`` string (``{nlist}`` = 2^round(log2 sqrt N) inverted lists) is
made by the project's ``empty_index`` (``pipelines/build_index/index.py``: inner product of
unit vectors), trained on a separate sample of ``--train-per-list * nlist`` keys, then filled
in chunks of ``--chunk`` keys that are generated, added to every index and dropped: the N x d
float32 keys (10 GB at 10M x 256) are never held. Build time = training + adds (key
generation excluded). Each index is written to ``--dir`` and loaded back with
``faiss.IO_FLAG_MMAP`` (``read_faiss_index(mmap=True)``, as ``FaissIndexDataset(mmap=True)``
does): the inverted lists stay in the file.

**Exact search.** The same pass computes the exact top-3 of every query with torch
(``topk(q @ K.T)`` per chunk, merged), the ground truth for recall@3 and the torch baseline:
its throughput is measured over all N keys, chunk by chunk (an in-memory torch search would
need the N x d keys in RAM: 10 GB at 10M).

**Search.** Per index, ``nprobe`` is swept (and, for ``Refine`` indices, ``--k-factor``: how
many candidates per wanted neighbour the refine codes re-rank): queries/s (all queries in one ``search`` call,
after one untimed pass that pages the mapped lists in), recall@3 against exact, and the ratio
to torch's throughput. The headline row is the fastest setting with recall@3 >= ``--target``
(0.9). Memory: RSS after loading the mapped index, and the process's peak RSS (VmHWM) over
the build and over the searches. ``--out`` writes all of it, the command, the machine and the
load averages to JSON (rendered into docs/scaling.md by ``scripts/render_docs.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import _status, reset_peak  # noqa: E402  (benchmarks/retrieval.py: /proc memory)

from r2scp_pipeline.datasets.faiss_index_dataset import read_faiss_index  # noqa: E402
from r2scp_pipeline.pipelines.build_index.index import empty_index  # noqa: E402

K = 3  # recall@3: the pipeline's default n
DEFAULT_FACTORIES = ["IVF{nlist},PQ32,Refine(SQ8)", "IVF{nlist},PQ64x4fs,Refine(SQfp16)"]


# ---- memory --------------------------------------------------------------------------------


def rss_mb() -> float:
    return _status("VmRSS")


PEAK_MB = [0.0]  # the highest VmHWM seen (VmHWM itself is reset per stage)


def peak_mb() -> float:
    peak = _status("VmHWM")
    PEAK_MB[0] = max(PEAK_MB[0], peak)
    return peak


# ---- keys ----------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class KeyModel:
    """Draws unit keys in ``d`` dimensions (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kind = args.keys
        rng = np.random.default_rng([args.seed, 0])
        if self.kind == "clustered":
            self.d = args.dim
            self.centres = _unit(rng.standard_normal((1000, self.d), dtype=np.float32))
            self.source = "clustered: 1000 random unit centres, noise 1/sqrt(d) (retrieval.py)"
            return
        path = args.embeddings
        if path is not None and path.exists():
            import pandas as pd

            table = pd.read_parquet(path, columns=["vector"])
            base = _unit(np.stack(table["vector"].to_numpy()).astype(np.float32))
            self.source = f"{len(base)} unified-space embeddings of {path}"
        else:
            d = args.dim
            spectrum = np.arange(1, d + 1, dtype=np.float64) ** -1.5
            basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
            mean = _unit(rng.standard_normal((1, d)))[0] * 0.3
            z = rng.standard_normal((2000, d)) * np.sqrt(spectrum / spectrum.sum())
            base = _unit(mean + z @ basis.T)
            self.source = (
                f"no embeddings table ({path}): 2000 base points from a Gaussian with "
                f"eigenvalues ~ k^-1.5 in d={d}"
            )
        self.base = base
        self.d = base.shape[1]
        cov = np.cov(base, rowvar=False).astype(np.float64)
        vals, vecs = np.linalg.eigh(cov)
        vals = np.clip(vals, 0, None)
        self.factor = (vecs * np.sqrt(vals)).astype(np.float32)  # z = g @ factor.T ~ N(0, C)
        self.jitter = float(args.jitter)
        share = np.sort(vals)[::-1] / vals.sum()
        self.participation = float(1 / np.sum(share**2))
        self.source += (
            f"; key = normalise(b_i + {self.jitter} z), z ~ N(0, C) (C: their covariance, "
            f"participation ratio {self.participation:.1f} of d={self.d})"
        )

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "clustered":
            x = self.centres[rng.integers(0, len(self.centres), n)]
            x = x + rng.standard_normal((n, self.d), dtype=np.float32) / math.sqrt(self.d)
            return _unit(x)
        g = rng.standard_normal((n, self.d), dtype=np.float32)
        x = self.base[rng.integers(0, len(self.base), n)] + self.jitter * (g @ self.factor.T)
        return _unit(x)


# ---- exact top-k, streamed -----------------------------------------------------------------


class ExactTopK:
    """Running exact top-``K`` of every query over key chunks (torch), and its time."""

    def __init__(self, queries: np.ndarray, batch: int = 256) -> None:
        self.q = torch.from_numpy(queries)
        self.batch = batch
        nq, d = queries.shape
        self.scores = torch.full((nq, K), -math.inf)
        self.ids = torch.full((nq, K), -1, dtype=torch.int64)
        self.vecs = torch.zeros((nq, K, d))  # the neighbours themselves (for the probe check)
        self.seconds = 0.0

    def update(self, keys: np.ndarray, first_id: int) -> None:
        t = time.perf_counter()
        kt = torch.from_numpy(keys)
        with torch.no_grad():
            for s in range(0, len(self.q), self.batch):
                sims = self.q[s : s + self.batch] @ kt.T  # [B, chunk]
                top, arg = torch.topk(sims, K, dim=1)
                both = torch.cat([self.scores[s : s + self.batch], top], 1)
                ids = torch.cat([self.ids[s : s + self.batch], arg + first_id], 1)
                vecs = torch.cat([self.vecs[s : s + self.batch], kt[arg]], 1)
                best, pos = torch.topk(both, K, dim=1)
                self.scores[s : s + self.batch] = best
                self.ids[s : s + self.batch] = torch.gather(ids, 1, pos)
                self.vecs[s : s + self.batch] = vecs[torch.arange(len(pos))[:, None], pos]
        self.seconds += time.perf_counter() - t


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact, strict=True)]))


def probe_reach(index: faiss.Index, queries: np.ndarray, exact: ExactTopK) -> dict[str, float]:
    """Share of the exact top-K in the query's 1 / 4 / 16 nearest inverted lists."""
    ivf = faiss.extract_index_ivf(index)
    nq = len(queries)
    _, qlists = ivf.quantizer.search(queries, 16)
    vecs = exact.vecs.numpy().reshape(nq * K, -1)
    _, klists = ivf.quantizer.search(np.ascontiguousarray(vecs), 1)
    klists = klists.reshape(nq, K)
    return {
        f"probe{p}": float(
            np.mean([np.isin(k, q[:p]).mean() for k, q in zip(klists, qlists, strict=True)])
        )
        for p in (1, 4, 16)
    }


# ---- one size ------------------------------------------------------------------------------


def bench_size(n: int, model: KeyModel, args: argparse.Namespace, workdir: Path) -> dict:
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    factories = [f.format(nlist=nlist) for f in args.factories]
    print(
        f"\n=== N = {n:,} keys, d = {model.d}, nlist = {nlist}, {args.queries} queries, "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} ===",
        flush=True,
    )
    out: dict = {
        "n": n,
        "d": model.d,
        "nlist": nlist,
        "keys": model.source,
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    queries = model.draw(args.queries, np.random.default_rng([args.seed, 3]))
    train_n = min(n, args.train_per_list * nlist)
    train = model.draw(train_n, np.random.default_rng([args.seed, 2]))
    reset_peak()
    indices: dict[str, faiss.Index] = {}
    build: dict[str, dict[str, float]] = {}
    for factory in factories:
        t = time.perf_counter()
        index = empty_index(factory, model.d)
        index.train(train)
        indices[factory] = index
        build[factory] = {"train_s": time.perf_counter() - t, "add_s": 0.0}
        print(
            f"  {factory}: trained on {train_n:,} keys in {build[factory]['train_s']:.1f} s",
            flush=True,
        )
    del train

    exact = ExactTopK(queries)
    t_pass = time.perf_counter()
    for c, start in enumerate(range(0, n, args.chunk)):
        keys = model.draw(min(args.chunk, n - start), np.random.default_rng([args.seed, 1, c]))
        for factory, index in indices.items():
            t = time.perf_counter()
            index.add(keys)
            build[factory]["add_s"] += time.perf_counter() - t
        exact.update(keys, start)
        if c % 20 == 19:
            print(
                f"    {start + len(keys):,} keys added ({time.perf_counter() - t_pass:.0f} s)",
                flush=True,
            )
        del keys
    truth = exact.ids.numpy()
    torch_qps = args.queries / exact.seconds
    out |= {
        "train_keys": train_n,
        "torch_exact_qps": torch_qps,
        "torch_exact_s": exact.seconds,
        "exact_nn_cosine_mean": float(exact.scores[:, 0].mean()),
        "exact_3rd_cosine_mean": float(exact.scores[:, -1].mean()),
        "peak_rss_build_mb": peak_mb(),
    }
    first_ivf = next((f for f in factories if not f.startswith("OPQ")), factories[0])
    out["probe_reach"] = probe_reach(indices[first_ivf], queries, exact)
    print(
        f"  exact torch search: {torch_qps:.1f} q/s over all {n:,} keys; nearest-neighbour "
        f"cosine {out['exact_nn_cosine_mean']:.3f}; exact top-3 in the query's nearest list "
        f"(1 probe): {out['probe_reach']['probe1']:.3f}, 4: {out['probe_reach']['probe4']:.3f}, "
        f"16: {out['probe_reach']['probe16']:.3f}; peak RSS of the build {out['peak_rss_build_mb']:.0f} MB",
        flush=True,
    )

    out["indices"] = []
    for factory in factories:
        path = workdir / f"n{n}_{factory.replace(',', '_').replace('(', '').replace(')', '')}.faiss"
        faiss.write_index(indices[factory], str(path))
        del indices[factory]
        gc.collect()
        reset_peak()
        before = rss_mb()
        t = time.perf_counter()
        index = read_faiss_index(path, mmap=True)
        load_s = time.perf_counter() - t
        entry = {
            "factory": factory,
            "train_s": round(build[factory]["train_s"], 2),
            "add_s": round(build[factory]["add_s"], 2),
            "build_s": round(build[factory]["train_s"] + build[factory]["add_s"], 2),
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "load_s": round(load_s, 3),
            "rss_after_load_mb": round(rss_mb() - before, 1),
            "sweep": [],
        }
        refine = "Refine" in factory
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            for k_factor in args.k_factor if refine else [None]:
                faiss.extract_index_ivf(index).nprobe = nprobe  # through OPQ / Refine wrappers
                if refine:  # re-rank k_factor * 3 candidates with the refine codes
                    faiss.downcast_index(index).k_factor = k_factor
                index.search(queries, K)  # untimed: pages the touched lists in
                t = time.perf_counter()
                _, found = index.search(queries, K)
                qps = args.queries / (time.perf_counter() - t)
                r = {
                    "nprobe": nprobe,
                    "qps": round(qps, 1),
                    "recall3": round(recall(found, truth), 4),
                    "x_torch": round(qps / torch_qps, 1),
                }
                if refine:
                    r["k_factor"] = k_factor
                entry["sweep"].append(r)
                knobs = f"nprobe={nprobe}" + (f" k_factor={k_factor}" if refine else "")
                print(
                    f"  {factory:<32} {knobs:<22} {qps:9.0f} q/s  {r['x_torch']:7.1f}x torch  "
                    f"recall@3 {r['recall3']:.3f}",
                    flush=True,
                )
        entry["peak_rss_search_mb"] = round(peak_mb(), 1)
        ok = [r for r in entry["sweep"] if r["recall3"] >= args.target]
        entry["best"] = max(ok, key=lambda r: r["qps"]) if ok else None
        print(
            f"  -> {factory}: build {entry['build_s']:.0f} s (train {entry['train_s']:.0f} s), "
            f"file {entry['file_mb']:.0f} MB, RSS +{entry['rss_after_load_mb']:.0f} MB after mmap "
            f"load, peak {entry['peak_rss_search_mb']:.0f} MB while searching; best with "
            f"recall@3 >= {args.target}: {entry['best']}",
            flush=True,
        )
        out["indices"].append(entry)
        del index
        if not args.keep:
            path.unlink()
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--keys", choices=["embeddings", "clustered"], default="embeddings")
    ap.add_argument(
        "--embeddings",
        type=Path,
        default=ROOT / "data/05_model_input/unified_embeddings.parquet",
        help="a run's unified_embeddings table (parquet)",
    )
    ap.add_argument("--jitter", type=float, default=0.5, help="noise scale, in units of C")
    ap.add_argument("--dim", type=int, default=256, help="d without an embeddings table")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factories", nargs="+", default=DEFAULT_FACTORIES)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    ap.add_argument(
        "--k-factor", type=int, nargs="+", default=[32, 64, 128, 256], help="Refine: re-rank k_factor * 3 hits"
    )
    ap.add_argument("--train-per-list", type=int, default=50, help="training keys per list")
    ap.add_argument("--chunk", type=int, default=100_000, help="keys generated and added at once")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.9, help="recall@3 of the headline row")
    ap.add_argument("--dir", type=Path, default=None, help="where index files go (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the index files (with --dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    model = KeyModel(args)
    print(f"keys: {model.source}")
    print(
        f"faiss {faiss.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads"
    )
    results: dict = {
        "command": "python benchmarks/large_index.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "faiss": faiss.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "queries": args.queries,
        "target_recall3": args.target,
        "sizes": [],
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="large_index_") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            results["sizes"].append(bench_size(n, model, args, workdir))
    results["total_s"] = round(time.perf_counter() - t0, 1)
    results["peak_rss_mb"] = round(max(PEAK_MB[0], peak_mb()), 1)
    print(f"\ntotal {results['total_s']:.0f} s, peak RSS {results['peak_rss_mb']:.0f} MB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
