"""Unit tests of the R2ScP modules (src/r2scp_pipeline/model.py) on tiny tensors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from r2scp_pipeline.model import (
    AnswerDecoder,
    AudioFrontEnd,
    ContextAwarePurification,
    CrossModalRetrieval,
    Encodings,
    ExpertReadout,
    FeatureEncoder,
    GuidanceBlock,
    ModalityExpert,
    MultiHeadAttention,
    R2ScP,
    R2ScPConfig,
    Router,
    TokenEncoder,
    token_saliency,
)
from r2scp_pipeline.training import ranking_loss
from r2scp_pipeline.vocabulary import EXPERTS

torch.set_num_threads(1)
B, T, LQ, D = 3, 10, 7, 16


def cfg(**kw) -> R2ScPConfig:
    base = dict(d_audio=6, d_visual=9, d_text=5, n_answers=42, d_model=D, n_heads=2, dropout=0.0,
                router_hidden=8, k_purge=3, n_retrieve=2)  # fmt: skip
    return R2ScPConfig(**{**base, **kw})


def text_mask(lengths=(7, 4, 2)) -> torch.Tensor:
    return torch.arange(LQ)[None] < torch.tensor(lengths)[:, None]  # [B, LQ]


def encodings(seed=0) -> Encodings:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return Encodings(
        h={m: r(B, T, D) for m in ("audio", "visual")},
        cand={m: r(B, T, D) for m in ("audio", "visual")},
        com={m: r(B, T, D) for m in ("audio", "visual")},
        h_text=r(B, LQ, D), text_mask=text_mask(), q_sent=r(B, 5),
    )  # fmt: skip


# ---- shapes ------------------------------------------------------------------------------------
def test_shapes_through_every_module():
    c = cfg()
    assert FeatureEncoder(5, D, 64, 0.0)(torch.randn(B, LQ, 5)).shape == (B, LQ, D)
    h = TokenEncoder(9, D, 64, 1, 0.0)(torch.randn(B, T, 1, 9))
    assert h.shape == (B, T, D)
    h = ModalityExpert(D, 2, 2, 2, 0.0)(h)
    assert h.shape == (B, T, D)
    assert ExpertReadout(D, 5, 2, 2, 0.0)(h, None, torch.randn(B, 5)).shape == (B, D)
    assert CrossModalRetrieval(2)(torch.randn(B, 4, T, D)).shape == (B, T, D)
    guided, a_self, cross = GuidanceBlock(D, 2, 2, 0.0)(h, torch.randn(B, LQ, D), text_mask())
    assert (
        guided.shape == (B, T, D) and a_self.shape == (B, 2, T, T) and cross.shape == (B, 2, T, LQ)
    )
    pur, info = ContextAwarePurification(c)(
        h, torch.randn(B, T, D), h, torch.randn(B, LQ, D), text_mask()
    )
    assert (
        pur.shape == (B, T, D)
        and info["noise_idx"].shape == (B, 3)
        and info["delta"].shape == (B, T)
    )
    assert Router(D, 8)(torch.randn(B, 3, D)).shape == (B, 3)
    assert AnswerDecoder(D, 42, 0.0)(torch.randn(B, D)).shape == (B, 42)


@pytest.mark.parametrize("complete_mode", ["off", "append"])
def test_r2scp_stage_one_and_fuse_shapes(complete_mode):
    model = R2ScP(cfg(complete_mode=complete_mode)).eval()
    logits = model.expert_logits(
        torch.randn(B, T, 1, 6), torch.randn(B, T, 1, 9), torch.randn(B, LQ, 5), text_mask()
    )
    assert set(logits) == set(EXPERTS) and all(v.shape == (B, 42) for v in logits.values())
    assert model.encode_common("audio", torch.randn(B, T, 1, 9)).shape == (B, T, D)
    assert model.encode_retrieved("visual", torch.randn(B, 2, T, 1, 9)).shape == (B, 2, T, D)
    out, alpha = model.fuse(encodings(), torch.tensor([0, 1, 2]))
    assert out.shape == (B, 42) and alpha.shape == (B, 3)
    assert torch.isfinite(out).all()


def test_expert_logits_encode_each_distinct_video_and_question_text_once_with_the_same_result():
    """Per-distinct inputs with ``video_of`` / ``question_of`` give every row the logits it
    gets from per-row inputs; the text expert then runs on the distinct texts only."""
    torch.manual_seed(0)
    model = R2ScP(cfg()).eval()
    a, v = torch.randn(2, T, 1, 6), torch.randn(2, T, 1, 9)
    q, qm = torch.randn(B, LQ, 5), text_mask()
    video_of, question_of = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 2, 0, 1, 2])
    per_row = model.expert_logits(a[video_of], v[video_of], q[question_of], qm[question_of])
    seen = []
    hook = model.experts["text"].register_forward_hook(
        lambda mod, args, out: seen.append(args[0].shape[0]))  # fmt: skip
    shared = model.expert_logits(a, v, q, qm, video_of, question_of=question_of)
    hook.remove()
    assert seen == [B]  # three texts encoded for five rows
    for m in EXPERTS:
        torch.testing.assert_close(shared[m], per_row[m])
    model.train()
    loss = sum(x.sum() for x in model.expert_logits(a, v, q, qm, video_of,
                                                     question_of=question_of).values())  # fmt: skip
    loss.backward()
    assert model.phi["text"].proj.weight.grad.abs().sum() > 0


# ---- token front ends (spatial grid, audio frames) ------------------------------------------
def test_token_encoder_keeps_time_and_place():
    enc = TokenEncoder(9, D, 64, 6, 0.0)
    torch.nn.init.normal_(enc.pos_s)
    x = torch.randn(B, T, 6, 9)
    h = enc(x)  # [B, T*6, D], token (t, s) at t*6+s
    assert h.shape == (B, T * 6, D)
    # the same content in another cell gives another token: place is encoded
    swapped = x.clone()
    swapped[:, :, [0, 1]] = x[:, :, [1, 0]]
    assert not torch.allclose(enc(swapped)[:, 0], h[:, 0])
    assert torch.allclose(enc(swapped)[:, 0] - enc.pos_s[0], h[:, 1] - enc.pos_s[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"expects \[B, T, 6, D\]"):
        enc(torch.randn(B, T, 4, 9))


def test_readout_hops_read_the_tokens_again_and_keep_the_first_hops_weights():
    torch.manual_seed(0)
    h, q = torch.randn(B, T, D), torch.randn(B, 5)
    one, two = ExpertReadout(D, 5, 2, 2, 0.0), ExpertReadout(D, 5, 2, 2, 0.0, hops=2)
    assert two(h, None, q).shape == (B, D)
    # a one-hop checkpoint loads into the first hop of a two-hop readout, by the same names
    missing = two.load_state_dict(one.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("more.0.") for k in missing)
    assert set(one.state_dict()) == {k for k in two.state_dict() if not k.startswith("more.")}
    # the second hop's query depends on what the first read: another token set, another answer
    assert not torch.allclose(two(h, None, q), one(h, None, q))
    out = two(h, None, q)
    h2 = h.clone()
    h2[:, -1] += 5.0
    assert not torch.allclose(two(h2, None, q), out)
    # the stage-I heads and the stage-II readouts get each expert's configured hops
    model = R2ScP(cfg(readout_hops={"audio": 1, "visual": 3, "text": 2}))
    assert {m: len(model.heads[m].readout.more) for m in EXPERTS} == {"audio": 0, "visual": 2, "text": 1}
    assert {m: len(model.readouts[m].more) for m in EXPERTS} == {"audio": 0, "visual": 2, "text": 1}
    assert cfg(readout_hops=2).readout_hops == {m: 2 for m in EXPERTS}  # one number: every expert
    assert "readout_hops" in model.cfg.expert_dict()  # stage II must match stage I's heads
    with pytest.raises(ValueError, match="readout_hops"):
        ExpertReadout(D, 5, 2, 2, 0.0, hops=0)


def test_single_query_attention_equals_full_attention_and_its_gradients():
    # attend_one (the readouts' path) maps the query into the context's space instead of
    # projecting every context token: the same output and gradients as forward, to rounding
    torch.manual_seed(0)
    attn = MultiHeadAttention(D, 2)
    for lin in (attn.q, attn.k, attn.v, attn.o):
        torch.nn.init.normal_(lin.bias, std=0.5)  # nonzero biases: b_k cancels, b_v carries
    x, ctx = torch.randn(B, 1, D), torch.randn(B, 11, D, requires_grad=True)
    mask = torch.arange(11)[None] < torch.tensor([11, 5, 1])[:, None]  # [B, 11], padded rows
    for m in (mask, None):
        full = attn(x, ctx, m)[0]
        one = attn.attend_one(x, ctx, m)
        assert one.shape == (B, 1, D)
        torch.testing.assert_close(one, full, rtol=1e-5, atol=1e-6)
        g_full = torch.autograd.grad(full.square().sum(), [ctx, attn.q.weight, attn.v.bias])
        g_one = torch.autograd.grad(one.square().sum(), [ctx, attn.q.weight, attn.v.bias])
        for a, b in zip(g_one, g_full, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a padded context token changes nothing
    moved = ctx.detach().clone()
    moved[2, 1:] += 10.0
    torch.testing.assert_close(attn.attend_one(x, moved, mask)[2], attn.attend_one(x, ctx, mask)[2])


def test_audio_front_end_tokens_hear_loudness_and_time():
    torch.manual_seed(0)
    fe = AudioFrontEnd(n_mels=16, n_frames=12, d=D, max_len=64, tokens=3, channels=4,
                       dropout=0.0).eval()  # fmt: skip
    x = torch.randn(B, T, 12, 16)
    h = fe(x)
    assert h.shape == (B, T * 3, D)
    assert not torch.allclose(fe(x + 3.0), h)  # a louder clip is another input (no per-token LN)
    late = x.clone()
    late[:, :, 6:] += 4.0  # an onset in the second half of each segment
    early = x.clone()
    early[:, :, :6] += 4.0
    assert not torch.allclose(fe(late), fe(early))


@pytest.mark.parametrize("frontend", ["auto", "linear"])
def test_r2scp_with_grid_and_audio_frames(frontend):
    c = cfg(s_audio=12, d_audio=16, s_visual=6, audio_tokens=2, audio_channels=4,
            audio_frontend=frontend, k_purge=4)  # fmt: skip
    model = R2ScP(c).eval()
    la = T * (2 if frontend == "auto" else 12)
    assert c.tokens_per_segment("audio") == la // T and c.tokens_per_segment("visual") == 6
    a, v = torch.randn(B, T, 12, 16), torch.randn(B, T, 6, 9)
    logits = model.expert_logits(a, v, torch.randn(B, LQ, 5), text_mask())
    assert all(x.shape == (B, 42) for x in logits.values())
    assert model.encode("audio", a).shape == (B, la, D)
    assert model.encode_common("audio", v).shape == (B, T * 6, D)  # visual tokens, audio expert
    assert model.encode_retrieved("visual", torch.randn(B, 3, T, 6, 9)).shape == (B, 3, T * 6, D)
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    enc = Encodings(h={"audio": r(B, la, D), "visual": r(B, T * 6, D)},
                    cand={"audio": r(B, la, D), "visual": r(B, T * 6, D)},
                    com={"audio": r(B, T * 6, D), "visual": r(B, la, D)},
                    h_text=r(B, LQ, D), text_mask=text_mask(), q_sent=r(B, 5))  # fmt: skip
    out, alpha = model.fuse(enc, torch.tensor([0, 1, 2]))
    assert out.shape == (B, 42) and torch.isfinite(out).all()


# ---- CAP ---------------------------------------------------------------------------------------
def test_cap_overwrites_exactly_the_noise_positions_with_the_salient_guided_tokens():
    torch.manual_seed(0)
    cap = ContextAwarePurification(cfg(k_purge=3)).eval()
    e = encodings(1)
    h_miss, h_avl, h_com = e.cand["audio"], e.h["visual"], e.com["audio"]
    pur, info = cap(h_miss, h_avl, h_com, e.h_text, e.text_mask)
    guided, _, _ = cap.guidance(h_com, e.h_text, e.text_mask)
    for b in range(B):
        noise, sal = info["noise_idx"][b].tolist(), info["salient_idx"][b].tolist()
        assert len(set(noise)) == 3 and len(set(sal)) == 3
        keep = [i for i in range(T) if i not in noise]
        assert torch.equal(pur[b, keep], h_miss[b, keep])  # untouched, bit for bit
        for j in range(3):  # eq. 8: j-th noise position <- j-th salient guided token
            torch.testing.assert_close(pur[b, noise[j]], guided[b, sal[j]])
        changed = (pur[b] != h_miss[b]).any(-1).nonzero().squeeze(1).tolist()
        assert sorted(changed) == sorted(noise)
    # eq. 5: the noise tokens are the k largest dissonances delta (eq. 3)
    top = info["delta"].topk(3, dim=1).indices
    assert torch.equal(top, info["noise_idx"])


def test_rows_sharing_a_key_share_one_guidance_computation_with_the_same_result():
    """The ranking loss's extra passes repeat rows: CAP guides each question once (key)."""
    torch.manual_seed(0)
    model = R2ScP(cfg()).eval()
    e = encodings()
    rows = torch.tensor([0, 1, 2, 1, 2, 2])  # rows 1 and 2 repeated with other fills
    big = e.select(rows).with_cand_all({m: torch.randn(len(rows), T, D) for m in e.cand})
    miss = torch.tensor([1, 2, 0, 1, 2, 1])
    keyed = dataclasses.replace(big, key=rows)
    a, _ = model.fuse(big, miss)
    b, _ = model.fuse(keyed, miss)
    torch.testing.assert_close(a, b)
    calls = []
    hook = model.cap["audio"].guidance.sa.register_forward_hook(
        lambda mod, args, out: calls.append(args[0].shape[0]))
    model.fuse(keyed, miss)
    hook.remove()
    assert calls == [3]  # audio is recovered for rows 0, 2 (complete), 1, 2, 1: keys {0, 1, 2}
    model.train()
    b, _ = model.fuse(keyed, miss)
    b.sum().backward()
    assert model.cap["audio"].guidance.mca.q.weight.grad.abs().sum() > 0


