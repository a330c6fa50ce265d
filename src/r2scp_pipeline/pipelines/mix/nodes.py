"""Nodes of the ``mix`` pipeline: stage II of R2ScP (paper sections 3.2-3.5, eqs. 1-15).

The model and the loop live in ``r2scp_pipeline.model`` / ``r2scp_pipeline.training``; these
functions only turn catalog tables into tensors and results into catalog outputs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import (
    history_to_mlflow,
    load_model,
    model_checkpoint,
    train_stage_two,
)
from r2scp_pipeline.vocabulary import EXPERTS

logger = logging.getLogger(__name__)
SETTING_TITLES = {"none": "complete", "audio": "audio missing", "visual": "visual missing"}


def mix_experts(
    stage1_experts: dict[str, Any],
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    memory_bank_audio: pd.DataFrame,
    memory_bank_visual: pd.DataFrame,
    neighbors: pd.DataFrame,
    model_params: dict[str, Any],
    mix_params: dict[str, Any],
    train_missing: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Freeze the experts and train CAP, router and decoder with the ranking loss (eq. 15).

    Returns ``r2scp_model`` (``{"config", "state_dicts": {"model"}, "meta"}``, load it with
    ``r2scp_pipeline.training.load_model``) and ``mix_history`` (per-epoch losses, val
    accuracies per missing setting, the router's mean expert loads, best epoch, wall time).
    """
    start = time.perf_counter()
    n = int((model_params or {}).get("n_retrieve", 3))
    tensors = build_tensors(
        qa_pairs, audio_features, visual_features, question_features,
        memory_bank_audio, memory_bank_visual, neighbors, n_neighbors=n,
    )  # fmt: skip
    model, summary = train_stage_two(
        stage1_experts, tensors, model_params, mix_params, train_missing, seed
    )
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["num_train_questions"] = int((tensors.split == "train").sum())
    logger.info("mix: %s s, best val %s", summary["seconds"], summary.get("best"))
    meta = {k: v for k, v in summary.items() if k != "history"}
    meta["stage1"] = stage1_experts.get("meta", {})
    return model_checkpoint(model, meta), summary


def log_pytorch_model(r2scp_model: dict[str, Any]) -> str | None:
    """Log the stage-II model also with MLflow's PyTorch flavour, with a signature, so it is
    listed among the experiment's MLflow models and loads by run id:
    ``mlflow.pytorch.load_model("runs:/<run id>/r2scp_model")`` gives the ``R2ScP`` module
    (answer with ``r2scp_pipeline.training.predict``: it needs the retrieval tables too, so the
    generic pyfunc ``predict`` does not serve it). Requirements are given, not inferred (cheap).
    Returns the model URI, or ``None`` (warning) when no MLflow run is active.
    """
    import mlflow
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    if mlflow.active_run() is None:
        logger.warning("no active MLflow run: r2scp_model is not logged as an MLflow model")
        return None
    model = load_model(r2scp_model, device="cpu")
    c = model.cfg
    signature = ModelSignature(
        inputs=Schema([
            TensorSpec(np.dtype(np.float32), (-1, -1, c.d_audio), "audio"),  # [B, T, Da]
            TensorSpec(np.dtype(np.float32), (-1, -1, c.d_visual), "visual"),  # [B, T, Dv]
            TensorSpec(np.dtype(np.float32), (-1, -1, c.d_text), "question"),  # [B, Lq, Dt]
            TensorSpec(np.dtype(np.bool_), (-1, -1), "question_mask"),  # [B, Lq]
        ]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, c.n_answers), "answer_logits")]),
    )  # fmt: skip
    info = mlflow.pytorch.log_model(
        model, name="r2scp_model", signature=signature,
        serialization_format="pickle",  # pt2 would trace forward(); R2ScP has several entry points
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )  # fmt: skip
    logger.info("mix: r2scp_model logged as MLflow model %s", info.model_uri)
    return info.model_uri


def mix_metrics(mix_history: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch losses, val accuracies and expert loads (the paper's Fig. 6), for MLflow."""
    return history_to_mlflow(mix_history)


def plot_expert_loads(mix_history: dict[str, Any]) -> Figure:
    """The router's mean weight per expert on val after each stage-II epoch, one panel per
    val missing setting (the paper's Fig. 6)."""
    history = mix_history.get("history", {})
    settings = [s for s in SETTING_TITLES if f"val_load_{s}_audio" in history]
    fig = Figure(figsize=(4 * max(1, len(settings)), 3.2))
    axes = fig.subplots(1, max(1, len(settings)), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], settings, strict=False):
        for m in EXPERTS:
            values = history[f"val_load_{s}_{m}"]
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=m)
        ax.set_title(SETTING_TITLES[s])
        ax.set_xlabel("stage-II epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean router weight (val)")
    if not settings:
        axes[0][0].text(
            0.5, 0.5, "no stage-II training (model.mixing: false)", ha="center", va="center"
        )
    else:
        axes[0][0].legend(title="expert")
    fig.suptitle("Expert loads during expert mixing (cf. paper Fig. 6)")
    fig.tight_layout()
    return fig
