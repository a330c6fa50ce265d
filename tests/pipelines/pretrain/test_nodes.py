"""Nodes of the ``pretrain`` pipeline on synthetic tables in the catalog contract format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.pipelines.pretrain import create_pipeline
from r2scp_pipeline.pipelines.pretrain.nodes import pretrain_experts, pretrain_metrics
from r2scp_pipeline.training import load_model
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8}
PRETRAIN = {"epochs": 2, "batch_size": 32, "checkpoint_dir": None}


@pytest.fixture(scope="module")
def outputs():
    t = make_synthetic_tables(n_videos=30, seed=1)
    args = (t["qa_pairs"], t["audio_features"], t["visual_features"], t["question_features"])
    return pretrain_experts(*args, None, None, MODEL, PRETRAIN, {"rate": 0.0}, 0)


def test_pretrain_experts_returns_a_loadable_checkpoint_and_history(outputs):
    ckpt, history = outputs
    assert set(ckpt) == {"config", "state_dicts", "meta"}
    assert ckpt["config"]["d_audio"] == 16 and ckpt["config"]["d_visual"] == 24  # read from data
    assert ckpt["meta"]["stage_one"] is True and "history" not in ckpt["meta"]
    model = load_model(ckpt)
    assert torch.equal(
        model.state_dict()["phi.audio.proj.weight"],
        ckpt["state_dicts"]["model"]["phi.audio.proj.weight"],
    )
    assert len(history["history"]["val_acc_audio"]) == 2 and history["seconds"] >= 0
    assert history["num_train_questions"] > 0


def test_pretrain_metrics_are_mlflow_histories(outputs):
    metrics = pretrain_metrics(outputs[1])
    assert [p["step"] for p in metrics["train_loss"]] == [0, 1]
    assert all(np.isfinite(p["value"]) for p in metrics["val_acc_visual"])
    assert metrics["best_val_score"]["step"] == 0


def test_pipeline_wiring():
    pipe = create_pipeline()
    assert pipe.outputs() >= {"stage1_experts", "pretrain_metrics"}
    assert {"qa_pairs", "audio_features", "visual_features", "question_features", "params:model",
            "params:pretrain", "params:train_missing", "params:seed"} <= pipe.inputs()  # fmt: skip
