"""FAISS side of Cross-Modal Retrieval: build an index over memory-bank keys, search it.

Cosine similarity (eq. 1) is an inner product of unit vectors, so every index is built with
``faiss.METRIC_INNER_PRODUCT`` over L2-normalised keys and queried with normalised queries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import faiss
import numpy as np
import pandas as pd

from r2scp_pipeline.datasets.faiss_index_dataset import KeyedFaissIndex

EPS = 1e-8  # the epsilon of eq. (1)
FACTORY_EXAMPLES = "'Flat', 'IVF64,Flat', 'HNSW32', 'IVF64,PQ16'"


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, ``x / (||x|| + eps)`` as in eq. (1) (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + EPS)


def stack_vectors(column: pd.Series) -> np.ndarray:
    """A column of equal-length vectors (``unified_embeddings.vector``) -> ``[N, d]`` float32."""
    vecs = [np.asarray(v, dtype=np.float32) for v in column.to_numpy()]
    if not vecs:
        return np.zeros((0, 0), np.float32)
    dims = {len(v) for v in vecs}
    if len(dims) > 1:
        raise ValueError(f"embedding vectors have different lengths {sorted(dims)}")
    return np.stack(vecs)


def corpus_keys(unified_embeddings: pd.DataFrame, modality: str) -> tuple[list[str], np.ndarray]:
    """The memory-bank keys of ``modality`` in index row order (sorted ``video_id``): the
    ``in_corpus`` rows of ``unified_embeddings``, as ``build_indices`` indexes them."""
    rows = unified_embeddings[
        unified_embeddings["in_corpus"] & (unified_embeddings["modality"] == modality)
    ].sort_values("video_id", kind="stable")
    return rows["video_id"].astype(str).tolist(), stack_vectors(rows["vector"])


def _faiss_reason(exc: Exception) -> str:
    """The human part of a FAISS C++ error message."""
    msg = str(exc).strip()
    match = re.search(r"failed: (.*)$", msg, flags=re.S)
    if match:
        return match.group(1).strip()
    return msg.rsplit(": ", 1)[-1].strip()


@contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """Run FAISS with ``n`` OpenMP threads inside the block (None = leave as is)."""
    if not n:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def check_keys(keys: np.ndarray, ids: Sequence[str], what: str) -> None:
    """Non-empty, 2-D, finite vectors with unique ids, or a ``ValueError`` saying what to fix."""
    keys = np.asarray(keys)
    if keys.ndim != 2 or len(keys) == 0 or keys.shape[1] == 0:
        if what == "query":
            raise ValueError(f"no query embeddings (shape {keys.shape})")
        raise ValueError(
            f"the {what} corpus is empty (keys of shape {keys.shape}): the memory bank needs "
            "at least one video; check build_index.corpus.source and that the corpus split "
            "(or the external corpus tables) has videos"
        )
    if len(ids) != len(keys):
        raise ValueError(f"{len(keys)} {what} keys but {len(ids)} ids")
    bad = ~np.isfinite(keys).all(1)
    if bad.any():
        examples = [ids[i] for i in np.flatnonzero(bad)[:3]]
        raise ValueError(
            f"{int(bad.sum())} {what} vectors contain NaN or inf (e.g. video_id {examples}): fix "
            "the embeddings (external_embeddings table or the features they come from)"
        )
    dup = [k for k, c in Counter(ids).items() if c > 1]
    if dup:
        raise ValueError(
            f"{len(dup)} video_ids appear more than once among the {what} vectors "
            f"(e.g. {dup[:3]}): each video must be listed once"
        )


def _apply_search_params(index: faiss.Index, factory: str, search_params: str) -> None:
    """Set ``search_params`` (a ``faiss.ParameterSpace`` string, '' = none) on ``index``, or
    raise ``ValueError`` naming the parameter."""
    if not search_params:
        return
    try:
        faiss.ParameterSpace().set_index_parameters(index, search_params)
    except RuntimeError as exc:
        raise ValueError(
            f"build_index.index.search_params={search_params!r} does not apply to "
            f"{factory!r} ({_faiss_reason(exc)}): use nprobe=.. for IVF, efSearch=.. for "
            "HNSW, or ''"
        ) from exc


def check_factory(factory: str, d: int, search_params: str = "") -> None:
    """Raise ``ValueError`` unless ``factory`` builds a ``d``-dimensional FAISS index and
    ``search_params`` applies to it. Cheap (nothing is trained): run it before any work."""
    try:
        index = faiss.index_factory(int(d), str(factory), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"build_index.index.factory={factory!r} is not a FAISS index_factory string for "
            f"d={d} ({_faiss_reason(exc)}); use e.g. {FACTORY_EXAMPLES}"
        ) from exc
    _apply_search_params(index, factory, search_params)


def empty_index(factory: str, d: int) -> faiss.Index:
    """An untrained, empty inner-product index from a ``faiss.index_factory`` string (what
    :func:`build_index` fills; ``benchmarks/large_index.py`` trains and fills it in chunks)."""
    try:
        index = faiss.index_factory(int(d), str(factory), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"build_index.index.factory={factory!r} is not a FAISS index_factory string for "
            f"d={d} ({_faiss_reason(exc)}); use e.g. {FACTORY_EXAMPLES}"
        ) from exc
    _skip_polysemous_training(index)
    return index


def build_index(
    keys: np.ndarray,
    ids: Sequence[str],
    factory: str,
    *,
    search_params: str = "",
    modality: str = "",
    threads: int | None = None,
    train_size: int | None = None,
    seed: int = 0,
) -> KeyedFaissIndex:
    """A trained, filled FAISS index over unit-normalised ``keys`` ``[N, d]``.

    ``factory`` is any ``faiss.index_factory`` string; ``search_params`` a
    ``faiss.ParameterSpace`` string such as ``"nprobe=16"`` (IVF) or ``"efSearch=128"``
    (HNSW), applied after building and saved with the index. Indices that need training
    (IVF, PQ) train on all keys, or on a seeded random sample of ``train_size`` keys.
    """
    check_keys(keys, ids, modality)
    keys = normalize(keys)
    n, d = keys.shape
    index = empty_index(factory, d)
    trained_on = 0  # number of keys the index was trained on (0: needs no training)
    with faiss_threads(threads):
        if not index.is_trained:
            sample = keys
            if train_size and train_size < n:
                rows = np.random.default_rng(seed).choice(n, size=int(train_size), replace=False)
                sample = keys[np.sort(rows)]
            trained_on = len(sample)
            try:
                index.train(sample)
            except RuntimeError as exc:
                sampled = f" (a sample of {len(sample)})" if len(sample) < n else ""
                raise ValueError(
                    f"cannot train build_index.index.factory={factory!r} on the {modality} "
                    f"corpus of {n} keys{sampled}: {_faiss_reason(exc)}. Use fewer IVF lists "
                    "(nlist ~ sqrt(N) to 4*sqrt(N), at most the number of training keys), "
                    "fewer PQ bits (8-bit codes need >= 256 training keys), a larger "
                    "build_index.index.train_size, or 'Flat'"
                ) from exc
        index.add(keys)
    _apply_search_params(index, factory, search_params)
    meta = {
        "factory": factory,
        "search_params": search_params,
        "metric": "cosine (inner product of L2-normalised vectors)",
        "modality": modality,
        "trained_on": trained_on,
    }
    return KeyedFaissIndex(index=index, ids=list(ids), metadata=meta)


def _skip_polysemous_training(index: faiss.Index) -> None:
    """PQ indices from ``index_factory`` default to polysemous training (a Hamming-code
    annealing that takes minutes); it only serves polysemous filtering, which is not used."""
    for sub in (index, faiss.try_extract_index_ivf(index)):
        sub = faiss.downcast_index(sub) if sub is not None else None
        if sub is not None and hasattr(sub, "do_polysemous_training"):
            sub.do_polysemous_training = False


def search_excluding(
    index: KeyedFaissIndex,
    keys: np.ndarray,
    queries: np.ndarray,
    query_ids: Sequence[str],
    n: int,
    *,
    lowest: bool = False,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` (or, with ``lowest``, bottom-``n``) corpus rows per query, never its own id.

    ``keys`` ``[N, d]`` are the unit keys in index row order, used to give every hit its exact
    cosine (eq. 1) and to order hits by it. A key whose id equals the query's id is never
    returned. The bottom-n is a top-n search for ``-q``: for unit vectors
    ``argmin_k cos(q, k) = argmax_k cos(-q, k)``, exact on a Flat index and as approximate as any
    other query on IVF/HNSW/PQ. Where an approximate index returns fewer than ``n`` usable hits
    for a query (e.g. IVF with a small ``nprobe``), that query falls back to exact search.

    Returns ``(rows [Q, n] int64 into keys/ids, scores [Q, n] float32)``, best first (for
    ``lowest``: lowest first).
    """
    ids = np.asarray(index.ids, dtype=object)
    query_ids = np.asarray(query_ids, dtype=object)
    queries = normalize(queries)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(
            f"queries have dimension {queries.shape[-1]} but the {index.metadata.get('modality', '')} "
            f"index has d={index.d}: keys and queries must come from the same unified space "
            "(same build_index.joint_space.dim / same external embedding model); rebuild the index"
        )
    if len(keys) != index.ntotal or keys.shape[1] != index.d:
        raise ValueError(
            f"{keys.shape} keys given for an index of {index.ntotal} x {index.d}: the index and "
            "unified_embeddings come from different runs; re-run build_index"
        )
    check_keys(queries, list(query_ids), "query")  # finiteness and non-emptiness
    key_count = Counter(index.ids)
    excluded = np.array([key_count.get(q, 0) for q in query_ids])
    available = index.ntotal - excluded
    if (available < n).any():
        worst = int(np.argmin(available))
        raise ValueError(
            f"build_index.neighbors.n={n} but query {query_ids[worst]!r} can retrieve only "
            f"{available[worst]} corpus videos ({index.ntotal} in the corpus minus "
            f"{excluded[worst]} with its own video_id): lower n or use a larger corpus"
        )
    sign = -1.0 if lowest else 1.0
    k = min(n + int(excluded.max()), index.ntotal)
    with faiss_threads(threads):
        _, hits = index.index.search(np.ascontiguousarray(sign * queries), k)

    rows = np.full((len(queries), n), -1, dtype=np.int64)
    for qi, (hit, qid) in enumerate(zip(hits, query_ids, strict=True)):
        ok = hit[(hit >= 0)]
        ok = ok[ids[ok] != qid][:n]
        if len(ok) == n:
            rows[qi] = ok
            continue
        # approximate index came back short: exact search for this query
        sims = sign * (keys @ queries[qi])
        sims[ids == qid] = -np.inf
        rows[qi] = np.argsort(-sims, kind="stable")[:n]
    scores = np.einsum("qd,qnd->qn", queries, keys[rows]).astype(np.float32)
    order = np.argsort(-sign * scores, axis=1, kind="stable")
    return np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)
