"""``inference.predict_one``: one question through the same encodings and fusion as
``training.predict``, with the router weights and the neighbours it used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline import avqa
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.inference import predict_one
from r2scp_pipeline.model import R2ScP
from r2scp_pipeline.training import build_config, load_model, model_checkpoint, predict
from r2scp_pipeline.vocabulary import EXPERTS
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "k_purge": 3, "n_retrieve": 2}


@pytest.fixture(scope="module")
def tensors():
    return build_tensors(**make_synthetic_tables(n_videos=24, seed=5), n_neighbors=3)


@pytest.fixture(scope="module")
def checkpoint(tensors):
    torch.manual_seed(0)
    return model_checkpoint(R2ScP(build_config(MODEL, tensors)), {})


@pytest.mark.parametrize("missing", ["none", "audio", "visual"])
def test_one_question_gets_the_answer_and_weights_of_the_split_prediction(
    tensors, checkpoint, missing
):
    model = load_model(checkpoint, device="cpu")
    split = predict(model, tensors, split="test", missing=missing, device="cpu")
    rows = tensors.indices("test")
    for i in (0, len(rows) - 1):
        one = predict_one(model, tensors, int(rows[i]), missing)
        probs = torch.tensor(split.logits[i]).softmax(-1).numpy()
        assert one.answer == avqa.ANSWERS[int(split.pred[i])]
        assert [p for _, p in one.top] == pytest.approx(np.sort(probs)[::-1][:5], abs=1e-5)
        assert list(one.alpha.values()) == pytest.approx(split.expert_weights[i], abs=1e-5)
        assert list(one.alpha) == list(EXPERTS) and sum(one.alpha.values()) == pytest.approx(1)
        assert len(one.top) == 5 and sum(p for _, p in one.top) <= 1 + 1e-6


def test_neighbours_are_those_of_the_recovered_modality(tensors, checkpoint):
    model = load_model(checkpoint, device="cpu")  # complete_mode: append (default)
    row = int(tensors.indices("val")[0])
    video = int(tensors.video[row])
    first = {
        m: [tensors.bank_ids[m][int(i)] for i in tensors.neighbors[(m, "pos")][video, :2]]
        for m in ("audio", "visual")
    }
    assert predict_one(model, tensors, row, "audio").neighbors == {"audio": first["audio"]}
    assert predict_one(model, tensors, row, "visual").neighbors == {"visual": first["visual"]}
    assert predict_one(model, tensors, row, "none").neighbors == first
    off = load_model(checkpoint, device="cpu", complete_mode="off")
    assert predict_one(off, tensors, row, "none").neighbors == {}
    three = predict_one(model, tensors, row, "audio", n_retrieve=3)
    assert len(three.neighbors["audio"]) == 3 and three.n_retrieve == 3


def test_k_comes_from_the_model_and_the_module_state_is_left_alone(tensors, checkpoint):
    model = load_model(checkpoint, device="cpu", k_purge=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = predict_one(model, tensors, 0, "visual")
    assert out.k_purge == 1 and all(cap.k == 1 for cap in model.cap.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_bad_arguments_are_errors(tensors, checkpoint):
    model = load_model(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="missing must be one of"):
        predict_one(model, tensors, 0, "both")
    with pytest.raises(ValueError, match="outside"):
        predict_one(model, tensors, len(tensors.question_id), "none")
    with pytest.raises(ValueError, match="n_retrieve"):
        predict_one(model, tensors, 0, "audio", n_retrieve=9)
