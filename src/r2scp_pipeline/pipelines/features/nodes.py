"""Nodes of the ``features`` pipeline: per-video audio / visual sequences and question tokens.

The audio / visual extraction itself lives in :mod:`r2scp_pipeline.media` (shared with the
``corpus`` pipeline and ``predict --video``); this module re-exports its node functions
(:func:`extract_audio_shard`, :func:`extract_visual_shard`, :func:`merge_feature_shards`,
:func:`align_media_features`, and the unsharded :func:`extract_audio_features` /
:func:`extract_visual_features`) and adds the question tokens, the report and the grounding
labels. See :mod:`r2scp_pipeline.media` for ``[T, S, D]``, ``features.source`` and
``features.on_error``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from r2scp_pipeline.encoders import MiniLMQuestionEncoder
from r2scp_pipeline.grounding import AUDIO_ATTRIBUTES, VISUAL_ATTRIBUTES, segment_sounds
from r2scp_pipeline.media import (
    align_media_features,
    extract_audio_features,
    extract_audio_shard,
    extract_visual_features,
    extract_visual_shard,
    feature_choice,
    feature_param,
    merge_feature_shards,
    segment_indices,
    shard_rows,
    torch_threads,
)
from r2scp_pipeline.tensors import ragged_to_frame

__all__ = [
    "align_media_features", "extract_audio_features", "extract_audio_shard",
    "extract_question_features", "extract_visual_features", "extract_visual_shard",
    "feature_report", "grounding_labels", "merge_feature_shards", "segment_indices", "shard_rows",
]  # fmt: skip

logger = logging.getLogger(__name__)

QUESTION_ENCODERS = ("minilm",)


def extract_question_features(
    qa_pairs: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Token features ``[Lq, Dt]`` for every distinct ``question`` text of ``qa_pairs`` and,
    for multiple-choice data, every distinct candidate answer (``choices``).

    ``features.question.encoder: minilm`` = all-MiniLM-L6-v2 last hidden states (Dt = 384) of
    the real word-piece tokens, [CLS]/[SEP] excluded unless ``keep_special_tokens``. Texts are
    deduplicated before encoding; the table is ragged with id column ``question``.
    """
    start = time.perf_counter()
    for column in ("question", "question_id"):
        if column not in qa_pairs.columns:
            raise ValueError(f"qa_pairs lacks column {column!r}; has {list(qa_pairs.columns)}")
    blank = qa_pairs["question"].isna() | (qa_pairs["question"].astype(str).str.strip() == "")
    if blank.any():
        ids = qa_pairs.loc[blank, "question_id"].tolist()
        raise ValueError(
            f"qa_pairs has {int(blank.sum())} empty question text(s), question_id {ids[:5]}"
        )
    texts = set(qa_pairs["question"].astype(str))
    if "choices" in qa_pairs.columns:  # multiple choice: the candidates go through it too
        texts |= {str(c) for cs in qa_pairs["choices"] for c in cs}
    texts = sorted(texts)
    if not texts:
        raise ValueError("qa_pairs is empty: no questions to encode")
    name = feature_choice(params, QUESTION_ENCODERS, "question", "encoder")
    cfg = dict(feature_param(params, "question", name))
    with torch_threads(params.get("num_threads")):
        encoder = MiniLMQuestionEncoder(**cfg)
        xs = encoder(texts)
    empty = [t for t, x in zip(texts, xs, strict=True) if len(x) == 0]
    if empty:
        raise ValueError(
            f"{len(empty)} question(s) have no tokens after tokenisation, e.g. {empty[:3]}"
        )
    bad = [t for t, x in zip(texts, xs, strict=True) if not np.isfinite(x).all()]
    if bad:
        raise ValueError(
            f"question encoder produced NaN/inf for {len(bad)} text(s), e.g. {bad[:3]}"
        )
    frame = ragged_to_frame(texts, xs, id_col="question")
    lengths = np.array([len(x) for x in xs])
    seconds = time.perf_counter() - start
    if encoder.truncated:
        logger.warning(
            "features: %d question(s) longer than features.question.%s.max_tokens=%d were cut",
            encoder.truncated,
            name,
            encoder.max_tokens,
        )
    logger.info(
        "features: question %s [Lq<=%d, D=%d] for %d distinct texts (%d questions) in %.1f s",
        name,
        lengths.max(),
        encoder.dim,
        len(texts),
        len(qa_pairs),
        seconds,
    )
    stats = {
        "encoder": name,
        "dim": int(encoder.dim),
        "questions": len(qa_pairs),
        "unique_texts": len(texts),
        "tokens_mean": float(lengths.mean()),
        "tokens_max": int(lengths.max()),
        "truncated": int(encoder.truncated),
        "seconds": seconds,
    }
    return frame, stats



