"""The generative imputer on tiny data (the other baselines are tested through the harness)."""

import numpy as np
import pytest
import torch

from r2scp_pipeline.imputer import (
    ImputerData,
    _mse,
    impute,
    load_imputer,
    train_generative_imputer,
)

torch.set_num_threads(1)

GEN = {
    "d_model": 16,
    "layers": 1,
    "heads": 2,
    "dropout": 0.0,
    "epochs": 30,
    "batch_size": 8,
    "lr": 3e-3,
    "weight_decay": 0.0,
}


def _data(n=16, t=4, da=6, dv=5, dt=3, seed=0):
    """Visual = a linear map of audio (+10, so the mean is far from zero); 2 questions/video."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(n, t, da)).astype(np.float32)
    w = rng.normal(size=(da, dv)).astype(np.float32)
    visual = (audio @ w + 10.0).astype(np.float32)
    q = rng.normal(size=(3, 2, dt)).astype(np.float32)
    q_mask = np.array([[True, True], [True, False], [True, True]])
    video_pos = np.repeat(np.arange(n), 2)
    text_pos = np.tile([0, 1], n)
    return ImputerData(audio, visual, q, q_mask, video_pos, text_pos)


def test_generative_imputer_learns_both_directions_and_beats_the_mean():
    data = _data()
    ckpt, hist = train_generative_imputer(data, GEN, seed=0, val=data)
    assert set(ckpt["state_dicts"]) == {"v2a", "a2v"}
    for d in ("v2a", "a2v"):
        assert len(hist[f"{d}_train_mse"]) == len(hist[f"{d}_val_mse"]) == GEN["epochs"]
        assert hist[f"{d}_train_mse"][-1] < 0.5 * hist[f"{d}_train_mse"][0]
    gen_v = impute(ckpt, "visual", data)
    target = data.visual[data.video_pos]
    assert gen_v.shape == target.shape and np.isfinite(gen_v).all()
    mse_gen = float(((gen_v - target) ** 2).mean())
    mse_mean = float(((data.visual.mean(0) - target) ** 2).mean())  # the mean-fill guess
    assert mse_gen < 0.5 * mse_mean
    assert impute(ckpt, "audio", data, rows=np.array([3, 0])).shape == (2, 4, 6)


def test_generative_imputer_is_seeded_and_checks_dims():
    data = _data()
    small = {**GEN, "epochs": 2}
    a, _ = train_generative_imputer(data, small, seed=1)
    b, _ = train_generative_imputer(data, small, seed=1)
    for k, v in a["state_dicts"]["v2a"].items():
        torch.testing.assert_close(v, b["state_dicts"]["v2a"][k])
    narrow = ImputerData(
        data.audio[..., :4], data.visual, data.q, data.q_mask, data.video_pos, data.text_pos
    )
    with pytest.raises(ValueError, match="other feature widths"):
        impute(a, "visual", narrow)


def test_early_stopping_keeps_the_best_validation_epoch():
    train, val = _data(seed=0), _data(n=8, seed=1)  # val: another linear map -> overfits
    params = {**GEN, "epochs": 12, "patience": 2, "lr": 1e-2}
    ckpt, hist = train_generative_imputer(train, params, seed=0, val=val)
    curve = hist["a2v_val_mse"]
    assert len(curve) == len(hist["a2v_train_mse"]) <= 12
    norm = {
        m: (ckpt["norm"][m]["mean"].numpy(), ckpt["norm"][m]["std"].numpy())
        for m in ("audio", "visual")
    }
    kept = _mse(load_imputer(ckpt, "a2v"), val, "audio", "visual", norm, 8)
    assert kept == pytest.approx(min(curve), rel=1e-5)
    if len(curve) < 12:  # stopped early: the last `patience` epochs did not improve
        assert min(curve[-2:]) >= min(curve)


def test_samples_per_epoch_trains_on_a_draw_of_the_questions(monkeypatch):
    import r2scp_pipeline.imputer as imp

    data = _data()  # 32 questions
    sizes: list[int] = []
    real = imp.GenerativeImputer.forward

    def counting(self, x, q, q_mask):
        if self.training:
            sizes.append(len(x))
        return real(self, x, q, q_mask)

    monkeypatch.setattr(imp.GenerativeImputer, "forward", counting)
    train_generative_imputer(data, {**GEN, "epochs": 2, "samples_per_epoch": 12}, seed=0)
    assert sum(sizes) == 2 * 2 * 12  # two directions, two epochs, 12 questions each
    sizes.clear()
    train_generative_imputer(data, {**GEN, "epochs": 2, "samples_per_epoch": None}, seed=0)
    assert sum(sizes) == 2 * 2 * 32


@pytest.mark.parametrize("draw", [0, -3])
def test_samples_per_epoch_must_be_positive_or_null(draw):
    with pytest.raises(ValueError, match="evaluate.generative.samples_per_epoch must be >= 1"):
        train_generative_imputer(_data(), {**GEN, "epochs": 1, "samples_per_epoch": draw}, seed=0)
