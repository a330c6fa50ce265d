"""Audio / visual feature extraction from media: the shared core of the ``features`` pipeline
(the dataset's videos) and of the ``corpus`` pipeline (an external retrieval corpus, Table 4),
and of ``r2scp-pipeline predict --video``. Both pipelines call :func:`extract_audio_features` /
:func:`extract_visual_features` with the same ``params:features``, so a corpus made here has the
dataset's ``[T, S, D]``.

Every video of ``video_index`` gets ``T`` segments (``features.segments``, one per second for
10 s clips) of ``S`` tokens each, ``[T, S, D]``: visual grid cells, audio time bins (written
with an ``s`` column when ``S > 1``, see :mod:`r2scp_pipeline.tensors`). Media with ``n != T``
seconds are mapped to ``T`` segments by :func:`segment_indices`, like the official MUSIC-AVQA
loaders: longer media are sampled evenly (60 s -> seconds 0, 6, ..., 54), shorter ones are
padded by repeating their last second.

``features.source`` picks the media: ``extracted`` (``audio_path`` wavs, ``frames_dir`` 1 fps
JPEGs), ``mp4`` (the raw ``video_path``, decoded with PyAV), or ``auto`` (per video, the
extracted files where ``video_index`` has them, else the mp4).

A missing / corrupt / truncated / silent media file raises :class:`MediaError` naming the video
and the file; with ``features.on_error: skip`` the video is left out of *both* feature tables
(:func:`align_media_features`), counted and listed in the stats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from r2scp_pipeline.encoders import (
    EfficientNetLite0Encoder,
    LogMelEncoder,
    MediaError,
    decode_frame,
    list_frames,
    load_precomputed,
    parse_grid,
    read_audio,
    read_mp4_audio,
    read_mp4_frames,
)
from r2scp_pipeline.tensors import tensor_to_frame

logger = logging.getLogger(__name__)

AUDIO_ENCODERS = ("logmel", "precomputed")
VISUAL_ENCODERS = ("efficientnet_lite0", "precomputed")
ON_ERROR = ("raise", "skip")
MEDIA_SOURCES = ("auto", "extracted", "mp4")


# ---- helpers -------------------------------------------------------------------------------


def segment_indices(n_seconds: int, segments: int) -> np.ndarray:
    """Which source second feeds each of the ``segments`` output segments (``[T]`` int64).

    ``n >= T``: evenly spaced ``floor(i * n / T)`` (60 -> 10 gives 0, 6, ..., 54, the official
    loaders' ``[::6]``; 10 -> 10 is the identity). ``n < T``: ``0..n-1`` then ``n-1`` repeated.
    """
    if n_seconds < 1:
        raise ValueError(f"need at least one second of media, got {n_seconds}")
    if segments < 1:
        raise ValueError(f"features.segments must be >= 1, got {segments}")
    steps = np.arange(segments, dtype=np.int64)
    if n_seconds >= segments:
        return (steps * n_seconds) // segments
    return np.minimum(steps, n_seconds - 1)


def feature_param(cfg: dict[str, Any], *keys: str) -> Any:
    """``cfg[k1][k2]...`` with an error naming the missing ``features.k1.k2`` parameter."""
    node: Any = cfg
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            name = ".".join(("features",) + keys[: i + 1])
            raise ValueError(f"missing parameter {name} (see conf/base/parameters_features.yml)")
        node = node[key]
    return node


def feature_choice(cfg: dict[str, Any], allowed: tuple[str, ...], *keys: str) -> str:
    value = feature_param(cfg, *keys)
    if value not in allowed:
        raise ValueError(f"features.{'.'.join(keys)} must be one of {list(allowed)}, got {value!r}")
    return value


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` intra-op threads (``None`` = all cores) inside the block, then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n) if n else (os.cpu_count() or 1))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _resolve(path: Any, root: Path) -> Path | None:
    """A ``video_index`` path (relative = relative to ``root``) or None when absent."""
    if path is None or (not isinstance(path, str | os.PathLike) and pd.isna(path)):
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


def _check_video_index(video_index: pd.DataFrame, columns: tuple[str, ...] = ()) -> None:
    """``video_id`` plus at least one of ``columns`` (if any), non-empty, unique ids."""
    missing = ["video_id"] if "video_id" not in video_index.columns else []
    if columns and not any(c in video_index.columns for c in columns):
        missing.append(" or ".join(columns))
    if missing:
        raise ValueError(f"video_index lacks column(s) {missing}; has {list(video_index.columns)}")
    if len(video_index) == 0:
        raise ValueError("video_index is empty: nothing to extract features from")
    dup = video_index["video_id"][video_index["video_id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"video_index repeats video_id(s) {dup[:5]}")


class _Collector:
    """Gathers per-video ``[T, S, D]`` features and skips; applies the ``on_error`` policy.

    The table's shape ``(S, D)`` is the one most videos share (ties: the earliest video's), so
    one odd file is blamed whichever position it holds in ``video_index``. Videos of another
    shape fail when :meth:`result` runs (the first one raises, or all are skipped).
    """

    def __init__(self, modality: str, encoder: str, cfg: dict[str, Any]) -> None:
        self.modality, self.encoder = modality, encoder
        self.on_error = feature_choice(cfg, ON_ERROR, "on_error")
        self.segments = int(feature_param(cfg, "segments"))
        self.feats: dict[str, np.ndarray] = {}
        self.sources: dict[str, str | None] = {}
        self.skipped: list[dict[str, str]] = []
        self.start = time.perf_counter()
        self.earlier_seconds = 0.0  # work done in shards before :meth:`merge` gathered them

    def shard(self, video_ids: list[str]) -> dict[str, Any]:
        """What one shard hands to :meth:`merge`: its videos' features, sources, skips and
        seconds (shapes are compared only when the shards are merged, over all videos)."""
        return {
            "modality": self.modality,
            "encoder": self.encoder,
            "on_error": self.on_error,
            "segments": self.segments,
            "video_ids": list(video_ids),
            "feats": self.feats,
            "sources": self.sources,
            "skipped": self.skipped,
            "seconds": self.earlier_seconds + time.perf_counter() - self.start,
        }

    @classmethod
    def merge(cls, shards: list[dict[str, Any]]) -> tuple[_Collector, list[str]]:
        """One collector over the shards, in shard order, and all their video ids."""
        if not shards:
            raise ValueError("no feature shards to merge")
        first = shards[0]
        keys = ("modality", "encoder", "on_error", "segments")
        for other in shards[1:]:
            differ = [k for k in keys if other[k] != first[k]]
            if differ:
                raise ValueError(f"feature shards disagree on {differ}: cannot merge them")
        col = cls.__new__(cls)
        col.modality, col.encoder = first["modality"], first["encoder"]
        col.on_error, col.segments = first["on_error"], first["segments"]
        col.feats, col.sources, col.skipped = {}, {}, []
        video_ids: list[str] = []
        for part in shards:
            col.feats.update(part["feats"])
            col.sources.update(part["sources"])
            col.skipped.extend(part["skipped"])
            video_ids.extend(part["video_ids"])
        col.start = time.perf_counter()
        col.earlier_seconds = float(sum(part["seconds"] for part in shards))
        return col, video_ids

    def fail(self, video_id: str, err: MediaError) -> None:
        err.for_video(video_id)
        if self.on_error == "raise":
            raise err
        logger.warning("features: skipping %s video %s", self.modality, err)
        self.skipped.append(
            {
                "video_id": video_id,
                "modality": self.modality,
                "path": str(err.path),
                "reason": err.reason,
            }
        )

    def add(self, video_id: str, x: np.ndarray, source: str | None) -> None:
        """Store ``x [T, S, D]`` after checking it is finite (shapes are compared at the end)."""
        if not np.isfinite(x).all():
            self.fail(
                video_id, MediaError(f"{self.encoder} encoder produced NaN or inf features", source)
            )
            return
        self.feats[video_id] = np.asarray(x, dtype=np.float32)
        self.sources[video_id] = source

    def _drop_odd_shapes(self, ids: list[str]) -> list[str]:
        """Fail every video whose ``(S, D)`` differs from the most common one; the rest."""
        shapes = [self.feats[v].shape[1:] for v in ids]
        counts: dict[tuple[int, ...], int] = {}
        for shape in shapes:
            counts[shape] = counts.get(shape, 0) + 1
        common = max(counts, key=lambda k: counts[k])  # first-seen wins a tie
        if len(counts) == 1:
            return ids
        keep = []
        for vid, shape in zip(ids, shapes, strict=True):
            if shape == common:
                keep.append(vid)
                continue
            del self.feats[vid]
            self.fail(
                vid,
                MediaError(
                    f"feature shape [S={shape[0]}, D={shape[1]}] differs from the "
                    f"[S={common[0]}, D={common[1]}] of {counts[common]} of {len(ids)} videos",
                    self.sources[vid],
                ),
            )
        return keep

    def result(self, video_ids: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
        ids = [v for v in video_ids if v in self.feats]
        if ids:
            ids = self._drop_odd_shapes(ids)
        if not ids:
            reasons = "; ".join(f"{s['video_id']}: {s['reason']}" for s in self.skipped[:3])
            raise RuntimeError(
                f"all {len(video_ids)} videos failed {self.modality} feature extraction ({reasons})"
            )
        x = np.stack([self.feats[v] for v in ids])  # [N, T, S, D]
        tokens = int(x.shape[2])
        # S = 1 keeps the plain [N, T, D] layout (no s column), as before grids and time bins
        frame = tensor_to_frame(ids, x if tokens > 1 else x[:, :, 0], id_col="video_id")
        seconds = self.earlier_seconds + time.perf_counter() - self.start
        stats = {
            "modality": self.modality,
            "encoder": self.encoder,
            "dim": int(x.shape[3]),
            "tokens": tokens,
            "segments": self.segments,
            "videos": len(video_ids),
            "extracted": len(ids),
            "skipped": self.skipped,
            "seconds": seconds,
        }
        logger.info(
            "features: %s %s [T=%d, S=%d, D=%d] for %d/%d videos in %.1f s (%d skipped)",
            self.modality,
            self.encoder,
            self.segments,
            tokens,
            x.shape[3],
            len(ids),
            len(video_ids),
            seconds,
            len(self.skipped),
        )
        return frame, stats


def _media_columns(cfg: dict[str, Any], extracted: str) -> tuple[str, ...]:
    """The ``video_index`` columns ``features.source`` reads, in order of preference:
    ``extracted`` (``audio_path`` / ``frames_dir``) and / or ``video_path`` (the raw mp4)."""
    source = feature_choice(cfg, MEDIA_SOURCES, "source")
    return {"auto": (extracted, "video_path"), "extracted": (extracted,), "mp4": ("video_path",)}[
        source
    ]


def _media_files(
    video_index: pd.DataFrame, columns: tuple[str, ...], root: Path
) -> list[tuple[Path | None, bool]]:
    """Per video: the first of ``columns`` that ``video_index`` fills in (resolved against
    ``root``) and whether it is the mp4; ``(None, False)`` when none is."""
    out: list[tuple[Path | None, bool]] = []
    present = [c for c in columns if c in video_index.columns]
    for row in video_index[present].itertuples(index=False):
        found = (None, False)
        for column, value in zip(present, row, strict=True):
            src = _resolve(value, root)
            if src is not None:
                found = (src, column == "video_path")
                break
        out.append(found)
    return out


def _no_media(columns: tuple[str, ...]) -> MediaError:
    return MediaError(
        f"video_index gives no {' and no '.join(columns)} (see features.source)", None
    )


def _progress(iterable: Any, total: int, desc: str, cfg: dict[str, Any]) -> Any:
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit="video",
        mininterval=1.0,
        disable=not bool(cfg.get("progress", True)),
    )


def _precomputed_loader(
    cfg: dict[str, Any], modality: str
) -> Callable[[str], tuple[np.ndarray, Path]]:
    directory = feature_param(cfg, modality, "precomputed", "dir")
    pattern = feature_param(cfg, modality, "precomputed", "pattern")
    if not directory:
        raise ValueError(
            f"features.{modality}.encoder is 'precomputed' but features.{modality}.precomputed.dir "
            "is not set: point it at the folder of per-video .npy files"
        )
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"features.{modality}.precomputed.dir {str(root)!r} is not a directory")
    # spatial [S, C, H, W] visual files are pooled to the grid; audio ones over all of H, W
    grid = parse_grid(feature_param(cfg, "visual", "grid")) if modality == "visual" else None

    def load(video_id: str) -> tuple[np.ndarray, Path]:
        path = root / pattern.format(video_id=video_id)
        return load_precomputed(path, grid), path

    return load


# ---- extraction ------------------------------------------------------------------------------


def extract_audio_features(
    video_index: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Audio features ``[T, S_a, Da]`` per video of ``video_index``.

    ``features.audio.encoder``: ``logmel`` (VGGish-style log-mel, see
    :class:`~.encoders.LogMelEncoder`; by default ``S_a = frames_per_segment`` time bins of raw
    64-band log-mel per segment, or one pooled token with ``pooling: mean_std | mean``) reads
    ``audio_path`` or, per ``features.source``, the audio stream of the raw ``video_path`` mp4; ``precomputed`` reads ``<precomputed.dir>/<video_id>.npy`` ``[seconds, Da]``
    (``S_a = 1``). Clips whose RMS is
    below ``features.audio.min_rms`` count as silent by accident. Runs on one torch thread.

    Returns the long feature table (videos that failed are absent) and extraction stats.
    """
    col, video_ids = _collect_audio(video_index, params)
    return col.result(video_ids)


