"""The project's one on-disk layout for feature sequences, and conversions to and from numpy.

Every feature table in the catalog (``audio_features``, ``visual_features``,
``question_features``, the memory-bank values) is a long parquet table with one row per
(item, segment):

=========  ================================================================
column     meaning
=========  ================================================================
<id_col>   ``video_id`` (str) for audio/visual, ``question`` (str) for text
``t``      segment / token position, 0..L-1 (int32)
``s``      optional: token within the segment, 0..S-1 (int32): a spatial
           grid cell (row-major) for visual, a time frame for audio
``feature`` the token's vector, ``list<float32>`` of length D
=========  ================================================================

Audio and visual tables have the same ``L = T`` (and ``S``) for every video; question tables
are ragged (one row per real token) and are padded on load with :func:`frame_to_padded`.
A table without ``s`` has one token per segment (``S = 1``): :func:`frame_to_tokens` reads
either kind as ``[N, T, S, D]``; :func:`frame_to_tensor` reads ``S = 1`` tables as ``[N, T, D]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def tensor_to_frame(ids: Sequence[str], x: np.ndarray, id_col: str = "video_id") -> pd.DataFrame:
    """``x`` ``[N, L, D]`` -> long table with ``N * L`` rows; ``x`` ``[N, T, S, D]`` -> long
    table with ``N * T * S`` rows and an ``s`` column (see module docstring)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4) or x.shape[0] != len(ids):
        raise ValueError(
            f"expected x of shape [len(ids)={len(ids)}, L, D] or [len(ids), T, S, D], got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError("refusing to write a feature table containing NaN or inf")
    n, length, dim = x.shape[0], x.shape[1], x.shape[-1]
    sub = x.shape[2] if x.ndim == 4 else 1
    columns = {
        id_col: np.repeat(np.asarray(ids, dtype=object), length * sub),
        "t": np.tile(np.repeat(np.arange(length, dtype=np.int32), sub), n),
    }
    if x.ndim == 4:
        columns["s"] = np.tile(np.arange(sub, dtype=np.int32), n * length)
    columns["feature"] = _rows(x.reshape(n * length * sub, dim))
    return pd.DataFrame(columns)


def ragged_to_frame(
    ids: Sequence[str], xs: Sequence[np.ndarray], id_col: str = "question"
) -> pd.DataFrame:
    """A list of ``[L_i, D]`` arrays (one per id) -> long table, one row per real position."""
    if len(ids) != len(xs):
        raise ValueError(f"{len(ids)} ids but {len(xs)} arrays")
    if not xs:
        return pd.DataFrame({id_col: [], "t": np.array([], np.int32), "feature": []})
    dims = {np.asarray(x).shape[-1] for x in xs}
    if len(dims) != 1:
        raise ValueError(f"arrays have different feature dimensions {sorted(dims)}")
    (dim,) = dims
    lengths = np.array([len(x) for x in xs])
    flat_x = np.concatenate([np.asarray(x, np.float32).reshape(-1, dim) for x in xs])
    if not np.isfinite(flat_x).all():
        raise ValueError("refusing to write a feature table containing NaN or inf")
    return pd.DataFrame(
        {
            id_col: np.repeat(np.asarray(ids, dtype=object), lengths),
            "t": np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
            "feature": _rows(flat_x),
        }
    )


def _rows(mat: np.ndarray) -> np.ndarray:
    """``[rows, D]`` -> object array of ``rows`` float32 vectors (parquet ``list<float>``)."""
    out = np.empty(len(mat), dtype=object)
    out[:] = list(mat)
    return out


def _feature_matrix(df: pd.DataFrame) -> np.ndarray:
    """The ``feature`` column as a ``[rows, D]`` float32 matrix."""
    if len(df) == 0:
        return np.zeros((0, 0), np.float32)
    vectors = [np.asarray(v, dtype=np.float32) for v in df["feature"].to_numpy()]
    if len({len(v) for v in vectors}) > 1:
        raise ValueError("feature vectors have different lengths")
    return np.stack(vectors)


def frame_to_tensor(
    df: pd.DataFrame, id_col: str = "video_id", ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Long table -> ``(ids, x[N, L, D])``. All ids must have the same length L.

    ``ids`` selects and orders the output; an id absent from the table raises ``KeyError``.
    A table with several tokens per segment (``s`` column, ``S > 1``) is refused: read it with
    :func:`frame_to_tokens`.
    """
    if "s" in df.columns and len(df) and int(df["s"].max()) > 0:
        raise ValueError(
            f"the table has {int(df['s'].max()) + 1} tokens per segment (column 's'): "
            "read it with frame_to_tokens"
        )
    df = df.sort_values([id_col, "t"], kind="stable")
    mat = _feature_matrix(df)
    keys = df[id_col].to_numpy()
    uniq, start, counts = np.unique(keys, return_index=True, return_counts=True)
    if len(set(counts.tolist())) > 1:
        raise ValueError(f"{id_col} groups have different lengths {sorted(set(counts.tolist()))}")
    length = int(counts[0]) if len(counts) else 0
    x = mat.reshape(len(uniq), length, -1) if len(uniq) else np.zeros((0, 0, 0), np.float32)
    order = [str(u) for u in uniq]
    if ids is None:
        return order, x
    pos = {k: i for i, k in enumerate(order)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise KeyError(f"{len(missing)} ids absent from the feature table, e.g. {missing[:3]}")
    return list(ids), x[[pos[i] for i in ids]]


def frame_to_tokens(
    df: pd.DataFrame, id_col: str = "video_id", ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Long table -> ``(ids, x[N, T, S, D])``; a table without ``s`` gives ``S = 1``.

    Every id must have the same ``T`` and ``S`` (every (t, s) pair present once); ``ids``
    selects and orders the output, an absent id raises ``KeyError``.
    """
    if "s" not in df.columns:
        out, x = frame_to_tensor(df, id_col, ids)
        return out, x[:, :, None, :]
    if len(df) == 0:
        return frame_to_tensor(df.drop(columns="s"), id_col, ids)[0], np.zeros((0, 0, 0, 0), np.float32)
    sub = int(df["s"].max()) + 1
    df = df.sort_values([id_col, "t", "s"], kind="stable")
    s_col = df["s"].to_numpy()
    if (s_col != np.tile(np.arange(sub), len(df) // sub + 1)[: len(df)]).any() or len(df) % sub:
        raise ValueError(f"every ({id_col}, t) must have the tokens s = 0..{sub - 1} exactly once")
    # one row per (id, t): the S tokens of a segment concatenated, then split again below
    mat = _feature_matrix(df)
    dim = mat.shape[1]
    seg = df.iloc[::sub][[id_col, "t"]].copy()
    seg["feature"] = _rows(mat.reshape(-1, sub * dim))
    out, x = frame_to_tensor(seg, id_col, ids)
    return out, x.reshape(x.shape[0], x.shape[1], sub, dim)


def frame_to_padded(
    df: pd.DataFrame, id_col: str = "question", ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ragged long table -> ``(ids, x[N, Lmax, D], mask[N, Lmax])`` (mask True = real token)."""
    df = df.sort_values([id_col, "t"], kind="stable")
    mat = _feature_matrix(df)
    keys = df[id_col].to_numpy()
    uniq, start, counts = np.unique(keys, return_index=True, return_counts=True)
    order = [str(u) for u in uniq]
    sel = order if ids is None else list(ids)
    pos = {k: i for i, k in enumerate(order)}
    missing = [i for i in sel if i not in pos]
    if missing:
        raise KeyError(f"{len(missing)} ids absent from the feature table, e.g. {missing[:3]}")
    lmax = int(counts.max()) if len(counts) else 0
    dim = mat.shape[1] if mat.size else 0
    x = np.zeros((len(sel), lmax, dim), np.float32)
    mask = np.zeros((len(sel), lmax), bool)
    for row, key in enumerate(sel):
        i = pos[key]
        s, c = start[i], counts[i]
        x[row, :c] = mat[s : s + c]
        mask[row, :c] = True
    return sel, x, mask
