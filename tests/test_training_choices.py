"""Training and inference on multiple-choice data (``data.py`` / ``training.py`` with
``qa_pairs.choices``): the answer is the right candidate, every loop runs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import (
    build_config,
    model_checkpoint,
    predict,
    predict_experts,
    train_stage_one,
    train_stage_two,
)
from tests.synthetic import as_multiple_choice, make_synthetic_tables
from tests.test_training import LOOP, MODEL

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tables():
    return as_multiple_choice(make_synthetic_tables(n_videos=40, seed=3), seed=1)


@pytest.fixture(scope="module")
def tensors(tables):
    return build_tensors(**tables, n_neighbors=2)


def test_tensors_hold_the_candidates_and_the_right_ones_index(tables, tensors):
    qa = tables["qa_pairs"]
    assert tensors.n_choices == 4 and tensors.choices.shape == (len(qa), 4)
    assert torch.equal(tensors.answer, torch.tensor(qa["choice_idx"].to_numpy()))
    texts = sorted({c for cs in qa["choices"] for c in cs})
    assert tensors.choice_tokens.shape[0] == len(texts)
    widest = max(len(t.split()) for t in texts)
    assert tensors.choice_tokens.shape[1] == widest  # trimmed to the longest candidate
    row = 5
    picked = [texts[i] for i in tensors.choices[row]]
    assert picked == list(qa["choices"].iloc[row])
    assert len(tensors.fingerprint()) == 32


def test_a_right_index_outside_the_candidates_names_the_question(tables):
    qa = tables["qa_pairs"].copy()
    qa.loc[3, "choice_idx"] = 4
    with pytest.raises(ValueError, match=r"choice_idx 4 of question_id 3 is outside 0..3"):
        build_tensors(**{**tables, "qa_pairs": qa})


def test_answer_format_auto_follows_the_data(tables, tensors):
    assert build_config(MODEL, tensors).answer_format == "choices"
    assert build_config(MODEL, tensors).n_answers == 4
    with pytest.raises(ValueError, match="model.answer_format=classes but qa_pairs holds"):
        build_config({**MODEL, "answer_format": "classes"}, tensors)
    plain = build_tensors(**make_synthetic_tables(n_videos=40, seed=3), n_neighbors=2)
    assert build_config(MODEL, plain).answer_format == "classes"
    with pytest.raises(ValueError, match="model.answer_format=choices but qa_pairs has no"):
        build_config({**MODEL, "answer_format": "choices"}, plain)


def test_both_stages_train_and_predict_scores_over_the_candidates(tensors):
    loop = {**LOOP, "epochs": 3}
    model, summary = train_stage_one(tensors, MODEL, loop, {}, seed=0)
    losses = summary["history"]["train_loss"]
    assert losses[-1] < losses[0]  # cross-entropy over the 4 candidates goes down
    experts = predict_experts(model, tensors, "test")
    assert all(set(np.unique(p)) <= {0, 1, 2, 3} for p in experts.values())
    stage1 = model_checkpoint(model, {"stage_one": True})
    mixed, summary2 = train_stage_two(stage1, tensors, MODEL, {**loop, "rank_loss_weight": 0.1,
                                      "drop_rate": 0.5}, {}, seed=0)  # fmt: skip
    assert mixed.cfg.answer_format == "choices"
    assert "train_rank_pos" in summary2["history"]  # the ranking loss runs unchanged
    for missing in ("none", "audio", "visual"):
        p = predict(mixed, tensors, "test", missing)
        assert p.logits.shape == (len(tensors.indices("test")), 4)
        assert 0.0 <= p.accuracy <= 1.0
    frame = predict(mixed, tensors, "test", "none").to_frame()
    assert set(frame["pred"]) <= {"0", "1", "2", "3"}
