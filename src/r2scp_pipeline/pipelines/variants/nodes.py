"""Nodes of the ``variants`` pipeline: every method and ablation trained as a model of its own.

The model, the loops and the recoveries live in ``r2scp_pipeline.training``,
``r2scp_pipeline.recovery`` and ``r2scp_pipeline.variants``; these functions turn catalog
tables into tensors and trained models into catalog outputs. See ``docs/evaluate.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.experiment import check_parameters
from r2scp_pipeline.imputer import imputer_data, train_generative_imputer
from r2scp_pipeline.training import (
    model_checkpoint,
    torch_threads,
    train_stage_one,
    train_stage_two,
)
from r2scp_pipeline.variants import recovery_for, seed_key, variant_spec

logger = logging.getLogger(__name__)


def _checkpoint_dir(base: str | None, configured: Any, *parts: str) -> str | None:
    """Resume checkpoints of a variant / seed, only where the main run keeps them."""
    return "/".join([base, *parts]) if base and configured else None


def pretrain_seed_experts(
    stage1_experts: dict[str, Any],
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
    evaluate_params: dict[str, Any],
) -> dict[str, Any]:
    """Stage I once per seed of ``evaluate.seeds``, shared by every variant of that seed.

    The ``pretrain`` pipeline's ``stage1_experts`` is reused for ``params:seed`` (the same
    training); other seeds are trained here. Returns ``{"models": {seed_<s>: checkpoint}}``.
    """
    cfg = check_parameters(evaluate_params, seed)
    models: dict[str, Any] = {}
    tensors = None
    for s in cfg.seeds:
        if s == seed:
            models[seed_key(s)] = stage1_experts
            continue
        tensors = tensors or build_tensors(qa_pairs, audio_features, visual_features,
                                           question_features, grounding_labels=grounding_labels)  # fmt: skip
        block = dict(pretrain_params)
        block["checkpoint_dir"] = _checkpoint_dir(
            cfg.variant_checkpoint_dir, pretrain_params.get("checkpoint_dir"), "stage1", f"seed_{s}"
        )
        block["progress_desc"] = f"stage I, seed {s}"
        model, summary = train_stage_one(tensors, model_params, block, train_missing, s,
                                         audio_pretraining_set)  # fmt: skip
        meta = {k: v for k, v in summary.items() if k != "history"}
        models[seed_key(s)] = model_checkpoint(model, meta)
    return {"models": models}


def train_generative_imputers(
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    seed: int,
    evaluate_params: dict[str, Any],
) -> dict[str, Any]:
    """The generative imputer ``G(f_avl, q)`` (both directions, MSE) once per seed, when
    ``generative`` is a method; ``{"models": {}}`` otherwise."""
    cfg = check_parameters(evaluate_params, seed)
    if "generative" not in cfg.methods:
        return {"models": {}}
    tensors = build_tensors(qa_pairs, audio_features, visual_features, question_features)
    train = imputer_data(tensors, "train")
    val = imputer_data(tensors, "val") if (tensors.split == "val").any() else None
    models = {}
    for s in cfg.seeds:
        start = time.perf_counter()
        with torch_threads(cfg.threads):
            ckpt, _ = train_generative_imputer(train, cfg.generative, s, val)
        ckpt["config"]["seconds"] = round(time.perf_counter() - start, 1)
        models[seed_key(s)] = ckpt
    return {"models": models}


def train_variant(
    r2scp_model: dict[str, Any] | None,
    seed_experts: dict[str, Any],
    generative_imputers: dict[str, Any],
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    memory_bank_audio: pd.DataFrame,
    memory_bank_visual: pd.DataFrame,
    neighbors: pd.DataFrame,
    grounding_labels: pd.DataFrame,
    audio_pretraining_set: dict[str, Any],
    model_params: dict[str, Any],
    pretrain_params: dict[str, Any],
    mix_params: dict[str, Any],
    train_missing: dict[str, Any],
    seed: int,
    evaluate_params: dict[str, Any],
    *,
    variant: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``variant`` once per seed: stage II with the variant's recovery and overrides
    (stage I too when the variant changes it), from that seed's shared stage I.

    A variant that ``evaluate.methods`` does not list is not trained: its artefact says
    ``selected: false`` and ``evaluate`` never reads it. ``r2scp`` at ``params:seed`` is the
    ``mix`` pipeline's ``r2scp_model`` (the same training, not repeated); the other variants
    are wired without it (``r2scp_model=None``).

    Returns the variant's models ``{"variant", "recovery", "selected", "models": {seed_<s>:
    checkpoint}}`` and its history (per seed: stage-I / stage-II summaries, seconds).
    """
    cfg = check_parameters(evaluate_params, seed)
    spec = variant_spec(variant, cfg.ablations)
    head = {"variant": variant, "recovery": spec.recovery, "description": spec.description,
            "changes": spec.changes()}  # fmt: skip
    if variant not in cfg.methods:
        logger.info("variant %s: not in evaluate.methods, not trained", variant)
        return {**head, "selected": False, "models": {}}, {**head, "selected": False}
    m_params = spec.params("model", model_params)
    p_params = spec.params("pretrain", pretrain_params)
    x_params = spec.params("mix", mix_params)
    n = int(m_params.get("n_retrieve", 3))
    tensors = build_tensors(
        qa_pairs, audio_features, visual_features, question_features,
        memory_bank_audio, memory_bank_visual, neighbors, n_neighbors=n,
        grounding_labels=grounding_labels,
    )  # fmt: skip
    models, history = {}, {}
    for s in cfg.seeds:
        key = seed_key(s)
        start = time.perf_counter()
        if variant == "r2scp" and s == seed:
            if r2scp_model is None:
                raise ValueError("variant r2scp needs the mix pipeline's r2scp_model at its seed")
            models[key] = r2scp_model
            history[key] = {"reused": "r2scp_model (mix pipeline)"}
            continue
        for stage, block, base in (("pretrain", p_params, pretrain_params),
                                   ("mix", x_params, mix_params)):  # fmt: skip
            block["checkpoint_dir"] = _checkpoint_dir(
                cfg.variant_checkpoint_dir, base.get("checkpoint_dir"), variant, key, stage
            )
            block["progress_desc"] = f"{variant} (seed {s}): {stage}"
        if spec.changes_stage_one:
            model1, s1_summary = train_stage_one(tensors, m_params, p_params, train_missing, s,
                                                 audio_pretraining_set)  # fmt: skip
            stage1 = model_checkpoint(model1, {k: v for k, v in s1_summary.items() if k != "history"})
        else:
            stage1, s1_summary = seed_experts["models"][key], {"reused": f"stage I, seed {s}"}
        recovery = recovery_for(spec.recovery, s, generative_imputers)
        model, s2_summary = train_stage_two(
            stage1, tensors, m_params, x_params, train_missing, s, recovery
        )
        meta = {k: v for k, v in s2_summary.items() if k != "history"}
        meta.update(variant=variant, recovery=spec.recovery, seed=s, stage1=stage1.get("meta", {}))
        models[key] = model_checkpoint(model, meta)
        history[key] = {"pretrain": s1_summary, "mix": s2_summary,
                        "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        logger.info("variant %s, seed %d: trained in %.1f s", variant, s, history[key]["seconds"])
    return {**head, "selected": True, "models": models}, {**head, "selected": True, **history}
