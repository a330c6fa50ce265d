"""Nodes of the ``build_index`` pipeline: Cross-Modal Retrieval's memory bank (paper section 3.2).

1. :func:`train_joint_space` -- the unified semantic space (learned stand-in for ImageBind).
2. :func:`build_memory_banks` -- the retrievable values ``v_i``: raw ``[T, S, D]`` token features of the
   corpus (training split, or an external corpus).
3. :func:`embed_videos` -- keys ``k_i`` and queries ``Q_avl``: unified embeddings of every video
   of every split and of the corpus (learned heads, or a user-supplied table).
4. :func:`build_indices` -- one FAISS index per modality over the corpus keys.
5. :func:`retrieve_neighbors` -- top-n (R+) and bottom-n (R-) corpus neighbours by eq. (1) for
   every video and both directions, never the video itself, never a val/test video.
6. :func:`evaluate_retrieval` -- instrument overlap of neighbours vs random corpus videos.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

from r2scp_pipeline.datasets.faiss_index_dataset import KeyedFaissIndex
from r2scp_pipeline.splits import SPLITS, membership, splits_of
from r2scp_pipeline.tensors import frame_to_tokens
from r2scp_pipeline.vocabulary import DIRECTIONS, MODALITIES

from .index import (
    build_index,
    check_keys,
    corpus_keys,
    normalize,
    search_excluding,
    stack_vectors,
)
from .joint_space import JointSpaceConfig, embed, fit_joint_space, load_joint_space, pool_tokens

logger = logging.getLogger(__name__)

CORPUS_SPLIT = "train"
DATASET, EXTERNAL = "dataset", "external_corpus"


# ---- parameters and small helpers ------------------------------------------------------------


def _param(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(
                f"missing parameter build_index.{dotted} (see conf/base/parameters_build_index.yml)"
            )
        node = node[part]
    return node


def _choice(params: Mapping[str, Any], dotted: str, allowed: Sequence[str]) -> str:
    value = _param(params, dotted)
    if value not in allowed:
        raise ValueError(f"build_index.{dotted}={value!r}; choose one of {list(allowed)}")
    return value


def _to_mlflow(metrics: Mapping[str, float | Sequence[float]]) -> dict[str, Any]:
    """``{name: value | [v_step0, ...]}`` -> the format of ``MlflowMetricsHistoryDataset``."""
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            out[name] = [{"value": float(v), "step": i} for i, v in enumerate(value)]
        else:
            out[name] = {"value": float(value), "step": 0}
    return out


def _split_ids(video_index: pd.DataFrame, split: str) -> list[str]:
    """Sorted ids of the videos with questions in ``split`` (a video may be in several)."""
    m = membership(video_index)
    return sorted(m.index[m[split]].tolist())


def _held_out_ids(video_index: pd.DataFrame, split: str) -> list[str]:
    """Videos of ``split`` outside the corpus (no training question): the joint space's
    validation videos, never seen while it is fit."""
    m = membership(video_index)
    return sorted(m.index[m[split] & ~m[CORPUS_SPLIT]].tolist())


def _check_video_index(video_index: pd.DataFrame) -> None:
    membership(video_index)  # names the split columns it lacks
    dup = video_index["video_id"][video_index["video_id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"video_index lists {len(dup)} video_ids twice, e.g. {dup[:3]}")


def _rows_of(features: pd.DataFrame, ids: Sequence[str], table: str) -> pd.DataFrame:
    """The rows of ``ids`` in a long feature table; every id must be there."""
    present = set(features["video_id"].astype(str).unique()) if len(features) else set()
    missing = [i for i in ids if i not in present]
    if missing:
        raise ValueError(
            f"{table} has no rows for {len(missing)} videos (e.g. {missing[:3]}): re-run the "
            "features pipeline so every video of video_index has features"
        )
    return features[features["video_id"].astype(str).isin(set(ids))]


def _pooled(features: pd.DataFrame, ids: Sequence[str], table: str) -> np.ndarray:
    """Each video's ``[T, S, D]`` tokens pooled over time and place: ``[mean | std]`` -> ``[N, 2D]``
    (the keys of the unified space stay pooled; the bank keeps the tokens)."""
    if not len(ids):
        return np.zeros((0, 0), np.float32)
    sub = _rows_of(features, ids, table)
    _, x = frame_to_tokens(sub, ids=list(ids))
    if not np.isfinite(x).all():
        raise ValueError(f"{table} contains NaN or inf values")
    return pool_tokens(x)


# ---- 1. the unified space --------------------------------------------------------------------


def train_joint_space(
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    video_index: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any], Figure]:
    """Fit the audio and visual projection heads with symmetric InfoNCE on the corpus videos.

    The corpus is the videos with training questions (``video_index.in_train``); the
    validation videos are the val videos outside it (with shared videos, a val video that also
    has training questions is a training video of the joint space, so it cannot validate it).

    Returns ``(checkpoint, mlflow_metrics, figure)``: the checkpoint is
    ``{"config": JointSpaceConfig, "state_dicts": {"joint_space": ...}}``; metrics hold the
    per-epoch train/val loss and val recall@1/@5 in both directions. With
    ``build_index.embeddings.source: table`` nothing is trained and the checkpoint says so.
    """
    source = _choice(params, "embeddings.source", ("learned", "table"))
    if source == "table":
        fig = Figure(figsize=(5, 2))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no joint space trained\n(embeddings.source = table)", ha="center")
        ax.axis("off")
        return {"config": {"source": "table"}, "state_dicts": {}}, {}, fig

    _check_video_index(video_index)
    js = _param(params, "joint_space")
    train_ids = _split_ids(video_index, CORPUS_SPLIT)
    if len(train_ids) < 2:
        raise ValueError(
            f"the joint space is trained on the videos with '{CORPUS_SPLIT}' questions, "
            f"{len(train_ids)} in video_index; at least 2 are needed"
        )
    val_ids = _held_out_ids(video_index, "val")
    a, v = (
        _pooled(audio_features, train_ids, "audio_features"),
        _pooled(visual_features, train_ids, "visual_features"),
    )
    va, vv = (
        _pooled(audio_features, val_ids, "audio_features"),
        _pooled(visual_features, val_ids, "visual_features"),
    )
    config = JointSpaceConfig(
        audio_dim=a.shape[1],
        visual_dim=v.shape[1],
        dim=int(js["dim"]),
        hidden=int(js["hidden"]),
        dropout=float(js["dropout"]),
        temperature=float(js["temperature"]),
    )
    if config.temperature <= 0 or config.dim < 1 or int(js["epochs"]) < 1:
        raise ValueError(
            "build_index.joint_space needs temperature > 0, dim >= 1 and epochs >= 1, got "
            f"temperature={config.temperature}, dim={config.dim}, epochs={js['epochs']}"
        )
    model, history = fit_joint_space(
        a,
        v,
        va,
        vv,
        config,
        epochs=int(js["epochs"]),
        batch_size=int(js["batch_size"]),
        lr=float(js["lr"]),
        weight_decay=float(js["weight_decay"]),
        keep=_choice(params, "joint_space.keep", ("last", "best_val")),
        seed=int(seed),
    )
    metrics: dict[str, Any] = {f"joint_space.{k}": h for k, h in history.items()}
    if "val_loss" in history:  # the kept epoch's recall, for quick comparison across runs
        r1 = np.mean([history["val_a2v_recall_at_1"], history["val_v2a_recall_at_1"]], 0)
        kept = int(np.argmax(r1)) if js["keep"] == "best_val" else len(r1) - 1
        for key in [k for k in history if "recall" in k]:
            metrics[f"joint_space.kept_{key}"] = history[key][kept]
    logger.info(
        "joint space: %d train / %d val videos, final train loss %.3f%s",
        len(train_ids),
        len(val_ids),
        history["train_loss"][-1],
        "".join(f", {k} {v:.3f}" for k, v in metrics.items() if "kept_" in k),
    )
    checkpoint = {
        "config": config.to_dict(),
        "state_dicts": {"joint_space": model.state_dict()},
        "train_video_ids": train_ids,
        "pooling": "mean over T",
    }
    return checkpoint, _to_mlflow(metrics), _training_figure(history)


def _training_figure(history: dict[str, list[float]]) -> Figure:
    fig = Figure(figsize=(10, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    for key in ("train_loss", "val_loss"):
        if key in history:
            ax1.plot(epochs, history[key], label=key)
    ax1.set(xlabel="epoch", ylabel="InfoNCE loss", title="joint space training")
    ax1.legend()
    for key, hist in history.items():
        if "recall" in key:
            ax2.plot(epochs, hist, label=key.removeprefix("val_"))
    ax2.set(xlabel="epoch", ylabel="recall", title="val retrieval (paired video)", ylim=(0, 1))
    if any("recall" in k for k in history):
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- 2. memory bank values -------------------------------------------------------------------


def build_memory_banks(
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    video_index: pd.DataFrame,
    external_corpus_audio_features: pd.DataFrame,
    external_corpus_visual_features: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The retrievable values: the corpus videos' raw ``[T, S, D]`` feature tables per modality
    (the tokens the experts consume: grid cells, log-mel frames).

    ``corpus.source: train_split`` -> the training split's rows of ``audio_features`` /
    ``visual_features``; ``external`` -> the ``external_corpus_{audio,visual}_features``
    catalog entries (same long layout, same ``T`` and ``D`` as the dataset's features).
    """
    source = _choice(params, "corpus.source", ("train_split", "external"))
    _check_video_index(video_index)
    banks = []
    for modality, own, ext in (
        ("audio", audio_features, external_corpus_audio_features),
        ("visual", visual_features, external_corpus_visual_features),
    ):
        table = f"{modality}_features"
        if source == "train_split":
            ids = _split_ids(video_index, CORPUS_SPLIT)
            if not ids:
                raise ValueError(
                    f"the corpus is empty: video_index has no '{CORPUS_SPLIT}' videos; set "
                    "build_index.corpus.source: external or fix the dataset split"
                )
            bank = _rows_of(own, ids, table)
        else:
            entry = f"external_corpus_{modality}_features"
            _require_user_table(
                ext, entry, ("video_id", "t", "feature"), "corpus.source=external",
                "put the corpus' long feature table (video_id, t, feature) there, or set "
                "corpus.source: train_split",
            )
            _, x_ext = frame_to_tokens(ext)
            if len(own):
                first = own[own["video_id"] == own["video_id"].iloc[0]]
                own_shape = frame_to_tokens(first)[1].shape[1:]
                if x_ext.shape[1:] != own_shape:
                    raise ValueError(
                        f"{entry} has [T, S, D] = {list(x_ext.shape[1:])} per video but {table} "
                        f"has {list(own_shape)}: the corpus must be encoded like the dataset"
                    )
            if not np.isfinite(x_ext).all():
                raise ValueError(f"{entry} contains NaN or inf values")
            bank = ext
        order = ["video_id", "t", "s"] if "s" in bank.columns else ["video_id", "t"]
        bank = bank.sort_values(order, kind="stable").reset_index(drop=True)
        banks.append(bank)
        logger.info("memory bank %s: %d videos", modality, bank["video_id"].nunique())
    return banks[0], banks[1]


