"""Tests of data building, the two training stages, checkpoint/resume and the inference API."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from r2scp_pipeline import avqa, training
from r2scp_pipeline.data import build_tensors, exclude_missing_from_bank, train_missing_masks
from r2scp_pipeline.training import (
    TrainingInterrupted,
    build_cache,
    load_model,
    model_checkpoint,
    predict,
    resolve_device,
    train_stage_one,
    train_stage_two,
)
from r2scp_pipeline.vocabulary import EXPERTS
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {
    "d_model": 16,
    "n_heads": 2,
    "router_hidden": 8,
    "dropout": 0.1,
    "k_purge": 3,
    "n_retrieve": 2,
}
LOOP = {"epochs": 2, "batch_size": 32, "lr": 3e-3, "patience": 5, "checkpoint_dir": None}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_synthetic_tables(n_videos=40, seed=3)


@pytest.fixture(scope="module")
def tensors(tables):
    return build_tensors(**tables, n_neighbors=2)


@pytest.fixture(scope="module")
def stage1(tensors):
    model, summary = train_stage_one(tensors, MODEL, LOOP, {}, seed=0)
    return model_checkpoint(model, {"stage_one": True}), summary


# ---- data --------------------------------------------------------------------------------------
def test_build_tensors_shapes_and_neighbours(tables, tensors):
    q = len(tables["qa_pairs"])
    v = tables["qa_pairs"]["video_id"].nunique()
    assert tensors.audio.shape == (v, 10, 1, 16) and tensors.visual.shape == (v, 10, 1, 24)
    assert tensors.dims == {"d_audio": 16, "d_visual": 24, "d_text": 12, "s_audio": 1,
                            "s_visual": 1}  # fmt: skip
    assert len(tensors.question_id) == q and tensors.answer.shape == (q,)
    assert (
        tensors.question.shape[0]
        == tensors.question_mask.shape[0]
        == tables["qa_pairs"]["question"].nunique()
    )
    for (m, _), table in tensors.neighbors.items():
        assert table.shape == (v, 5)
        bank_ids = np.array(tensors.bank_ids[m])[table.numpy()]
        assert not (bank_ids == np.array(tensors.video_ids)[:, None]).any()  # never its own video
    # rows of the tensors follow qa_pairs; features follow the video ids
    row = 5
    vid = tables["qa_pairs"]["video_id"].iloc[row]
    feat = tables["audio_features"]
    expected = np.stack(feat[feat.video_id == vid].sort_values("t")["feature"].to_numpy())
    np.testing.assert_allclose(tensors.audio[tensors.video[row], :, 0].numpy(), expected)


def test_build_tensors_rejects_a_video_retrieving_itself(tables):
    nb = tables["neighbors"].copy()
    nb.loc[0, "neighbor_video_id"] = nb.loc[0, "query_video_id"]
    with pytest.raises(ValueError, match="retrieves itself"):
        build_tensors(**{**tables, "neighbors": nb}, n_neighbors=2)


def test_build_tensors_names_the_missing_table_rows(tables):
    with pytest.raises(ValueError, match="model.n_retrieve = 9"):
        build_tensors(**tables, n_neighbors=9)
    audio = tables["audio_features"]
    with pytest.raises(ValueError, match="audio_features"):
        build_tensors(
            **{**tables, "audio_features": audio[audio.video_id != audio.video_id.iloc[0]]}
        )
    qa = tables["qa_pairs"].copy()
    qa.loc[0, "answer_idx"] = 99
    with pytest.raises(ValueError, match="answer_idx 99"):
        build_tensors(
            qa, tables["audio_features"], tables["visual_features"], tables["question_features"]
        )


def test_question_batch_gives_each_distinct_text_once_and_each_row_its_text(tensors):
    rows = tensors.indices("train")[:24]
    q, mask, question_of = training._question_batch(tensors, rows, torch.device("cpu"))
    texts = tensors.text[rows]
    assert len(q) == len(texts.unique()) < len(rows)  # the synthetic questions repeat
    width = q.shape[1]
    torch.testing.assert_close(q[question_of], tensors.question[texts, :width])
    assert torch.equal(mask[question_of], tensors.question_mask[texts, :width])
    assert not tensors.question_mask[texts, width:].any()  # trimmed to the longest text


def test_train_missing_masks_hit_only_training_videos(tensors):
    masks = train_missing_masks(tensors, 0.5, "both", seed=0)
    hit = masks["audio"] | masks["visual"]
    assert not (masks["audio"] & masks["visual"]).any()
    assert (tensors.video_split[hit] == "train").all()
    n_train = (tensors.video_split == "train").sum()
    assert 0.2 * n_train < hit.sum() < 0.8 * n_train
    assert not train_missing_masks(tensors, 0.0, "audio", 0)["audio"].any()
    with pytest.raises(ValueError, match="train_missing.rate"):
        train_missing_masks(tensors, 1.5, "audio", 0)


def test_exclude_missing_from_bank_drops_those_neighbours(tensors):
    masks = train_missing_masks(tensors, 0.3, "audio", seed=1)
    out = exclude_missing_from_bank(tensors, masks)
    gone = {v for v, miss in zip(tensors.video_ids, masks["audio"], strict=True) if miss}
    ids = np.array(tensors.bank_ids["audio"])[out.neighbors[("audio", "pos")].numpy()]
    assert not set(ids.ravel()) & gone
    assert out.neighbors[("audio", "pos")].shape == tensors.neighbors[("audio", "pos")].shape
    torch.testing.assert_close(
        out.neighbors[("visual", "pos")], tensors.neighbors[("visual", "pos")]
    )


# ---- stage I -----------------------------------------------------------------------------------
def test_stage_one_trains_every_expert_and_is_deterministic(tensors, stage1):
    ckpt, summary = stage1
    hist = summary["history"]
    assert len(hist["train_loss"]) == 2 and all(np.isfinite(hist["train_loss"]))
    assert {f"val_acc_{m}" for m in EXPERTS} <= set(hist)
    # each expert keeps the weights of its own best val epoch
    assert set(summary["best_epoch"]) == set(EXPERTS)
    for m, e in summary["best_epoch"].items():
        assert (
            summary["best"][f"val_acc_{m}"] == max(hist[f"val_acc_{m}"]) == hist[f"val_acc_{m}"][e]
        )
    _, again = train_stage_one(tensors, MODEL, LOOP, {}, seed=0)
    assert again["history"] == hist  # same config, same numbers
    _, other = train_stage_one(tensors, MODEL, LOOP, {}, seed=1)
    assert other["history"]["train_loss"] != hist["train_loss"]


def test_stage_one_false_leaves_the_experts_untrained(tensors):
    model, summary = train_stage_one(tensors, MODEL, {**LOOP, "stage_one": False}, {}, seed=0)
    assert summary["history"] == {} and not summary["stage_one"]


def test_stage_one_learns_on_grounded_synthetic_data():
    tens = build_tensors(**make_synthetic_tables(n_videos=120, seed=0))
    loop = {**LOOP, "epochs": 8, "batch_size": 32, "lr": 3e-3}
    _, summary = train_stage_one(tens, {**MODEL, "d_model": 32}, loop, {}, seed=0)
    val = tens.answer[tens.indices("val")].numpy()
    majority = np.bincount(val).max() / len(val)
    best = summary["best"]
    assert best["val_acc_audio"] > majority + 0.1 and best["val_acc_visual"] > majority + 0.1


# ---- stage II ----------------------------------------------------------------------------------
def test_stage_two_freezes_the_experts_and_trains_the_rest(tensors, stage1):
    ckpt, _ = stage1
    before = ckpt["state_dicts"]["model"]
    model, summary = train_stage_two(
        ckpt, tensors, MODEL, {**LOOP, "rank_loss_weight": 0.5}, {}, seed=0
    )
    after = model.state_dict()
    for k, v in before.items():
        if k.split(".")[0] in ("phi", "experts", "heads"):
            assert torch.equal(after[k], v), k
    fresh = load_model(model_checkpoint(model, {}))
    changed = [k for k in after if k.startswith(("router.", "decoder.", "cap."))
               and not torch.equal(after[k], fresh.state_dict()[k])]  # fmt: skip
    assert not changed  # the checkpoint round-trips
    hist = summary["history"]
    assert {"train_task", "train_rank_pos", "train_rank_neg", "val_acc_none", "val_acc_audio",
            "val_acc_visual", "val_load_audio_text"} <= set(hist)  # fmt: skip
    for s in ("none", "audio", "visual"):
        loads = [hist[f"val_load_{s}_{m}"][-1] for m in EXPERTS]
        assert abs(sum(loads) - 1) < 1e-5


def test_stage_two_moves_the_mixing_weights(tensors, stage1):
    ckpt, _ = stage1
    model, _ = train_stage_two(ckpt, tensors, MODEL, LOOP, {}, seed=0)
    init, _ = train_stage_two(ckpt, tensors, {**MODEL, "mixing": False}, LOOP, {}, seed=0)
    for name in ("router.fc.weight", "decoder.net.1.weight", "cap.audio.w_proj.weight",
                 "cap.visual.guidance.mca.q.weight"):  # fmt: skip
        assert not torch.equal(model.state_dict()[name], init.state_dict()[name]), name


def _spy_on_fit(monkeypatch, argument: str) -> list:
    """What ``train_stage_two`` passes to ``training.fit`` as ``argument``, one per call."""
    seen, real_fit = [], training.fit

    def spy(**kw):
        seen.append(kw[argument])
        return real_fit(**kw)

    monkeypatch.setattr(training, "fit", spy)
    return seen


def test_stage_two_batch_by_video_keeps_a_videos_questions_together(tensors, stage1, monkeypatch):
    ckpt, _ = stage1
    seen = _spy_on_fit(monkeypatch, "permute")
    train_stage_two(ckpt, tensors, MODEL, {**LOOP, "epochs": 1}, {}, seed=0)
    by_video, _ = train_stage_two(ckpt, tensors, MODEL, {**LOOP, "epochs": 1, "batch_by_video": True},
                                  {}, seed=0)  # fmt: skip
    assert seen[0] is None and seen[1] is not None  # default: uniform shuffle
    rows = tensors.indices("train")
    order = seen[1](np.random.default_rng(0), rows)
    assert sorted(order) == sorted(rows)
    videos = tensors.video[order].numpy()
    runs = videos[np.r_[True, videos[1:] != videos[:-1]]]  # one run per video
    assert len(runs) == len(set(videos.tolist()))
    assert np.isfinite(predict(by_video, tensors, "val").logits).all()


def test_draw_videos_takes_whole_videos_and_is_seeded(tensors):
    rows = tensors.indices("train")
    video = tensors.video[rows].numpy()
    draw = training.draw_videos(tensors)
    n = len(rows) // 2
    got = draw(rows, n, np.random.default_rng(3))
    assert len(got) == n and len(set(got.tolist())) == n and set(got) <= set(rows)
    assert list(got) == sorted(got)
    picked = tensors.video[got].numpy()
    per_video = {v: int((video == v).sum()) for v in set(video.tolist())}
    taken = {v: int((picked == v).sum()) for v in set(picked.tolist())}
    cut = [v for v, k in taken.items() if k < per_video[v]]
    assert len(cut) <= 1  # every drawn video whole, but the last one taken
    uniform = training.draw_rows(rows, n, np.random.default_rng(3))
    assert len(set(tensors.video[uniform].tolist())) >= len(taken)  # fewer videos per question
    assert np.array_equal(draw(rows, n, np.random.default_rng(3)), got)
    assert not np.array_equal(draw(rows, n, np.random.default_rng(4)), got)
    assert draw(rows, None, np.random.default_rng(3)) is rows
    assert draw(rows, len(rows) + 5, np.random.default_rng(3)) is rows


def test_stage_two_draws_whole_videos_when_asked(tensors, stage1, monkeypatch):
    ckpt, _ = stage1
    seen = _spy_on_fit(monkeypatch, "draw")
    n = len(tensors.indices("train")) // 2
    loop = {**LOOP, "epochs": 1, "samples_per_epoch": n}
    train_stage_two(ckpt, tensors, MODEL, loop, {}, seed=0)
    model, _ = train_stage_two(ckpt, tensors, MODEL, {**loop, "draw": "videos"}, {}, seed=0)
    assert seen[0] is training.draw_rows and seen[1] is not training.draw_rows
    assert np.isfinite(predict(model, tensors, "val").logits).all()
    with pytest.raises(ValueError, match="mix.draw must be questions or videos, got 'clips'"):
        train_stage_two(ckpt, tensors, MODEL, {**loop, "draw": "clips"}, {}, seed=0)


def test_stage_two_without_stage_one_trains_the_experts(tensors):
    model0, s0 = train_stage_one(tensors, MODEL, {**LOOP, "stage_one": False}, {}, seed=0)
    ckpt = model_checkpoint(model0, {"stage_one": False})
    model, _ = train_stage_two(ckpt, tensors, MODEL, {**LOOP, "epochs": 1}, {}, seed=0)
    key = "experts.audio.blocks.0.attn.q.weight"
    assert not torch.equal(model.state_dict()[key], ckpt["state_dicts"]["model"][key])


def test_stage_two_with_training_time_missingness(tensors, stage1):
    ckpt, _ = stage1
    _, summary = train_stage_two(
        ckpt, tensors, MODEL, {**LOOP, "epochs": 1}, {"rate": 0.3, "modality": "both"}, seed=0
    )
    assert np.isfinite(summary["history"]["train_loss"]).all()


def test_stage_two_rejects_experts_of_another_shape(tensors, stage1):
    ckpt, _ = stage1
    with pytest.raises(ValueError, match="re-run the pretrain pipeline"):
        train_stage_two(ckpt, tensors, {**MODEL, "d_model": 32}, LOOP, {}, seed=0)


def test_stage_two_reads_experts_written_before_a_field_existed(tensors, stage1):
    """A stage-I checkpoint without ``readout_hops`` was built with its default (one hop)."""
    ckpt, _ = stage1
    old = {**ckpt, "config": {k: v for k, v in ckpt["config"].items() if k != "readout_hops"}}
    model, _ = train_stage_two(old, tensors, MODEL, {**LOOP, "epochs": 1}, {}, seed=0)
    assert model.cfg.readout_hops == {"audio": 1, "visual": 1, "text": 1}
    with pytest.raises(ValueError, match="readout_hops"):
        train_stage_two(old, tensors, {**MODEL, "readout_hops": 2}, LOOP, {}, seed=0)


# ---- checkpoints and resume -------------------------------------------------------------------
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tensors, stage1, tmp_path):
    ckpt, _ = stage1
    loop = {**LOOP, "epochs": 3}
    full, s_full = train_stage_two(
        ckpt, tensors, MODEL, {**loop, "checkpoint_dir": str(tmp_path / "a")}, {}, seed=0
    )
    resumable = {**loop, "checkpoint_dir": str(tmp_path / "b")}
    with pytest.raises(TrainingInterrupted):
        train_stage_two(ckpt, tensors, MODEL, {**resumable, "max_epochs_this_run": 1}, {}, seed=0)
    assert (tmp_path / "b" / "last.pt").exists()
    resumed, s_res = train_stage_two(ckpt, tensors, MODEL, resumable, {}, seed=0)
    assert s_res["history"] == s_full["history"]
    assert s_res["best_epoch"] == s_full["best_epoch"]
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    # a finished run is returned from its checkpoint without training again
    again, s_again = train_stage_two(ckpt, tensors, MODEL, resumable, {}, seed=0)
    assert s_again["history"] == s_full["history"]


def test_stage_one_resume_and_config_guard(tensors, tmp_path):
    loop = {**LOOP, "epochs": 3, "checkpoint_dir": str(tmp_path)}
    with pytest.raises(TrainingInterrupted):
        train_stage_one(tensors, MODEL, {**loop, "max_epochs_this_run": 2}, {}, seed=0)
    _, resumed = train_stage_one(tensors, MODEL, loop, {}, seed=0)
    _, full = train_stage_one(tensors, MODEL, {**loop, "checkpoint_dir": None}, {}, seed=0)
    assert resumed["history"] == full["history"]
    # another configuration never resumes from that checkpoint: it starts afresh
    _, other = train_stage_one(tensors, MODEL, {**loop, "lr": 1e-3}, {}, seed=0)
    _, other_fresh = train_stage_one(
        tensors, MODEL, {**loop, "lr": 1e-3, "checkpoint_dir": None}, {}, seed=0
    )
    assert other["history"] == other_fresh["history"]


def test_a_cut_short_checkpoint_names_the_file_and_the_way_out(tensors, tmp_path):
    loop = {**LOOP, "checkpoint_dir": str(tmp_path), "max_epochs_this_run": 1}
    with pytest.raises(TrainingInterrupted):
        train_stage_one(tensors, MODEL, loop, {}, seed=0)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # killed mid-copy
    with pytest.raises(RuntimeError, match=r"last\.pt.*pretrain\.resume: false") as err:
        train_stage_one(tensors, MODEL, loop, {}, seed=0)
    assert str(last) in str(err.value) and "Delete it" in str(err.value)
    # resume: false starts afresh (and overwrites the broken file)
    _, summary = train_stage_one(
        tensors, MODEL, {**loop, "resume": False, "max_epochs_this_run": None}, {}, seed=0
    )
    assert summary["epochs_run"] == LOOP["epochs"]


def test_the_progress_bar_names_what_it_trains(tensors, monkeypatch, tmp_path):
    descs = []
    real = training.tqdm

    def spy(*args, **kwargs):
        descs.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "tqdm", spy)
    loop = {**LOOP, "epochs": 1, "checkpoint_dir": str(tmp_path)}
    _, plain = train_stage_one(tensors, MODEL, loop, {}, seed=0)
    assert descs == ["pretrain epoch 1/1"]
    # a description changes the bar only: same run hash, so the checkpoint is reused as is
    _, named = train_stage_one(tensors, MODEL, {**loop, "progress_desc": "ablation x: pretrain"},
                               {}, seed=0)  # fmt: skip
    assert named["resumed_from"] == 1 and named["history"] == plain["history"]
    train_stage_one(
        tensors, MODEL, {**loop, "progress_desc": "ablation x: pretrain", "checkpoint_dir": None},
        {}, seed=0,
    )  # fmt: skip
    assert descs[-1] == "ablation x: pretrain epoch 1/1"


def test_device_auto_detection(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert resolve_device(None).type == "cuda"


# ---- inference API -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r2scp(tensors, stage1):
    model, _ = train_stage_two(stage1[0], tensors, MODEL, LOOP, {}, seed=0)
    return model


def test_predict_outputs_and_masks(tensors, r2scp):
    rows = tensors.indices("test")
    p = predict(r2scp, tensors, "test")
    assert p.logits.shape == (len(rows), 42) and p.pred.shape == (len(rows),)
    np.testing.assert_array_equal(p.question_id, tensors.question_id[rows])
    np.testing.assert_allclose(p.expert_weights.sum(1), 1, atol=1e-5)
    assert (p.missing == 0).all() and 0 <= p.accuracy <= 1
    mask = np.zeros(len(rows), bool)
    mask[::2] = True
    pa = predict(r2scp, tensors, "test", "audio", mask)
    assert (pa.missing[mask] == 1).all() and (pa.missing[~mask] == 0).all()
    vmask = np.zeros(len(tensors.video_ids), bool)
    vmask[tensors.video[rows[0]]] = True
    pv = predict(r2scp, tensors, "test", "visual", vmask, mask_level="video")
    assert (
        pv.missing[0] == 2
        and (pv.missing == 2).sum() == (tensors.video[rows] == tensors.video[rows[0]]).sum()
    )
    frame = pa.to_frame()
    assert list(frame.columns[:3]) == ["question_id", "pred_idx", "pred"] and len(frame) == len(
        rows
    )
    with pytest.raises(ValueError, match="missing_mask has shape"):
        predict(r2scp, tensors, "test", "audio", mask[:-1])


def test_predict_fills_router_masking_and_inference_time_n_k(tensors, r2scp):
    cache = build_cache(r2scp, tensors)
    base = predict(r2scp, tensors, "test", "audio", cache=cache)
    zero = predict(r2scp, tensors, "test", "audio", recovery="zero_fill", cache=cache)
    mean = predict(r2scp, tensors, "test", "audio", recovery="mean_fill", cache=cache)
    assert not np.allclose(base.logits, zero.logits) and not np.allclose(zero.logits, mean.logits)
    masked = predict(r2scp, tensors, "test", "audio", recovery="router_mask", cache=cache)
    assert (masked.expert_weights[:, EXPERTS.index("audio")] == 0).all()
    np.testing.assert_allclose(masked.expert_weights.sum(1), 1, atol=1e-5)
    k1 = predict(r2scp, tensors, "test", "audio", k_purge=1, cache=cache)
    n1 = predict(r2scp, tensors, "test", "audio", n_retrieve=1, cache=cache)
    assert not np.allclose(k1.logits, base.logits) and not np.allclose(n1.logits, base.logits)
    assert r2scp.cap["audio"].k == MODEL["k_purge"]  # the override is not sticky
    # an argument, not module state: the same as a model configured with k = 1
    k1_model = load_model(model_checkpoint(r2scp, {}), "cpu", k_purge=1)
    k1_config = predict(k1_model, tensors, "test", "audio", cache=build_cache(k1_model, tensors))
    np.testing.assert_allclose(k1.logits, k1_config.logits, rtol=1e-5, atol=1e-6)
    again = predict(r2scp, tensors, "test", "audio", cache=cache)
    np.testing.assert_array_equal(again.logits, base.logits)
    with pytest.raises(ValueError, match="n_retrieve = 9"):
        predict(r2scp, tensors, "test", "audio", n_retrieve=9, cache=cache)
    with pytest.raises(ValueError, match="unknown recovery method 'nope'"):
        predict(r2scp, tensors, "test", "audio", recovery="nope", cache=cache)


def test_predict_on_explicit_rows_equals_the_split_answer(tensors, r2scp):
    """Rows answered without a cache (predict_one's path) match the cached split answer."""
    rows = tensors.indices("test")
    vmask = np.zeros(len(tensors.video_ids), bool)
    vmask[tensors.video[rows[::3]]] = True
    whole = predict(r2scp, tensors, "test", "audio", vmask, mask_level="video")
    some = predict(r2scp, tensors, missing="audio", missing_mask=vmask, mask_level="video",
                   rows=rows[:5])  # fmt: skip
    np.testing.assert_allclose(some.logits, whole.logits[:5], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(some.missing, whole.missing[:5])


def test_predict_never_reads_the_missing_features(tensors, r2scp):
    p = predict(r2scp, tensors, "test", "audio")
    tampered = type(tensors)(**{**tensors.__dict__, "audio": torch.randn_like(tensors.audio)})
    p2 = predict(r2scp, tampered, "test", "audio")
    np.testing.assert_allclose(p.logits, p2.logits, rtol=1e-5, atol=1e-5)


def test_grid_and_audio_frames_through_both_stages_and_prediction():
    """Spatial visual cells and log-mel frames per segment (the default features' layout)."""
    tables = make_synthetic_tables(n_videos=30, seed=5, audio_tokens=8, visual_tokens=6)
    t = build_tensors(**tables, n_neighbors=2)
    assert t.audio.shape[2:] == (8, 16) and t.visual.shape[2:] == (6, 24)
    assert t.bank["visual"].shape[1:] == t.visual.shape[1:]  # the bank stores tokens too
    model_params = {**MODEL, "audio_tokens": 2, "audio_channels": 4, "k_purge": 6,
                    "readout_hops": {"audio": 1, "visual": 2, "text": 1}}  # fmt: skip
    loop = {**LOOP, "epochs": 1}
    s1, _ = train_stage_one(t, model_params, loop, {}, seed=0)
    assert s1.cfg.s_audio == 8 and s1.cfg.s_visual == 6 and s1.cfg.conv_audio
    assert len(s1.heads["visual"].readout.more) == 1 and not s1.heads["audio"].readout.more
    model, _ = train_stage_two(model_checkpoint(s1, {}), t, model_params, loop, {}, seed=0)
    cache = build_cache(model, t)
    assert cache.h["audio"].shape[1:] == (10 * 2, 16) and cache.h["visual"].shape[1:] == (60, 16)
    for missing in ("none", "audio", "visual"):
        p = predict(model, t, "test", missing, cache=cache)
        assert np.isfinite(p.logits).all() and len(p.pred) == len(t.indices("test"))
    with pytest.raises(ValueError, match="k_purge=99 exceeds the 20 expert tokens"):
        train_stage_one(t, {**model_params, "k_purge": 99}, loop, {}, seed=0)


def test_a_finished_expert_is_no_longer_trained(tensors):
    """Once an expert has not improved for `patience` epochs its best weights are final: stage
    I stops computing it (its loss is no longer logged) while the others go on."""
    loop = {**LOOP, "epochs": 8, "patience": 1, "lr": 1e-2}
    model, summary = train_stage_one(tensors, MODEL, loop, {}, seed=0)
    hist = summary["history"]
    epochs = len(hist["train_loss"])
    trained = {m: len(hist[f"train_loss_{m}"]) for m in EXPERTS}
    assert min(trained.values()) < epochs, trained  # someone stopped before the end
    for m, n in trained.items():
        # trained until `patience` epochs after its best one (or the end)
        assert n == min(epochs, summary["best_epoch"][m] + 1 + loop["patience"]), (m, n)
    assert all(p.requires_grad for p in model.parameters())  # returned as a plain module


def _rows_seen_per_epoch(samples_per_epoch, epochs=3, n_rows=20):
    """Run ``training.fit`` on a one-parameter model and record the rows of every step."""
    param = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.p = param
    seen: list[list[int]] = []

    def step(rows, epoch):
        if len(seen) <= epoch:
            seen.append([])
        seen[epoch].extend(int(r) for r in rows)
        return (param**2).sum() + 0.0 * len(rows), {}

    loop = training.LoopConfig(epochs=epochs, batch_size=4, patience=epochs, checkpoint_dir=None,
                               samples_per_epoch=samples_per_epoch)  # fmt: skip
    res = training.fit(stage="mix", model=model, params=[param], train_rows=np.arange(n_rows) + 100,
                       loop=loop, seed=0, run_hash="h", device=torch.device("cpu"),
                       epoch_setup=lambda epoch, rng: epoch, step=step,
                       evaluate=lambda: {"score": 0.0}, train_mode=lambda: None)  # fmt: skip
    return seen, res


def test_samples_per_epoch_draws_other_questions_every_epoch():
    seen, res = _rows_seen_per_epoch(8)
    assert [len(s) for s in seen] == [8, 8, 8]
    assert all(len(set(s)) == 8 and set(s) <= set(range(100, 120)) for s in seen)
    assert len({frozenset(s) for s in seen}) == 3  # a fresh draw each epoch
    assert res.timing["train_samples"] == 24
    again, _ = _rows_seen_per_epoch(8)
    assert again == seen  # seeded
    full, res = _rows_seen_per_epoch(None)
    assert all(sorted(s) == list(range(100, 120)) for s in full)
    assert res.timing["train_samples"] == 60
    more, _ = _rows_seen_per_epoch(50)  # more than there are: every row once
    assert all(sorted(s) == list(range(100, 120)) for s in more)


def test_samples_per_epoch_must_be_positive():
    with pytest.raises(ValueError, match="mix.samples_per_epoch must be >= 1"):
        training.LoopConfig.from_params({"samples_per_epoch": 0}, "mix")


def test_expert_log_probs_agree_with_the_experts_answers(tensors, stage1):
    model = load_model(stage1[0])
    logp = training.predict_expert_log_probs(model, tensors, "val")
    answers = training.predict_experts(model, tensors, "val")
    n = len(tensors.indices("val"))
    for m in EXPERTS:
        assert logp[m].shape[0] == n
        torch.testing.assert_close(logp[m].exp().sum(-1), torch.ones(n))
        np.testing.assert_array_equal(logp[m].argmax(-1).numpy(), answers[m])


def test_several_threads_on_a_busy_machine_warn(caplog):
    with caplog.at_level("WARNING", logger="r2scp_pipeline.training"):
        assert not training.warn_if_busy(1, load=9.0)  # one thread never waits on another
        assert not training.warn_if_busy(2, load=2.4)  # about what its own two threads make
        assert caplog.records == []
        assert training.warn_if_busy(2, load=3.1)
    (record,) = caplog.records
    assert "busy machine (1-minute load average 3.1)" in record.getMessage()
    assert "mix.threads=1" in record.getMessage()


def test_torch_threads_sets_and_restores_the_count(monkeypatch):
    monkeypatch.setattr(training.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = torch.get_num_threads()
    with training.torch_threads(1):
        assert torch.get_num_threads() == 1
    with training.torch_threads(None):  # null: torch's default, left as it is
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_cached_expert_votes_equal_the_heads_run_on_every_row(tensors, stage1):
    """Expert votes from the cache (the heads' answers on the own tokens) give the same fused
    logits as running every head on every row; a head then runs only on its recovered rows."""
    from r2scp_pipeline.training import batch_encodings

    model = load_model(stage1[0], "cpu")
    model.cfg.expert_votes = True
    model.eval()
    cache = build_cache(model, tensors)
    rows = tensors.indices("test")[:12]
    miss = torch.tensor([0, 1, 2] * 4)
    enc = batch_encodings(model, tensors, rows, torch.device("cpu"), cache)
    assert enc.votes.shape == (12, 3, 42)
    calls = {m: [] for m in EXPERTS}
    hooks = [model.heads[m].register_forward_hook(
        lambda mod, args, out, m=m: calls[m].append(args[0].shape[0])) for m in EXPERTS]  # fmt: skip
    cached, _ = model.fuse(enc, miss)
    for h in hooks:
        h.remove()
    assert calls == {"audio": [4], "visual": [4], "text": []}
    live, _ = model.fuse(dataclasses.replace(enc, votes=None), miss)
    torch.testing.assert_close(cached, live, rtol=1e-5, atol=1e-5)


def test_fills_are_computed_only_on_the_rows_that_read_them(tensors, r2scp):
    """Given the missing codes, a recovery fills only the rows ``fuse`` reads (the missing
    modality's, and complete rows when recoveries are appended), with the same logits."""
    from r2scp_pipeline.recovery import Retrieval
    from r2scp_pipeline.training import batch_encodings

    class Spy(Retrieval):
        name = "spy"  # not registered

        def __init__(self):
            super().__init__()
            self.calls = []

        def fill(self, src, modality):
            self.calls.append((modality, len(src.rows), int(src.video[0])))
            return super().fill(src, modality)

    cache = build_cache(r2scp, tensors)
    rows = tensors.indices("test")[:12]
    miss = torch.tensor([1, 2, 1, 1, 2, 2, 2, 1, 1, 2, 0, 1])  # 6 audio, 5 visual, 1 complete
    cpu = torch.device("cpu")
    every, lazy = Spy(), Spy()
    full = batch_encodings(r2scp, tensors, rows, cpu, cache, every)
    some = batch_encodings(r2scp, tensors, rows, cpu, cache, lazy, missing=miss)
    assert r2scp.appends_recovery  # complete rows read both recoveries
    assert [c[:2] for c in every.calls] == [("audio", 12), ("visual", 12)]
    assert [c[:2] for c in lazy.calls] == [("audio", 7), ("visual", 6)]
    assert lazy.calls[0][2] == int(tensors.video[rows[0]])  # the rows' own videos
    torch.testing.assert_close(r2scp.fuse(some, miss)[0], r2scp.fuse(full, miss)[0])


def test_stage_one_in_worker_processes_gives_the_one_process_weights(tables, tmp_path):
    """``pretrain.expert_processes`` 2 and 3 train the experts side by side (the audio one
    with its encoder's pretraining, the grounding heads with their experts): the same weights,
    best epochs and val history as one process, also when the experts stop at different
    epochs (each draws its dropout masks from its own stream); each process keeps its own
    checkpoint."""
    rng = np.random.default_rng(0)
    labels = pd.DataFrame([(v, "audio", t, 0, list(rng.choice(avqa.INSTRUMENTS, 1)))
                           for v in sorted(set(tables["qa_pairs"]["video_id"])) for t in range(10)],
                          columns=["video_id", "modality", "t", "s", "instruments"])  # fmt: skip
    tensors = build_tensors(**tables, n_neighbors=2, grounding_labels=labels)
    g = torch.Generator().manual_seed(0)
    shape = tensors.features("audio").shape[1:]
    audio_set = {"x": torch.randn(8, *shape, generator=g), "meta": {"videos": 8},
                 "y": (torch.rand(8, shape[0], len(avqa.INSTRUMENTS), generator=g) > 0.9).float()}  # fmt: skip
    params = {**LOOP, "epochs": 8, "patience": 1, "lr": 1e-2, "grounding_weight": 1.0,
              "audio_encoder": {"videos": 6, "epochs": 2, "batch_size": 2, "lr": 3e-3,
                                "weight_decay": 0.01, "seed_offset": 7}}  # fmt: skip
    one, s_one = train_stage_one(tensors, MODEL, params, {}, 0, audio_set)
    trained = {m: len(s_one["history"][f"train_loss_{m}"]) for m in EXPERTS}
    assert len(set(trained.values())) > 1, trained  # the experts stop at different epochs
    for n, folders in ((2, ["audio", "visual+text"]), (3, ["audio", "text", "visual"])):
        ckpt = tmp_path / str(n)
        many, s_many = train_stage_one(
            tensors, MODEL, {**params, "expert_processes": n, "checkpoint_dir": str(ckpt)}, {}, 0,
            audio_set,
        )
        for name, p in one.state_dict().items():
            assert torch.equal(p, many.state_dict()[name]), (n, name)
        assert s_many["best_epoch"] == s_one["best_epoch"] and s_many["best"] == s_one["best"]
        timeless = [{k: v for k, v in s["audio_encoder"].items() if k != "seconds"}
                    for s in (s_one, s_many)]  # fmt: skip
        assert timeless[0] == timeless[1]
        h1, h2 = s_one["history"], s_many["history"]
        assert list(h2) == list(h1)
        for k in h1:  # the summed train loss adds the processes' sums: the last digits differ
            assert h2[k] == (pytest.approx(h1[k], rel=1e-6) if k == "train_loss" else h1[k]), k
        assert s_many["epochs_run"] == s_one["epochs_run"]
        assert s_many["timing"]["expert_processes"] == n
        assert sorted(p.name for p in ckpt.iterdir()) == folders
    with pytest.raises(ValueError, match=r"pretrain.expert_processes must be one of \[1, 2, 3\]"):
        train_stage_one(tensors, MODEL, {**params, "expert_processes": 4}, {}, 0, audio_set)


def test_history_to_mlflow_flattens_the_timing_of_stage_one_worker_processes():
    summary = {"history": {"train_loss": [2.0, 1.0]}, "best": {"val_score": 0.5},
               "timing": {"train_seconds": 3.0, "groups": {"audio": {"train_seconds": 1.0},
                                                           "visual+text": {"train_seconds": 3.0}}}}  # fmt: skip
    out = training.history_to_mlflow(summary)
    assert out["train_loss"] == [{"step": 0, "value": 2.0}, {"step": 1, "value": 1.0}]
    assert out["timing_train_seconds"]["value"] == 3.0
    # MLflow metric names take no "+"
    assert out["timing_audio_train_seconds"]["value"] == 1.0
    assert out["timing_visual_text_train_seconds"]["value"] == 3.0