def test_rows_of_one_video_share_the_self_attention_over_h_com_with_the_same_result():
    """Questions of one video share H_com: CAP's SA over it runs once per group (video), the
    MCA over each question still once per question."""
    torch.manual_seed(0)
    model = R2ScP(cfg()).eval()
    e = encodings()
    rows = torch.tensor([0, 0, 1, 2, 2, 2])  # three videos, other questions of the same video
    big = e.select(rows)
    big = dataclasses.replace(big, h_text=torch.randn(len(rows), LQ, D),
                              text_mask=text_mask((7, 3, 4, 2, 5, 6)),
                              key=torch.arange(len(rows)))  # fmt: skip
    miss = torch.tensor([1, 0, 1, 2, 0, 1])
    grouped = dataclasses.replace(big, group=rows)
    a, _ = model.fuse(big, miss)
    b, _ = model.fuse(grouped, miss)
    torch.testing.assert_close(a, b)
    sa, mca = [], []
    hooks = [model.cap["audio"].guidance.sa.register_forward_hook(
                 lambda mod, args, out: sa.append(args[0].shape[0])),
             model.cap["audio"].guidance.mca.k.register_forward_hook(
                 lambda mod, args, out: mca.append(args[0].shape[0]))]  # fmt: skip
    model.fuse(grouped, miss)
    for hook in hooks:
        hook.remove()
    # audio is recovered for rows 0, 1 (complete), 2, 4, 5 (videos 0, 1, 2): SA on 3, MCA on 5
    assert sa == [3] and mca == [5]
    model.train()
    b, _ = model.fuse(grouped, miss)
    b.sum().backward()
    assert model.cap["audio"].guidance.sa.q.weight.grad.abs().sum() > 0