# ---- 3. unified embeddings -------------------------------------------------------------------


def _embedding_frame(
    ids: Sequence[str], modality: str, vectors: np.ndarray, source: str, in_corpus: Sequence[bool]
) -> pd.DataFrame:
    col = np.empty(len(ids), dtype=object)
    col[:] = list(vectors.astype(np.float32))
    return pd.DataFrame(
        {
            "video_id": np.asarray(ids, dtype=object),
            "modality": modality,
            "vector": col,
            "source": source,
            "in_corpus": np.asarray(in_corpus, dtype=bool),
        }
    )


def _require_user_table(
    table: pd.DataFrame | None, entry: str, columns: Sequence[str], switch: str, hint: str
) -> None:
    """A user-supplied catalog table that ``build_index.<switch>`` needs: non-empty, with ``columns``."""
    if table is None or len(table) == 0:
        raise ValueError(
            f"build_index.{switch} but the catalog entry {entry} is empty or its file does not "
            f"exist: {hint}"
        )
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{entry} lacks columns {sorted(missing)}")


def _table_vectors(
    table: pd.DataFrame, entry: str, modality: str, ids: Sequence[str]
) -> np.ndarray:
    """Rows of a user table (``video_id, modality, vector``) for ``ids``, in that order."""
    _require_user_table(
        table, entry, ("video_id", "modality", "vector"), "embeddings.source=table",
        "supply a parquet table (video_id, modality, vector) or set embeddings.source: learned",
    )
    sub = table[table["modality"] == modality]
    sub_ids = sub["video_id"].astype(str)
    dup = sub_ids[sub_ids.duplicated()].tolist()
    if dup:
        raise ValueError(f"{entry} has several {modality} vectors for video_ids {dup[:3]}")
    pos = dict(zip(sub_ids, range(len(sub)), strict=True))
    missing = [i for i in ids if i not in pos]
    if missing:
        raise ValueError(
            f"{entry} has no {modality} vector for {len(missing)} of the {len(ids)} videos that "
            f"need one (e.g. {missing[:3]}): it must cover every video of video_index (and of "
            "the corpus)"
        )
    vecs = stack_vectors(sub["vector"].iloc[[pos[i] for i in ids]])
    check_keys(vecs, list(ids), f"{entry} {modality}")
    if (np.linalg.norm(vecs, axis=1) == 0).any():
        raise ValueError(f"{entry} has all-zero {modality} vectors: cosine is undefined for them")
    return vecs