def feature_report(
    audio_stats: dict[str, Any],
    visual_stats: dict[str, Any],
    question_stats: dict[str, Any],
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """MLflow metrics (counts, dims, seconds) and the skip list (JSON artifact).

    ``videos_extracted`` counts videos present in both feature tables.
    """
    skips = audio_stats["skipped"] + visual_stats["skipped"]
    skipped_ids = sorted({s["video_id"] for s in skips})
    total = int(audio_stats["videos"])
    metrics: dict[str, float] = {
        "segments": audio_stats["segments"],
        "audio_tokens": audio_stats["tokens"],
        "visual_tokens": visual_stats["tokens"],
        "videos_total": total,
        "videos_extracted": total - len(skipped_ids),
        "videos_skipped": len(skipped_ids),
        "audio_skipped": len(audio_stats["skipped"]),
        "visual_skipped": len(visual_stats["skipped"]),
        "audio_dim": audio_stats["dim"],
        "visual_dim": visual_stats["dim"],
        "question_dim": question_stats["dim"],
        "questions": question_stats["questions"],
        "question_texts": question_stats["unique_texts"],
        "question_tokens_mean": question_stats["tokens_mean"],
        "question_tokens_max": question_stats["tokens_max"],
        "question_truncated": question_stats["truncated"],
        "audio_seconds": audio_stats["seconds"],
        "visual_seconds": visual_stats["seconds"],
        "question_seconds": question_stats["seconds"],
    }
    skip_report = {
        "encoders": {
            "audio": audio_stats["encoder"],
            "visual": visual_stats["encoder"],
            "question": question_stats["encoder"],
        },
        "videos_skipped": len(skipped_ids),
        "skipped_video_ids": skipped_ids,
        "skipped": skips,
    }
    # MlflowMetricsHistoryDataset's item format: {name: {"value": v, "step": 0}}
    return {k: {"value": float(v), "step": 0} for k, v in metrics.items()}, skip_report


def grounding_labels(instrument_tracks: pd.DataFrame, features_params: dict[str, Any]) -> pd.DataFrame:
    """Per-token targets of stage I's grounding heads (docs/model.md "Grounding"), aligned with
    the feature tables: which instruments sound in each audio segment, and how, and which are
    seen in each visual grid cell.

    Audio: one row per (video, segment ``t``, ``s = 0``) listing the instruments active in the
    source second that feeds segment ``t`` (:func:`segment_indices`), with their ``loud`` and
    ``rhythmic`` tags (:func:`r2scp_pipeline.grounding.attribute_tags`, aligned with
    ``instruments``). Visual: one row per (video, ``t``, cell ``s``, row-major over
    ``features.visual.grid``) listing the visible instruments whose resting box centre lies in
    that cell (the embedded instruments stay in place; frames are square, so the encoder's
    centre crop keeps the whole frame), with their ``playing`` tags (1.0 when the instrument
    sounds in that segment's second, the frame's glow and hop; aligned with ``instruments``).
    Each modality's rows have empty lists in the other's tag columns. Empty when
    ``instrument_tracks`` is (real MUSIC-AVQA, AVQA).
    """
    columns = ["video_id", "modality", "t", "s", "instruments", *AUDIO_ATTRIBUTES, *VISUAL_ATTRIBUTES]
    if len(instrument_tracks) == 0:
        return pd.DataFrame({c: [] for c in columns})
    segments = int(feature_param(features_params, "segments"))
    rows_, cols_ = (int(g) for g in feature_param(features_params, "visual", "grid"))
    out = []
    for vid, tracks in instrument_tracks.groupby("video_id", sort=True):
        seconds = segment_indices(int(round(float(tracks["seconds"].iloc[0]))), segments)
        sounding = [(c, set(np.asarray(act).tolist()), db, r)
                    for c, act, db, r in zip(tracks["instrument"], tracks["active_seconds"],
                                             tracks["loudness_db"], tracks["rhythm_score"],
                                             strict=True)
                    if len(act)]  # fmt: skip
        for t, (names, loud, rhythmic) in enumerate(segment_sounds(sounding, seconds)):
            out.append((vid, "audio", t, 0, names, [round(x, 4) for x in loud],
                        [round(x, 4) for x in rhythmic], []))  # fmt: skip
        cells: dict[int, list[tuple[str, set[int]]]] = {s: [] for s in range(rows_ * cols_)}
        for tr in tracks[tracks["visible"].astype(bool)].itertuples():
            cx, cy = (tr.x0 + tr.x1) / 2, (tr.y0 + tr.y1) / 2
            col = min(max(int(cx * cols_), 0), cols_ - 1)
            row = min(max(int(cy * rows_), 0), rows_ - 1)
            cells[row * cols_ + col].append((tr.instrument, set(np.asarray(tr.active_seconds).tolist())))
        cells = {s: sorted(seen, key=lambda x: x[0]) for s, seen in cells.items()}  # class order
        for t, second in enumerate(seconds):
            for s, seen in cells.items():
                out.append((vid, "visual", t, s, [c for c, _ in seen], [], [],
                            [float(int(second) in act) for _, act in seen]))  # fmt: skip
    frame = pd.DataFrame(out, columns=columns)
    frame["t"] = frame["t"].astype(np.int32)
    frame["s"] = frame["s"].astype(np.int32)
    return frame