def _start(
    modality: str, encoders: tuple[str, ...], media_column: str, video_index: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[str, tuple[str, ...], _Collector, Path, list[str]]:
    """What both extractions begin with: the encoder named by ``features.<modality>.encoder``,
    the media columns it reads (the index is checked for them), an empty collector, the media
    root and the video ids."""
    encoder_name = feature_choice(params, encoders, modality, "encoder")
    columns = _media_columns(params, media_column) if encoder_name != "precomputed" else ()
    _check_video_index(video_index, columns)
    root = Path(params.get("media_root") or Path.cwd())
    ids = [str(v) for v in video_index["video_id"]]
    return encoder_name, columns, _Collector(modality, encoder_name, params), root, ids


def _collect_audio(
    video_index: pd.DataFrame, params: dict[str, Any]
) -> tuple[_Collector, list[str]]:
    """Encode the audio of ``video_index``'s videos; the collector holds them (and skips)."""
    encoder_name, columns, col, root, video_ids = _start(
        "audio", AUDIO_ENCODERS, "audio_path", video_index, params
    )

    if encoder_name == "precomputed":
        precomputed = _precomputed_loader(params, "audio")
        files: list[tuple[Path | None, bool]] = [(None, False)] * len(video_ids)

        def load(video_id: str, src: Path | None, mp4: bool) -> tuple[np.ndarray, Path | None]:
            return precomputed(video_id)  # official features: video_index paths not used
    else:
        lm = dict(feature_param(params, "audio", "logmel"))
        encoder = LogMelEncoder(**lm)
        min_rms = float(feature_param(params, "audio", "min_rms"))
        files = _media_files(video_index, columns, root)

        def load(video_id: str, src: Path | None, mp4: bool) -> tuple[np.ndarray, Path | None]:
            if src is None:
                raise _no_media(columns)
            read = read_mp4_audio if mp4 else read_audio
            wave = read(src, encoder.sample_rate)
            rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
            if rms < min_rms:
                raise MediaError(
                    f"silent audio: RMS {rms:.2e} < features.audio.min_rms {min_rms:.2e}", src
                )
            return encoder(wave, src), src

    # One thread: a 10 s clip's STFT is ~1 ms of work, too small to split, and OpenMP threads
    # waiting on each other made it 30-60x slower on a busy machine (docs/features.md).
    with torch_threads(1):
        for vid, (path, mp4) in _progress(
            zip(video_ids, files, strict=True), len(video_ids), "features: audio", params
        ):
            try:
                per_second, src = load(vid, path, mp4)
            except MediaError as err:
                col.fail(vid, err)
                continue
            col.add(vid, per_second[segment_indices(len(per_second), col.segments)], str(src))
    return col, video_ids


def extract_visual_features(
    video_index: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Visual features ``[T, S_v, Dv]`` per video of ``video_index``, ``S_v = rows * cols`` of
    ``features.visual.grid`` (row-major cells of the last feature map, average-pooled).

    ``features.visual.encoder``: ``efficientnet_lite0`` (ImageNet EfficientNet-Lite0, Dv = 1280,
    or 320 with ``token: block``) decodes only the ``T`` frames it needs from ``frames_dir`` (one
    image per second, in name order) or, per ``features.source``, from the 1 fps frames of the
    raw ``video_path`` mp4, at ``input_size`` px and encodes them in batches of
    ``batch_size`` frames across videos; ``precomputed`` reads
    ``<precomputed.dir>/<video_id>.npy``: spatial ``[seconds, C, H, W]`` is pooled to the grid,
    ``[seconds, Dv]`` gives ``S_v = 1``.

    Returns the long feature table (videos that failed are absent) and extraction stats.
    """
    col, video_ids = _collect_visual_parts(video_index, params)
    return col.result(video_ids)


def _unique_seconds(n_seconds: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct source seconds the ``segments`` segments of an ``n_seconds`` video need,
    and segment -> position among them."""
    return np.unique(segment_indices(n_seconds, segments), return_inverse=True)


def _visual_batch_size(params: dict[str, Any]) -> int:
    """Frames per EfficientNet forward pass (``features.visual.efficientnet_lite0.batch_size``)."""
    return max(1, int(feature_param(params, "visual", "efficientnet_lite0", "batch_size")))


def _collect_visual(
    video_index: pd.DataFrame, params: dict[str, Any], desc: str = "features: visual"
) -> tuple[_Collector, list[str]]:
    """Encode the frames of ``video_index``'s videos; the collector holds them (and skips)."""
    encoder_name, columns, col, root, video_ids = _start(
        "visual", VISUAL_ENCODERS, "frames_dir", video_index, params
    )
    T = col.segments

    with torch_threads(params.get("num_threads")):
        if encoder_name == "precomputed":
            load = _precomputed_loader(params, "visual")
            for vid in _progress(video_ids, len(video_ids), desc, params):
                try:
                    per_second, src = load(vid)
                except MediaError as err:
                    col.fail(vid, err)
                    continue
                col.add(vid, per_second[segment_indices(len(per_second), T)], str(src))
            return col, video_ids

        size = int(feature_param(params, "visual", "efficientnet_lite0", "input_size"))
        batch_size = _visual_batch_size(params)
        token = feature_param(params, "visual", "efficientnet_lite0", "token")
        encoder = EfficientNetLite0Encoder(size, feature_param(params, "visual", "grid"), token)
        # pending videos: (video_id, frames_dir, inverse index [T]) and their unique frames
        pending: list[tuple[str, str, np.ndarray]] = []
        pending_frames: list[np.ndarray] = []

        def flush() -> None:
            if not pending:
                return
            feats = encoder(np.concatenate(pending_frames))  # [sum(U_i), Dv]
            offset = 0
            for (vid, src, inverse), frames in zip(pending, pending_frames, strict=True):
                col.add(vid, feats[offset : offset + len(frames)][inverse], src)
                offset += len(frames)
            pending.clear()
            pending_frames.clear()

        n_pending = 0
        files = _media_files(video_index, columns, root)
        for vid, (src, mp4) in _progress(
            zip(video_ids, files, strict=True), len(video_ids), "features: visual", params
        ):
            try:
                if src is None:
                    raise _no_media(columns)
                if mp4:
                    decoded, n_seconds = read_mp4_frames(
                        src, size, lambda n: _unique_seconds(n, T)[0]
                    )  # [U, s, s, 3]
                    inverse = _unique_seconds(n_seconds, T)[1]
                else:
                    frames = list_frames(src)
                    unique, inverse = _unique_seconds(len(frames), T)
                    decoded = np.stack([decode_frame(frames[i], size) for i in unique])
            except MediaError as err:
                col.fail(vid, err)
                continue
            pending.append((vid, str(src), inverse))
            pending_frames.append(decoded)
            n_pending += len(decoded)
            if n_pending >= batch_size:
                flush()
                n_pending = 0
        flush()
    return col, video_ids


def shard_rows(n_rows: int, shard: int, shards: int) -> np.ndarray:
    """Row positions of shard ``shard`` of ``shards``: contiguous, in order, sizes differing by
    at most one (``np.array_split``), so the shards concatenated in order are all the rows."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards and shards >= 1")
    return np.array_split(np.arange(n_rows), shards)[shard]


def _shard(
    collect: Callable[[pd.DataFrame, dict[str, Any]], tuple[_Collector, list[str]]],
    modality: str,
    video_index: pd.DataFrame,
    params: dict[str, Any],
    shard: int,
    shards: int,
) -> dict[str, Any]:
    _check_video_index(video_index)  # the whole index: duplicates across shards count too
    rows = video_index.iloc[shard_rows(len(video_index), shard, shards)]
    if len(rows) == 0:  # more shards than videos
        encoder = feature_param(params, modality, "encoder")
        return _Collector(modality, encoder, params).shard([])
    col, video_ids = collect(rows.reset_index(drop=True), params)
    return col.shard(video_ids)


def extract_audio_shard(
    video_index: pd.DataFrame, params: dict[str, Any], shard: int, shards: int
) -> dict[str, Any]:
    """Audio features of shard ``shard`` of ``shards`` of ``video_index`` (see
    :func:`shard_rows`), as a partial result for :func:`merge_feature_shards`. The
    ``features`` pipeline runs one per shard, in parallel under a parallel runner."""
    return _shard(_collect_audio, "audio", video_index, params, shard, shards)


def extract_visual_shard(
    video_index: pd.DataFrame, params: dict[str, Any], shard: int, shards: int
) -> dict[str, Any]:
    """Visual features of one shard of ``video_index``, like :func:`extract_audio_shard`;
    ``features.visual.workers`` processes encode its frames (:func:`_collect_visual_parts`)."""
    return _shard(_collect_visual_parts, "visual", video_index, params, shard, shards)


def _collect_visual_parts(
    video_index: pd.DataFrame, params: dict[str, Any]
) -> tuple[_Collector, list[str]]:
    """:func:`_collect_visual` on ``features.visual.workers`` processes, each encoding one
    contiguous part of ``video_index``, gathered in order as the pipeline merges shards.

    EfficientNet encodes frames in batches across videos, and a frame's features move in the
    last float32 digits with the batch it shares (tests/test_dask_features.py). So the parts
    are cut where one process would start a new batch (:func:`_batch_starts`, from each
    video's number of distinct frames): every frame is then encoded in the batch it would
    share in one process, and the table is the same bit for bit. That holds when every video
    reads a frames folder and none is skipped; with mp4 sources (frame counts unknown before
    decoding) the parts are cut evenly, and a skipped video shifts its part's later batches:
    then features can differ from one process's within 1e-4, as with shards. Workers are
    started with ``spawn`` (no fork of a process whose torch threads are running); an error of
    a video in a worker is raised here.
    """
    workers = (params.get("visual") or {}).get("workers", 1)  # the schema's default
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"features.visual.workers must be a positive integer, got {workers!r}")
    encoder = feature_choice(params, VISUAL_ENCODERS, "visual", "encoder")
    n = len(video_index)
    if workers == 1 or n < 2 or encoder != "efficientnet_lite0":  # precomputed: file reads
        return _collect_visual(video_index, params)
    starts = _batch_starts(video_index, params) or list(range(n))
    cuts = sorted({min(starts, key=lambda s: abs(s - w * n / workers)) for w in range(1, workers)}
                  - {0, n})  # fmt: skip
    bounds = [0, *cuts, n]
    if len(bounds) == 2:  # one batch: nothing to split
        return _collect_visual(video_index, params)
    parts = [video_index.iloc[a:b].reset_index(drop=True)
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]  # fmt: skip
    descs = [f"features: visual ({i + 1}/{len(parts)})" for i in range(len(parts))]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(parts), mp_context=mp.get_context("spawn")) as pool:
        done = list(pool.map(_visual_part, parts, [params] * len(parts), descs))
    return _Collector.merge(done)


def _batch_starts(video_index: pd.DataFrame, params: dict[str, Any]) -> list[int] | None:
    """The positions of ``video_index`` at which :func:`_collect_visual` starts a new batch
    (no frames pending) when no video is skipped, from each video's number of distinct
    frames; ``None`` when a video has no frames folder (an mp4, or no media) or cannot be
    listed: its count is known only once it is decoded."""
    columns = _media_columns(params, "frames_dir")
    root = Path(params.get("media_root") or Path.cwd())
    segments = int(feature_param(params, "segments"))
    batch_size = _visual_batch_size(params)
    starts, pending = [0], 0
    for i, (src, mp4) in enumerate(_media_files(video_index, columns, root)):
        if src is None or mp4:
            return None
        try:
            seconds = len(list_frames(src))
        except MediaError:
            return None
        pending += len(_unique_seconds(seconds, segments)[0])
        if pending >= batch_size:
            starts.append(i + 1)
            pending = 0
    return starts


def _visual_part(video_index: pd.DataFrame, params: dict[str, Any], desc: str) -> dict[str, Any]:
    """One worker's part of :func:`_collect_visual_parts` (its progress bar ``desc``), as a
    partial result."""
    col, video_ids = _collect_visual(video_index, params, desc)
    return col.shard(video_ids)


def merge_feature_shards(*shards: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The shards' partial results, in shard order -> the long feature table and stats that
    :func:`extract_audio_features` / :func:`extract_visual_features` return for the whole
    ``video_index``: same rows in the same order, the same ``on_error`` policy (an odd shape
    is judged over all videos), ``seconds`` = the shards' seconds added up + the merge."""
    col, video_ids = _Collector.merge(list(shards))
    return col.result(video_ids)


def align_media_features(
    audio_raw: pd.DataFrame,
    visual_raw: pd.DataFrame,
    audio_stats: dict[str, Any],
    visual_stats: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop a video skipped in either modality from both tables, so downstream pipelines all
    see one video set. Returns ``(audio_features, visual_features)``."""
    skipped = {s["video_id"] for s in audio_stats["skipped"] + visual_stats["skipped"]}
    audio = audio_raw[~audio_raw["video_id"].isin(skipped)].reset_index(drop=True)
    visual = visual_raw[~visual_raw["video_id"].isin(skipped)].reset_index(drop=True)
    if len(audio) == 0:
        raise RuntimeError(
            f"no video has both audio and visual features ({len(skipped)} skipped): see feature_skipped"
        )
    return audio, visual