def embed_videos(
    joint_space: dict[str, Any],
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    video_index: pd.DataFrame,
    memory_bank_audio: pd.DataFrame,
    memory_bank_visual: pd.DataFrame,
    external_embeddings: pd.DataFrame,
    external_corpus_embeddings: pd.DataFrame,
    params: dict[str, Any],
) -> pd.DataFrame:
    """Unit vectors in the unified space for every dataset video and every corpus video.

    Columns: ``video_id, modality (audio/visual), vector, source (dataset/external_corpus),
    in_corpus``. With the training split as corpus, the training videos' rows are the keys
    (``in_corpus``); with an external corpus its videos get their own ``external_corpus`` rows
    (their ``video_id`` may coincide with a dataset video's). Vectors come from the learned
    heads (``embeddings.source: learned``) or from the ``external_embeddings`` /
    ``external_corpus_embeddings`` tables (``table``), and are L2-normalised.
    """
    source = _choice(params, "embeddings.source", ("learned", "table"))
    corpus = _choice(params, "corpus.source", ("train_split", "external"))
    _check_video_index(video_index)
    dataset_ids = sorted(video_index["video_id"].astype(str))
    in_train = membership(video_index)[CORPUS_SPLIT].to_dict()
    frames = []
    model = load_joint_space(joint_space) if source == "learned" else None
    for modality, features, bank in (
        ("audio", audio_features, memory_bank_audio),
        ("visual", visual_features, memory_bank_visual),
    ):
        head = getattr(model, modality) if model is not None else None
        if head is not None:
            pooled = _pooled(features, dataset_ids, f"{modality}_features")
            _check_dim(pooled, head, f"{modality}_features")
            vecs = embed(head, pooled)
        else:
            vecs = _table_vectors(external_embeddings, "external_embeddings", modality, dataset_ids)
        in_corpus = [corpus == "train_split" and bool(in_train[i]) for i in dataset_ids]
        frames.append(_embedding_frame(dataset_ids, modality, normalize(vecs), DATASET, in_corpus))
        if corpus == "external":
            bank_ids = sorted(bank["video_id"].astype(str).unique())
            if head is not None:
                pooled = _pooled(bank, bank_ids, f"external_corpus_{modality}_features")
                _check_dim(pooled, head, f"external_corpus_{modality}_features")
                vecs = embed(head, pooled)
            else:
                vecs = _table_vectors(
                    external_corpus_embeddings, "external_corpus_embeddings", modality, bank_ids
                )
            frames.append(
                _embedding_frame(
                    bank_ids, modality, normalize(vecs), EXTERNAL, [True] * len(bank_ids)
                )
            )
    out = pd.concat(frames, ignore_index=True)
    dims = {len(v) for v in out["vector"]}
    if len(dims) != 1:
        raise ValueError(
            f"audio and visual embeddings have different dimensions {sorted(dims)}: both "
            "modalities must live in one unified space"
        )
    return out


