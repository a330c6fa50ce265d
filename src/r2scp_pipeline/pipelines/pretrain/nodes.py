"""Nodes of the ``pretrain`` pipeline: stage I of R2ScP (paper section 3.4, eq. 10).

The model and the loop live in ``r2scp_pipeline.model`` / ``r2scp_pipeline.training``; these
functions only turn catalog tables into tensors and results into catalog outputs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from r2scp_pipeline.audio_pretraining import audio_pretraining_set
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import history_to_mlflow, model_checkpoint, train_stage_one

logger = logging.getLogger(__name__)


def build_audio_pretraining_set(
    dataset_params: dict[str, Any],
    features_params: dict[str, Any],
    pretrain_params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """``audio_pretraining_set``: ``pretrain.audio_encoder.videos`` generated audio-only videos
    (another generator seed), encoded like the dataset's audio, with the instruments sounding
    in each second (see :mod:`r2scp_pipeline.audio_pretraining`). Empty with ``videos: 0``."""
    return audio_pretraining_set(dataset_params, features_params,
                                 pretrain_params.get("audio_encoder"), seed)  # fmt: skip


def pretrain_experts(
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    grounding_labels: pd.DataFrame,
    audio_pretraining_set: dict[str, Any],
    model_params: dict[str, Any],
    pretrain_params: dict[str, Any],
    train_missing: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the audio, visual and text experts, each to answer alone (eq. 10), plus the
    grounding heads on ``grounding_labels`` when ``pretrain.grounding_weight > 0``, the audio
    expert starting from its pretraining on ``audio_pretraining_set``.

    Returns ``stage1_experts`` (``{"config", "state_dicts": {"model"}, "meta"}``, the whole
    R2ScP state of which stage II keeps the experts) and ``pretrain_history`` (per-epoch
    losses and val accuracies, best epoch, wall time).
    """
    start = time.perf_counter()
    tensors = build_tensors(qa_pairs, audio_features, visual_features, question_features,
                            grounding_labels=grounding_labels)  # fmt: skip
    model, summary = train_stage_one(tensors, model_params, pretrain_params, train_missing, seed,
                                     audio_pretraining_set)  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["num_train_questions"] = int((tensors.split == "train").sum())
    logger.info("pretrain: %s s, best val %s", summary["seconds"], summary.get("best"))
    meta = {k: v for k, v in summary.items() if k != "history"}
    return model_checkpoint(model, meta), summary


def pretrain_metrics(pretrain_history: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch train losses and val accuracies of every expert, for MLflow."""
    return history_to_mlflow(pretrain_history)
