"""The multiple-choice answer format of R2ScP (``model.py``: ChoiceDecoder, answer_format)."""

from __future__ import annotations

import pytest
import torch

from r2scp_pipeline.model import AnswerDecoder, ChoiceDecoder, Encodings, R2ScP
from r2scp_pipeline.vocabulary import MISSING_CODES
from tests.test_model import B, D, cfg, encodings

C, DT = 4, 5


def choice_encodings(seed=0) -> Encodings:
    g = torch.Generator().manual_seed(seed + 100)
    enc = encodings(seed)
    enc.choices = torch.randn(B, C, D, generator=g)
    enc.choice_sent = torch.randn(B, C, DT, generator=g)
    return enc


def test_the_choice_decoder_scores_each_candidate_and_follows_their_order():
    dec = ChoiceDecoder(D, DT, 0.0).eval()
    z, cand = torch.randn(B, D), torch.randn(B, C, DT)
    scores = dec(z, cand)
    assert scores.shape == (B, C)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(dec(z, cand[:, perm]), scores[:, perm], atol=1e-6)
    assert not torch.allclose(scores[:, 0], scores[:, 1])  # the candidates' text matters
    with pytest.raises(ValueError, match="candidate answers"):
        dec(z, None)


def test_answer_format_picks_the_decoder_and_is_checked():
    assert isinstance(R2ScP(cfg()).decoder, AnswerDecoder)
    model = R2ScP(cfg(answer_format="choices", n_answers=C))
    assert isinstance(model.decoder, ChoiceDecoder)
    assert all(isinstance(model.heads[m].out, ChoiceDecoder) for m in model.heads)
    with pytest.raises(ValueError, match="model.answer_format must be one of"):
        cfg(answer_format="open")


@pytest.mark.parametrize("mixing", [True, False])
def test_a_choices_model_answers_with_one_score_per_candidate(mixing):
    torch.manual_seed(0)
    model = R2ScP(cfg(answer_format="choices", n_answers=C, mixing=mixing)).eval()
    enc = choice_encodings()
    miss = torch.tensor([MISSING_CODES["none"], MISSING_CODES["audio"], MISSING_CODES["visual"]])
    logits, alpha = model.fuse(enc, miss)
    assert logits.shape == (B, C) and alpha.shape == (B, 3)
    if not mixing:  # averaged stage-I experts: log-probabilities over the candidates
        assert torch.allclose(logits.exp().sum(-1), torch.ones(B), atol=1e-5)
    perm = torch.tensor([3, 2, 1, 0])
    enc.choices, enc.choice_sent = enc.choices[:, perm], enc.choice_sent[:, perm]
    again, _ = model.fuse(enc, miss)
    assert torch.allclose(again, logits[:, perm], atol=1e-5)
    enc.choices = enc.choice_sent = None
    with pytest.raises(ValueError, match="candidate answers"):
        model.fuse(enc, miss)


def test_stage_one_heads_score_the_candidates_from_their_sentence_vectors():
    torch.manual_seed(0)
    model = R2ScP(cfg(answer_format="choices", n_answers=C)).eval()
    audio, visual = torch.randn(B, 10, 1, 6), torch.randn(B, 10, 1, 9)
    q, qm = torch.randn(B, 7, DT), torch.ones(B, 7, dtype=torch.bool)
    out = model.expert_logits(audio, visual, q, qm, choice_sent=torch.randn(B, C, DT))
    assert {m: x.shape for m, x in out.items()} == {m: (B, C) for m in out}


def test_candidates_go_through_the_question_encoder():
    torch.manual_seed(0)
    model = R2ScP(cfg(answer_format="choices", n_answers=C)).eval()
    x, mask = torch.randn(6, 3, DT), torch.tensor([[1, 1, 0]] * 6, dtype=torch.bool)
    pooled = model.encode_choices(x, mask)
    assert pooled.shape == (6, D)
    x2 = x.clone()
    x2[:, 2] = 100.0  # padding does not count
    assert torch.allclose(model.encode_choices(x2, mask), pooled, atol=1e-5)