def _check_dim(pooled: np.ndarray, head: Any, table: str) -> None:
    expected = head.mean.shape[0]
    if pooled.shape[1] != expected:
        raise ValueError(
            f"{table} has D={pooled.shape[1]} but the joint space head was trained on "
            f"D={expected}: re-run build_index so the heads are retrained on these features"
        )


# ---- 4. FAISS indices ------------------------------------------------------------------------


def build_indices(
    unified_embeddings: pd.DataFrame, params: dict[str, Any], seed: int
) -> tuple[KeyedFaissIndex, KeyedFaissIndex]:
    """One FAISS index per modality over the corpus keys (``build_index.index.factory``).

    Row ``i`` of each index is the corpus video ``ids[i]`` (sorted ``video_id``s); the
    ``KeyedFaissIndex`` carries the ids so the saved index is self-describing.
    """
    cfg = _param(params, "index")
    out = []
    for modality in MODALITIES:
        ids, keys = corpus_keys(unified_embeddings, modality)
        out.append(
            build_index(
                keys,
                ids,
                str(cfg["factory"]),
                search_params=str(cfg.get("search_params") or ""),
                modality=modality,
                threads=cfg.get("threads"),
                train_size=cfg.get("train_size"),
                seed=int(seed),
            )
        )
        logger.info(
            "%s index: %s over %d keys, d=%d", modality, cfg["factory"], out[-1].ntotal, out[-1].d
        )
    return out[0], out[1]