def test_guidance_of_selected_tokens_equals_the_full_guidance_at_those_tokens():
    torch.manual_seed(0)
    block = GuidanceBlock(D, 2, 2, 0.0).eval()
    e = encodings()
    full, _, _ = block(e.com["audio"], e.h_text, e.text_mask)
    x, _, logits, v = block.maps(e.com["audio"], e.h_text, e.text_mask)
    idx = torch.tensor([[4, 0], [9, 3], [1, 2]])
    picked = full.gather(1, idx[..., None].expand(-1, -1, D))  # [B, 2, D]
    torch.testing.assert_close(block.guide(x, logits, v, idx), picked)


def test_cap_delta_is_one_minus_cosine_with_the_available_anchor():
    cap = ContextAwarePurification(cfg()).eval()
    e = encodings(2)
    _, info = cap(e.cand["audio"], e.h["visual"], e.com["audio"], e.h_text, e.text_mask)
    g = e.h["visual"].mean(1, keepdim=True)  # eq. 2
    z = cap.w_proj(e.cand["audio"])
    expected = 1 - torch.nn.functional.cosine_similarity(z, g, dim=-1)
    torch.testing.assert_close(info["delta"], expected)


def test_cap_budget_zero_is_identity_and_budget_is_clamped_to_length():
    e = encodings(3)
    cap0 = ContextAwarePurification(cfg(k_purge=0)).eval()
    out, _ = cap0(e.cand["audio"], e.h["visual"], e.com["audio"], e.h_text, e.text_mask)
    assert torch.equal(out, e.cand["audio"])
    cap_all = ContextAwarePurification(cfg(k_purge=50)).eval()
    out, info = cap_all(e.cand["audio"], e.h["visual"], e.com["audio"], e.h_text, e.text_mask)
    assert info["noise_idx"].shape == (B, T) and (out != e.cand["audio"]).any(-1).all()


