"""Nodes of the ``mix`` pipeline on synthetic tables in the catalog contract format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.pipelines.mix import create_pipeline
from r2scp_pipeline.pipelines.mix.nodes import mix_experts, mix_metrics, plot_expert_loads
from r2scp_pipeline.pipelines.pretrain.nodes import pretrain_experts
from r2scp_pipeline.training import load_model
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "n_retrieve": 2, "k_purge": 3}
LOOP = {"epochs": 2, "batch_size": 32, "checkpoint_dir": None}


@pytest.fixture(scope="module")
def tables():
    return make_synthetic_tables(n_videos=30, seed=2)


@pytest.fixture(scope="module")
def outputs(tables):
    t = tables
    feats = (t["qa_pairs"], t["audio_features"], t["visual_features"], t["question_features"])
    stage1, _ = pretrain_experts(*feats, None, None, MODEL, LOOP, {}, 0)
    return mix_experts(stage1, *feats, t["memory_bank_audio"], t["memory_bank_visual"], t["neighbors"],
                       MODEL, LOOP, {}, 0)  # fmt: skip


def test_mix_experts_returns_a_loadable_model_and_history(outputs):
    ckpt, history = outputs
    model = load_model(ckpt)
    assert model.cfg.k_purge == 3 and model.cfg.n_retrieve == 2
    assert ckpt["meta"]["stage1"]["stage_one"] is True
    hist = history["history"]
    for s in ("none", "audio", "visual"):
        assert len(hist[f"val_acc_{s}"]) == 2
        loads = np.array([hist[f"val_load_{s}_{m}"] for m in ("audio", "visual", "text")])
        np.testing.assert_allclose(loads.sum(0), 1, atol=1e-5)


def test_mix_metrics_and_expert_load_plot(outputs):
    metrics = mix_metrics(outputs[1])
    assert [p["step"] for p in metrics["val_load_audio_text"]] == [0, 1]
    assert {"train_task", "train_rank_pos", "train_rank_neg", "val_score", "seconds"} <= set(
        metrics
    )
    fig = plot_expert_loads(outputs[1])
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 3
    empty = plot_expert_loads({"history": {}})  # model.mixing false: nothing trained
    assert len(empty.axes) == 1


def test_mix_needs_deep_enough_neighbour_tables(tables):
    t = tables
    feats = (t["qa_pairs"], t["audio_features"], t["visual_features"], t["question_features"])
    with pytest.raises(ValueError, match="n_retrieve"):
        mix_experts({}, *feats, t["memory_bank_audio"], t["memory_bank_visual"], t["neighbors"],
                    {**MODEL, "n_retrieve": 8}, LOOP, {}, 0)  # fmt: skip


def test_pipeline_wiring():
    pipe = create_pipeline()
    assert pipe.all_outputs() >= {"r2scp_model", "mix_metrics", "mix_expert_loads_plot"}
    assert "log_pytorch_model" in {n.name for n in pipe.nodes}
    assert {"stage1_experts", "memory_bank_audio", "memory_bank_visual", "neighbors",
            "params:mix", "params:model"} <= pipe.inputs()  # fmt: skip
