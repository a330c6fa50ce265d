"""The audio encoder's pretraining on generated videos (docs/model.md "Audio encoder
pretraining"): the set, the training of Phi_a / E_a / the grounding head, and stage I
starting from it."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.config import OmegaConfigLoader

from r2scp_pipeline import avqa
from r2scp_pipeline.audio_pretraining import (
    AUDIO_ENCODER_PREFIXES,
    audio_pretraining_set,
    train_audio_encoder,
)
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.grounding import attribute_tags
from r2scp_pipeline.media import segment_indices
from r2scp_pipeline.model import R2ScP, R2ScPConfig
from r2scp_pipeline.pipelines.dataset.generator import resolve_config, sample_scenes
from r2scp_pipeline.settings import CONFIG_LOADER_ARGS
from r2scp_pipeline.training import train_stage_one
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
K = len(avqa.INSTRUMENTS)
ENCODER = {"videos": 3, "epochs": 2, "batch_size": 2, "lr": 3e-3, "weight_decay": 0.01,
           "seed_offset": 7}  # fmt: skip


@pytest.fixture(scope="module")
def test_params():
    return OmegaConfigLoader("conf", env="test", **CONFIG_LOADER_ARGS)["parameters"]


@pytest.fixture(scope="module")
def audio_set(test_params):
    return audio_pretraining_set(test_params["dataset"], test_params["features"], ENCODER, seed=3)


def test_the_set_holds_log_mel_frames_and_the_instruments_sounding_per_second(audio_set, test_params):
    feats = test_params["features"]
    segments = int(feats["segments"])
    lm = feats["audio"]["logmel"]
    x, y = audio_set["x"], audio_set["y"]
    assert x.dtype == torch.float32 and x.shape == (3, segments, lm["frames_per_segment"], lm["n_mels"])
    assert y.shape == (3, segments, 3 * K) and torch.isfinite(x).all()
    # the labels are the generator's scenes of seed + seed_offset, second by second
    embedded = {k: v for k, v in test_params["dataset"]["embedded"].items()
                if k not in ("root", "answer_format")}  # fmt: skip
    cfg = resolve_config({**embedded, "num_videos": 3,
                          "split_fractions": {"train": 1.0, "val": 0.0, "test": 0.0}})  # fmt: skip
    scenes = sample_scenes(cfg, 3 + ENCODER["seed_offset"])
    for i, scene in enumerate(scenes):
        sounding = [c for c in scene["instruments"] if c["active_seconds"]]
        tags = dict(zip((c["id"] for c in sounding), attribute_tags(
            [c["loudness_db"] for c in sounding], [c["rhythm_score"] for c in sounding]), strict=True))
        for t, second in enumerate(segment_indices(int(scene["seconds"]), segments)):
            now = [c for c in sounding if second in c["active_seconds"]]
            got = {avqa.INSTRUMENTS[k] for k in np.flatnonzero(y[i, t, :K].numpy())}
            assert got == {c["class"] for c in now}, (i, t)
            # then how loud and how rhythmic each sounding class is; silent classes tag 0
            for a in (1, 2):
                want = np.zeros(K, np.float32)
                for c in now:
                    j = avqa.INSTRUMENTS.index(c["class"])
                    want[j] = max(want[j], tags[c["id"]][a - 1])
                np.testing.assert_allclose(y[i, t, a * K:(a + 1) * K].numpy(), want, rtol=1e-6)
    assert y.sum() > 0 and audio_set["meta"]["generator_seed"] == 3 + ENCODER["seed_offset"]
    # the same call gives the same set; another seed other videos
    again = audio_pretraining_set(test_params["dataset"], feats, ENCODER, seed=3)
    assert torch.equal(again["x"], x) and torch.equal(again["y"], y)
    other = audio_pretraining_set(test_params["dataset"], feats, {**ENCODER, "videos": 1}, seed=4)
    assert not torch.equal(other["x"][0], x[0])


def test_no_set_without_videos_or_log_mel_frames_and_bad_ranges_are_named(test_params):
    data, feats = test_params["dataset"], test_params["features"]
    assert audio_pretraining_set(data, feats, {**ENCODER, "videos": 0}, 3)["x"].numel() == 0
    vggish = {**feats, "audio": {**feats["audio"], "encoder": "precomputed"}}
    skipped = audio_pretraining_set(data, vggish, ENCODER, 3)
    assert skipped["x"].numel() == 0 and "log-mel" in skipped["meta"]["skipped"]
    with pytest.raises(ValueError, match=r"audio_encoder.seed_offset must be >= 1.*own scenes"):
        audio_pretraining_set(data, feats, {**ENCODER, "seed_offset": 0}, 3)
    with pytest.raises(ValueError, match="audio_encoder.epochs must be >= 1"):
        audio_pretraining_set(data, feats, {**ENCODER, "epochs": 0}, 3)


def _conv_model() -> R2ScP:
    cfg = R2ScPConfig(d_audio=8, d_visual=6, d_text=5, s_audio=8, s_visual=2, n_answers=4,
                      d_model=16, n_heads=2, audio_tokens=2, audio_channels=8,
                      n_grounding=K)  # fmt: skip
    return R2ScP(cfg)


def test_training_moves_only_the_audio_encoder_and_lowers_its_loss():
    torch.manual_seed(0)
    model = _conv_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(12, 4, 8, 8)
    y = (x[..., :1].mean((2, 3)) > 0).float()[..., None].expand(-1, -1, K).contiguous()  # learnable
    out = train_audio_encoder(model, x, y, {**ENCODER, "epochs": 6, "batch_size": 4}, seed=0)
    assert out["videos"] == 12 and len(out["loss"]) == 6 and out["loss"][-1] < out["loss"][0]
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(AUDIO_ENCODER_PREFIXES) for k in moved), sorted(moved)
    assert any(k.startswith("grounding.out.audio.") for k in moved)
    assert any(k.startswith("experts.audio.") for k in moved)


MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "dropout": 0.0, "audio_tokens": 2,
         "audio_channels": 8}  # fmt: skip
LOOP = {"epochs": 1, "batch_size": 32, "lr": 3e-3, "patience": 9, "checkpoint_dir": None,
        "grounding_weight": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def tensors():
    tables = make_synthetic_tables(n_videos=30, seed=2, audio_tokens=4)
    rng = np.random.default_rng(0)
    rows = [(v, "audio", t, 0, list(rng.choice(avqa.INSTRUMENTS, 1)))
            for v in sorted(set(tables["qa_pairs"]["video_id"])) for t in range(10)]  # fmt: skip
    labels = pd.DataFrame(rows, columns=["video_id", "modality", "t", "s", "instruments"])
    return build_tensors(**tables, grounding_labels=labels)


def _set_for(tensors, n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = tensors.features("audio").shape[1:]
    return {"x": torch.randn(n, *shape, generator=g),
            "y": (torch.rand(n, shape[0], K, generator=g) > 0.9).float(), "meta": {"videos": n}}  # fmt: skip


def test_stage_one_starts_the_audio_expert_from_its_pretraining(tensors):
    audio_set = _set_for(tensors, 8)
    params = {**LOOP, "audio_encoder": {**ENCODER, "videos": 6}}
    model, summary = train_stage_one(tensors, MODEL, params, {}, 0, audio_set)
    own = int(tensors.grounding_known[torch.unique(tensors.video[tensors.indices("train")])].sum())
    assert summary["audio_encoder"]["videos"] == 6 + own  # the first 6 generated + training videos
    plain, plain_summary = train_stage_one(tensors, MODEL, LOOP, {}, 0, audio_set)
    assert "audio_encoder" not in plain_summary  # no audio_encoder block: videos 0
    assert not torch.equal(plain.phi["audio"].proj.weight, model.phi["audio"].proj.weight)
    off, off_summary = train_stage_one(
        tensors, MODEL, {**params, "audio_encoder": {**ENCODER, "videos": 0}}, {}, 0, audio_set
    )
    assert "audio_encoder" not in off_summary  # the ablation switch
    for name, p in off.state_dict().items():
        assert torch.equal(p, plain.state_dict()[name]), name
    # w/o stage I: the audio encoder is still pretrained (like a released audio encoder)
    _, untrained = train_stage_one(tensors, MODEL, {**params, "stage_one": False}, {}, 0, audio_set)
    assert "audio_encoder" in untrained and not untrained["history"]


def test_the_pretraining_tags_loudness_and_rhythm_with_the_grounding_head(tensors):
    """With loud / rhythmic tags in the labels and ``grounding_attributes``, the set's 3K tags
    per second train the 3K-wide audio head; a set of presence tags alone is refused."""
    labels = pd.DataFrame(
        [(v, "audio", t, 0, ["piano"], [0.8], [0.3]) for v in tensors.video_ids for t in range(10)],
        columns=["video_id", "modality", "t", "s", "instruments", "loud", "rhythmic"],
    )  # fmt: skip
    tables = make_synthetic_tables(n_videos=30, seed=2, audio_tokens=4)
    tagged = build_tensors(**tables, grounding_labels=labels)
    params = {**LOOP, "grounding_attributes": True, "audio_encoder": {**ENCODER, "videos": 6}}
    wide = {**_set_for(tagged, 8), "y": torch.rand(8, 10, 3 * K)}
    model, summary = train_stage_one(tagged, MODEL, params, {}, 0, wide)
    assert model.grounding.out["audio"].out_features == 3 * K and summary["audio_encoder"]["loss"]
    with pytest.raises(ValueError, match=r"audio_pretraining_set tags 22 values .* head 66"):
        train_stage_one(tagged, MODEL, params, {}, 0, _set_for(tagged, 8))


def test_a_resumed_stage_one_takes_the_pretrained_audio_encoder_from_its_checkpoint(
    tensors, tmp_path, monkeypatch
):
    """Resuming stage I does not pretrain the audio encoder again (its weights and summary are
    in the checkpoint) and ends like an uninterrupted run."""
    from r2scp_pipeline import training

    audio_set = _set_for(tensors, 8)
    params = {**LOOP, "epochs": 3, "audio_encoder": {**ENCODER, "videos": 6},
              "checkpoint_dir": str(tmp_path)}  # fmt: skip
    with pytest.raises(training.TrainingInterrupted):
        train_stage_one(tensors, MODEL, {**params, "max_epochs_this_run": 1}, {}, 0, audio_set)
    calls, real = [], training.train_audio_encoder
    monkeypatch.setattr(training, "train_audio_encoder",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    resumed, s_res = train_stage_one(tensors, MODEL, params, {}, 0, audio_set)
    assert calls == [] and s_res["resumed_from"] == 1
    full, s_full = train_stage_one(tensors, MODEL, {**params, "checkpoint_dir": None}, {}, 0,
                                   audio_set)  # fmt: skip
    assert calls == [1]  # no checkpoint: pretrained
    assert s_res["audio_encoder"]["loss"] == s_full["audio_encoder"]["loss"]
    assert s_res["history"] == s_full["history"]
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    # another audio set is another configuration: no resume, pretrained afresh
    train_stage_one(tensors, MODEL, params, {}, 0, _set_for(tensors, 8, seed=1))
    assert calls == [1, 1]


def test_a_set_that_does_not_fit_the_data_is_refused_or_skipped(tensors, caplog):
    params = {**LOOP, "audio_encoder": {**ENCODER, "videos": 6}}
    with pytest.raises(ValueError, match="audio_encoder.videos=6 but audio_pretraining_set holds 4"):
        train_stage_one(tensors, MODEL, params, {}, 0, _set_for(tensors, 4))
    wrong = _set_for(tensors, 8)
    wrong["x"] = wrong["x"][..., :3]  # features made by another configuration
    with caplog.at_level(logging.WARNING):
        _, summary = train_stage_one(tensors, MODEL, params, {}, 0, wrong)
    assert "no audio encoder pretraining" in caplog.text and "audio_encoder" not in summary



def test_the_set_is_the_same_on_worker_processes(audio_set, test_params):
    """``dataset.embedded.num_workers`` processes render and encode parts of the set: the same
    tensors, bit for bit, as one process."""
    dataset = {**test_params["dataset"],
               "embedded": {**test_params["dataset"]["embedded"], "num_workers": 2}}  # fmt: skip
    parts = audio_pretraining_set(dataset, test_params["features"], ENCODER, seed=3)
    assert test_params["dataset"]["embedded"]["num_workers"] == 1  # the fixture: one process
    assert torch.equal(parts["x"], audio_set["x"]) and torch.equal(parts["y"], audio_set["y"])