def test_w_proj_and_guidance_block_get_gradients():
    cap = ContextAwarePurification(cfg()).train()
    e = encodings(4)
    pur, _ = cap(e.cand["audio"], e.h["visual"], e.com["audio"], e.h_text, e.text_mask)
    (pur * torch.randn_like(pur)).sum().backward()
    assert cap.w_proj.weight.grad is not None and cap.w_proj.weight.grad.abs().sum() > 0
    assert cap.guidance.mca.q.weight.grad.abs().sum() > 0


def test_received_saliency_varies_and_algorithm_line_18_is_constant():
    torch.manual_seed(0)
    block = GuidanceBlock(D, 2, 2, 0.0).eval()
    e = encodings(5)
    _, a_self, cross = block(e.com["audio"], e.h_text, e.text_mask)
    paper = token_saliency(a_self, cross, e.text_mask, "paper")
    torch.testing.assert_close(paper, torch.full_like(paper, 2.0))  # the flaw: no information
    sigma = token_saliency(a_self, cross, e.text_mask, "received")
    assert sigma.shape == (B, T) and torch.isfinite(sigma).all()
    assert (sigma.std(1) > 1e-4).all()  # varies across tokens of every sample
    torch.testing.assert_close(sigma.sum(1), torch.full((B,), 2.0))  # two parts, each sums to 1