# ---- 5. neighbour tables ---------------------------------------------------------------------


def retrieve_neighbors(
    unified_embeddings: pd.DataFrame,
    video_index: pd.DataFrame,
    audio_index: KeyedFaissIndex,
    visual_index: KeyedFaissIndex,
    params: dict[str, Any],
    split_protocol: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """R+ (top-n) and R- (bottom-n) corpus neighbours of every dataset video, both directions.

    ``v2a``: the visual embedding queries the audio index (audio missing; values come from
    ``memory_bank_audio``); ``a2v``: audio queries the visual index. A corpus key with the
    query's own ``video_id`` is never returned; only corpus keys (videos with training
    questions) are indexed, so a video with only val/test questions can never be retrieved.
    ``rank`` 0 is the most similar (pos) / least similar (neg); ``score`` is the cosine of
    eq. (1). ``query_splits``: the query video's splits (``train+test``); ``protocol``: the
    split protocol of the dataset (``split_protocol`` report of the dataset pipeline).
    """
    n = int(_param(params, "neighbors.n"))
    if n < 1:
        raise ValueError(f"build_index.neighbors.n={n}; it must be >= 1")
    threads = _param(params, "index").get("threads")
    _check_video_index(video_index)
    split = splits_of(video_index)
    protocol = str((split_protocol or {}).get("protocol", "unrecorded"))
    indices = {"audio": audio_index, "visual": visual_index}
    queries = unified_embeddings[unified_embeddings["source"] == DATASET]
    frames = []
    for direction, (q_mod, k_mod) in DIRECTIONS.items():
        index = indices[k_mod]
        key_ids, keys = corpus_keys(unified_embeddings, k_mod)
        if key_ids != index.ids:
            raise ValueError(
                f"the {k_mod} index holds {index.ntotal} keys that do not match the corpus rows "
                "of unified_embeddings: the index comes from another run; re-run build_index"
            )
        q = queries[queries["modality"] == q_mod].sort_values("video_id", kind="stable")
        q_ids = q["video_id"].astype(str).tolist()
        q_vecs = stack_vectors(q["vector"])
        if 2 * n > index.ntotal - 1:
            logger.warning("neighbors.n=%d and a corpus of %d: R+ and R- overlap", n, index.ntotal)
        for polarity, lowest in (("pos", False), ("neg", True)):
            rows, scores = search_excluding(
                index, keys, q_vecs, q_ids, n, lowest=lowest, threads=threads
            )
            frames.append(
                pd.DataFrame(
                    {
                        "query_video_id": np.repeat(np.asarray(q_ids, dtype=object), n),
                        "query_splits": np.repeat([split.get(i) for i in q_ids], n),
                        "direction": direction,
                        "polarity": polarity,
                        "rank": np.tile(np.arange(n, dtype=np.int32), len(q_ids)),
                        "neighbor_video_id": np.asarray(index.ids, dtype=object)[rows.ravel()],
                        "score": scores.ravel().astype(np.float32),
                        "protocol": protocol,
                    }
                )
            )
    out = pd.concat(frames, ignore_index=True)
    if not np.isfinite(out["score"]).all():
        raise ValueError("non-finite similarity scores: check the embeddings")
    return out.sort_values(
        ["query_video_id", "direction", "polarity", "rank"], kind="stable"
    ).reset_index(drop=True)


# ---- 6. retrieval quality --------------------------------------------------------------------


def evaluate_retrieval(
    neighbors: pd.DataFrame,
    scene_metadata: pd.DataFrame,
    external_corpus_metadata: pd.DataFrame,
    unified_embeddings: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Share of neighbours whose instrument set overlaps the query's, vs random neighbours.

    For each query split (a video shared between splits counts in each; and ``all``) and
    direction: ``pos`` (R+), ``neg`` (R-) and
    ``random`` (n corpus videos drawn uniformly, never the query itself, seeded). Pairs whose
    neighbour has no instrument labels (an external corpus without
    ``external_corpus_metadata``) are left out; ``n_pairs`` says how many were scored.
    """
    corpus = _choice(params, "corpus.source", ("train_split", "external"))
    labels = {
        str(k): set(v)
        for k, v in zip(scene_metadata["video_id"], scene_metadata["instruments"], strict=True)
    }
    if corpus == "external":
        corpus_labels = (
            {}
            if external_corpus_metadata is None or not len(external_corpus_metadata)
            else {
                str(k): set(v)
                for k, v in zip(
                    external_corpus_metadata["video_id"],
                    external_corpus_metadata["instruments"],
                    strict=True,
                )
            }
        )
    else:
        corpus_labels = labels
    rng = np.random.default_rng(int(seed))
    rows = []
    pairs = neighbors
    for direction, (_, k_mod) in DIRECTIONS.items():
        corpus_ids = np.asarray(corpus_keys(unified_embeddings, k_mod)[0], dtype=object)
        sub = pairs[(pairs["direction"] == direction) & (pairs["polarity"] == "pos")]
        n = int(sub["rank"].max()) + 1 if len(sub) else 0
        queries = sub["query_video_id"].drop_duplicates().tolist()
        # n <= corpus minus the query's own id was checked when the neighbours were retrieved
        rand = [rng.choice(corpus_ids[corpus_ids != q], size=n, replace=False) for q in queries]
        rand_df = pd.DataFrame(
            {
                "query_video_id": np.repeat(np.asarray(queries, dtype=object), n),
                "neighbor_video_id": np.concatenate(rand) if rand else [],
                "polarity": "random",
                "direction": direction,
            }
        )
        rand_df["query_splits"] = rand_df["query_video_id"].map(
            dict(zip(sub["query_video_id"], sub["query_splits"], strict=False))
        )
        dir_pairs = pd.concat([pairs[pairs["direction"] == direction], rand_df], ignore_index=True)
        hit = [
            (len(labels.get(q, set()) & corpus_labels[nb]) > 0) if nb in corpus_labels else np.nan
            for q, nb in zip(
                dir_pairs["query_video_id"], dir_pairs["neighbor_video_id"], strict=True
            )
        ]
        dir_pairs["overlap"] = hit
        for polarity, grp in dir_pairs.groupby("polarity"):
            member = grp["query_splits"].fillna("").str.split("+")
            by_split = [(s, grp[member.map(lambda x, s=s: s in x)]) for s in SPLITS]
            for split_name, g in [("all", grp), *[(s, g) for s, g in by_split if len(g)]]:
                scored = g["overlap"].dropna()
                rows.append(
                    {
                        "split": split_name,
                        "direction": direction,
                        "kind": polarity,
                        "n_pairs": len(scored),
                        "overlap": float(scored.mean()) if len(scored) else np.nan,
                    }
                )
    table = pd.DataFrame(rows).sort_values(["split", "direction", "kind"]).reset_index(drop=True)
    scored = table.dropna(subset=["overlap"])
    if len(scored) < len(table):
        logger.warning("no instrument labels for some corpus videos: overlap not computed there")
    metrics = {
        f"quality.{r.split}.{r.direction}.{r.kind}_overlap": r.overlap for r in scored.itertuples()
    }
    for r in scored[scored["split"] == "all"].itertuples():
        logger.info(
            "retrieval quality %s %s: %.3f instrument overlap (%d pairs)",
            r.direction,
            r.kind,
            r.overlap,
            r.n_pairs,
        )
    return _to_mlflow(metrics), table