def test_received_saliency_ignores_padded_question_tokens():
    torch.manual_seed(0)
    block = GuidanceBlock(D, 2, 2, 0.0).eval()
    e = encodings(6)
    _, a_self, cross = block(e.com["audio"], e.h_text, e.text_mask)
    sigma = token_saliency(a_self, cross, e.text_mask, "received")
    h_text2 = e.h_text.clone()
    h_text2[~e.text_mask] = 100.0  # garbage in the padding
    _, a2, c2 = block(e.com["audio"], h_text2, e.text_mask)
    torch.testing.assert_close(token_saliency(a2, c2, e.text_mask, "received"), sigma)


# ---- router, decoder, fusion ------------------------------------------------------------------
def test_router_weights_sum_to_one_and_masking_removes_an_expert():
    router = Router(D, 8)
    h = torch.randn(5, 3, D)
    alpha = router(h)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5))
    assert (alpha > 0).all()
    mask = torch.zeros(5, 3, dtype=torch.bool)
    mask[:, 0] = True
    alpha = router(h, mask)
    assert (alpha[:, 0] == 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="every expert"):
        router(h, torch.ones(5, 3, dtype=torch.bool))


def test_fuse_never_reads_the_missing_modality():
    model = R2ScP(cfg()).eval()
    e = encodings(7)
    missing = torch.tensor([1, 1, 2])
    out, _ = model.fuse(e, missing)
    tampered = Encodings({m: v.clone() for m, v in e.h.items()}, e.cand,
                         {m: v.clone() for m, v in e.com.items()}, e.h_text, e.text_mask, e.q_sent)  # fmt: skip
    tampered.h["audio"][:2] = 50.0  # the missing audio of samples 0, 1
    tampered.h["visual"][2] = -50.0  # the missing visual of sample 2
    tampered.com["visual"][:2] = 9.0  # E_v(Phi_a(F_a)) is computed from the missing audio
    tampered.com["audio"][2] = 9.0
    out2, _ = model.fuse(tampered, missing)
    torch.testing.assert_close(out, out2)
    # ... while the retrieved candidates do matter
    out3, _ = model.fuse(e.with_cand("audio", e.cand["audio"] + 1.0), missing)
    assert not torch.allclose(out[:2], out3[:2])


def test_complete_mode_append_uses_retrieval_for_complete_samples_and_off_does_not():
    e = encodings(8)
    complete = torch.zeros(B, dtype=torch.long)
    shifted = e.with_cand("audio", e.cand["audio"] + 1.0)
    torch.manual_seed(0)
    off = R2ScP(cfg(complete_mode="off")).eval()
    torch.testing.assert_close(off.fuse(e, complete)[0], off.fuse(shifted, complete)[0])
    torch.manual_seed(0)
    app = R2ScP(cfg(complete_mode="append")).eval()
    assert not torch.allclose(app.fuse(e, complete)[0], app.fuse(shifted, complete)[0])


def test_use_cap_false_feeds_the_retrieved_mean_unchanged():
    torch.manual_seed(0)
    model = R2ScP(cfg(use_cap=False)).eval()
    e = encodings(9)
    torch.testing.assert_close(model.recover("audio", e), e.cand["audio"])
    model_cap = R2ScP(cfg(use_cap=True)).eval()
    assert not torch.equal(model_cap.recover("audio", e), e.cand["audio"])


def test_without_mixing_the_model_averages_the_stage_one_experts():
    model = R2ScP(cfg(mixing=False)).eval()
    out, alpha = model.fuse(encodings(10), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(B))  # log of a probability mixture
    torch.testing.assert_close(alpha, torch.full((B, 3), 1 / 3))


def test_expert_votes_add_the_router_weighted_stage_one_answers_to_the_decoder():
    torch.manual_seed(0)
    model = R2ScP(cfg(expert_votes=True, complete_mode="off")).eval()
    plain = R2ScP(cfg(expert_votes=False, complete_mode="off")).eval()
    plain.load_state_dict(model.state_dict())  # the same weights, eq. 12 alone
    e, miss = encodings(12), torch.tensor([0, 0, 0])
    logits, alpha = model.fuse(e, miss)
    base, alpha2 = plain.fuse(e, miss)
    torch.testing.assert_close(alpha, alpha2)
    own = {"audio": (e.h["audio"], None), "visual": (e.h["visual"], None),
           "text": (e.h_text, e.text_mask)}  # fmt: skip
    votes = sum(alpha[:, i, None] * model.heads[m](*own[m], e.q_sent).log_softmax(-1)
                for i, m in enumerate(EXPERTS))  # fmt: skip
    torch.testing.assert_close(logits, base + votes)


def test_binding_hops_let_each_readout_see_what_the_other_modality_found():
    """Choice 19: with binding_hops the visual readout depends on the audio tokens (and back);
    without them each readout reads its own modality only, and the module has no binding
    weights (checkpoints written before the field load unchanged)."""
    e, complete = encodings(13), torch.zeros(B, dtype=torch.long)
    torch.manual_seed(0)
    plain = R2ScP(cfg(complete_mode="off"))
    assert len(plain.binding) == 0 and not any("binding" in k for k in plain.state_dict())
    bound = R2ScP(cfg(complete_mode="off", binding_hops=2)).eval()
    assert len(bound.binding) == 2
    # W of every hop starts at zero, so at first a hop re-reads its own tokens only
    assert all(hop[m].other.weight.abs().sum() == 0 for hop in bound.binding for m in hop)
    for hop in bound.binding:
        for m in hop:
            torch.nn.init.normal_(hop[m].other.weight, std=0.3)  # as after training
    reads = {}

    def keep(name):
        return lambda _mod, _inp, out: reads.__setitem__(name, out)

    for m in ("audio", "visual"):
        bound.binding[-1][m].register_forward_hook(keep(m))
    audio = e.h["audio"].clone().requires_grad_(True)
    bound.fuse(dataclasses.replace(e, h={**e.h, "audio": audio}), complete)
    (grad,) = torch.autograd.grad(reads["visual"].sum(), audio)
    assert grad.abs().sum() > 0  # the visual side's last read used what the audio readout found
    with pytest.raises(ValueError, match="binding_hops"):
        cfg(binding_hops=-1)


def test_ranking_loss_is_zero_when_the_order_holds_and_positive_otherwise():
    ordered = ranking_loss(
        torch.tensor([0.1, 0.5]), torch.tensor([0.2, 0.6]), torch.tensor([0.3, 0.9])
    )
    assert ordered.item() == 0.0
    gt_worse = ranking_loss(torch.tensor([0.4]), torch.tensor([0.2]), torch.tensor([0.3]))
    torch.testing.assert_close(gt_worse, torch.tensor(0.2))  # eq. 13 violated by 0.2
    neg_better = ranking_loss(torch.tensor([0.1]), torch.tensor([0.5]), torch.tensor([0.2]))
    torch.testing.assert_close(neg_better, torch.tensor(0.3))  # eq. 14 violated by 0.3
    no_gt = ranking_loss(
        torch.tensor([0.4]), torch.tensor([0.2]), torch.tensor([0.3]), torch.tensor([0.0])
    )
    assert no_gt.item() == 0.0  # no ground truth (training-time missingness): eq. 13 skipped


@pytest.mark.parametrize(
    "bad, match",
    [({"d_model": 10, "n_heads": 4}, "divisible"), ({"complete_mode": "both"}, "complete_mode"),
     ({"saliency": "x"}, "saliency"), ({"k_purge": -1}, "k_purge"), ({"n_retrieve": 0}, "n_retrieve"),
     ({"readout_hops": 0}, "readout_hops"), ({"readout_hops": {"visual": 2}}, "one per expert")],
)  # fmt: skip
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        cfg(**bad)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown model parameters"):
        R2ScPConfig.from_dict({"d_modle": 3})
