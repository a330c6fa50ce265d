"""The evaluation harness on tiny synthetic data: same masks for every method, each baseline,
the compatibility checks, ablation training through the pretrain/mix node functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.model import R2ScP
from r2scp_pipeline.pipelines.evaluate import nodes as N
from r2scp_pipeline.pipelines.evaluate.harness import Fill, predict_with_fill, run_method
from r2scp_pipeline.training import build_cache, build_config, load_model, model_checkpoint, predict
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)

MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "n_retrieve": 2, "k_purge": 2}
FEATS = ("qa_pairs", "audio_features", "visual_features", "question_features")
RETR = ("memory_bank_audio", "memory_bank_visual", "neighbors")
METHODS = ["r2scp", "zero_fill", "mean_fill", "generative", "router_mask", "no_mixing"]


def _params(**over):
    p = {
        "split": "test",
        "settings": ["audio_missing", "visual_missing", "complete"],
        "missing_rates": [0.5, 1.0],
        "methods": METHODS,
        "paper_columns": "audio_visual",
        "batch_size": 16,
        "ablations": {
            "no_mixing": {"description": "w/o mixing", "model": {"mixing": False}},
            "no_cap": {"model": {"use_cap": False}},
            "no_stage1": {"pretrain": {"stage_one": False}},
        },
        "generative": {
            "d_model": 16,
            "layers": 1,
            "heads": 2,
            "dropout": 0.0,
            "epochs": 1,
            "batch_size": 16,
            "lr": 1e-3,
            "weight_decay": 0.0,
        },
        "report": {"table_missing_rate": 1.0, "plot_metric": ["paper", "Avg"]},
        "sweep": {"enabled": False},
    }
    p.update(over)
    return p


@pytest.fixture(scope="module")
def env():
    """Synthetic tables, an untrained-but-seeded R2ScP checkpoint (training is not under test
    here: the harness must treat every method alike whatever the weights), masks, imputer."""
    tables = make_synthetic_tables(n_videos=40, seed=0)
    tensors = build_tensors(*(tables[k] for k in FEATS + RETR), n_neighbors=2)
    torch.manual_seed(0)
    model = R2ScP(build_config(MODEL, tensors)).eval()
    ckpt = model_checkpoint(model, {})
    cfg = N.check_evaluate_parameters(_params(), seed=3)
    compat = N.check_model_compatibility(cfg, ckpt, *(tables[k] for k in FEATS))
    video_index = tables["qa_pairs"][["video_id", "split"]].drop_duplicates()
    masks = N.draw_missing_masks(cfg, video_index)
    gen, gen_hist = N.train_generative_baseline(cfg, compat, *(tables[k] for k in FEATS))
    ablations = {
        "models": {
            "no_mixing": model_checkpoint(
                R2ScP(build_config({**MODEL, "mixing": False}, tensors)), {}
            )
        }
    }
    preds, results = N.evaluate_methods(
        cfg, compat, ckpt, ablations, gen, masks, *(tables[k] for k in FEATS + RETR)
    )
    return {
        "tables": tables,
        "tensors": tensors,
        "ckpt": ckpt,
        "cfg": cfg,
        "compat": compat,
        "masks": masks,
        "gen": gen,
        "gen_hist": gen_hist,
        "preds": preds,
        "results": results,
    }


def test_every_method_sees_the_same_masked_videos(env):
    preds, masks = env["preds"], env["masks"]
    assert set(preds["method"]) == set(METHODS)
    for (setting, rate), d in preds.groupby(["setting", "missing_rate"]):
        stored = set(
            masks[
                (masks.setting == setting) & (masks.missing_rate == rate) & masks.missing
            ].video_id
        )
        if setting == "complete":
            assert not stored and not d["missing"].any()
        for method, dm in d.groupby("method"):
            assert set(dm.loc[dm["missing"], "video_id"]) == stored, (method, setting, rate)
            assert len(dm) == env["compat"]["n_questions"]


def test_results_follow_from_the_predictions(env):
    res, preds = env["results"], env["preds"]
    one = preds[
        (preds.method == "r2scp") & (preds.setting == "audio_missing") & (preds.missing_rate == 1.0)
    ]
    row = res[
        (res.method == "r2scp") & (res.setting == "audio_missing") & (res.missing_rate == 1.0)
    ].set_index(["section", "metric"])["value"]
    assert row[("overall", "Overall")] == pytest.approx(100 * one["correct"].mean())
    av = one[one.modality == "Audio-Visual"]
    assert row[("paper", "Avg")] == pytest.approx(100 * av["correct"].mean())
    assert row[("loads", "audio")] == pytest.approx(one["alpha_audio"].mean(), rel=1e-5)
    assert row[("subset", "masked_videos")] == pytest.approx(100 * one["correct"].mean())
    assert np.isfinite(res["value"]).all()


def _logits(env, method, setting, rate):
    p = env["preds"]
    d = p[(p.method == method) & (p.setting == setting) & (p.missing_rate == rate)]
    return d.reset_index(drop=True)


def test_fill_baselines_change_only_the_masked_videos(env):
    for method in ("zero_fill", "mean_fill", "generative", "router_mask"):
        # complete setting: identical to R2ScP
        a, b = _logits(env, method, "complete", 0.0), _logits(env, "r2scp", "complete", 0.0)
        np.testing.assert_array_equal(a["pred_idx"], b["pred_idx"])
        np.testing.assert_allclose(a["alpha_audio"], b["alpha_audio"], rtol=1e-5)
        # partial masking: intact videos answered exactly as R2ScP answers them
        a, b = (
            _logits(env, method, "visual_missing", 0.5),
            _logits(env, "r2scp", "visual_missing", 0.5),
        )
        keep = ~a["missing"]
        assert keep.any() and (~keep).any()
        np.testing.assert_allclose(
            a.loc[keep, "alpha_visual"], b.loc[keep, "alpha_visual"], rtol=1e-5
        )


def test_router_masking_gives_the_missing_expert_no_weight(env):
    d = _logits(env, "router_mask", "audio_missing", 0.5)
    assert (d.loc[d["missing"], "alpha_audio"] == 0).all()
    assert (d.loc[~d["missing"], "alpha_audio"] > 0).all()
    r = _logits(env, "r2scp", "audio_missing", 0.5)
    assert (r.loc[r["missing"], "alpha_audio"] > 0).all()


def test_zero_and_mean_fill_match_the_models_own_fills_when_everything_is_masked(env):
    t, model = env["tensors"], load_model(env["ckpt"], "cpu")
    cache = build_cache(model, t)
    everything = np.ones(len(t.video_ids), bool)
    for kind in ("zero", "mean"):
        ours = predict_with_fill(model, t, "test", "visual", everything, Fill(kind), cache)
        theirs = predict(model, t, "test", "visual", fill=kind, cache=cache)
        np.testing.assert_allclose(ours.logits, theirs.logits, rtol=1e-5, atol=1e-6)
    # the raw-feature path (generative) with zero features equals the zero fill
    n_q = len(t.indices("test"))
    zeros = np.zeros((n_q, *t.visual.shape[1:]), np.float32)
    a = predict_with_fill(model, t, "test", "visual", everything, Fill("features", zeros), cache)
    b = predict_with_fill(model, t, "test", "visual", everything, Fill("zero"), cache)
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-5)
    # r2scp through the harness is training.predict
    c = run_method("r2scp", model, t, "test", "visual", everything, cache, {}, 16)
    np.testing.assert_array_equal(c.logits, predict(model, t, "test", "visual", cache=cache).logits)


def test_generative_baseline_trains_on_the_training_split(env):
    gen, hist = env["gen"], env["gen_hist"]
    assert set(gen["state_dicts"]) == {"v2a", "a2v"}
    assert set(hist) == {"v2a_train_mse", "a2v_train_mse", "v2a_val_mse", "a2v_val_mse"}
    assert hist["v2a_train_mse"][0]["step"] == 0  # MlflowMetricsHistoryDataset format
    cfg = {**env["cfg"], "methods": ["r2scp"]}
    skipped, _ = N.train_generative_baseline(cfg, env["compat"], *(env["tables"][k] for k in FEATS))
    assert skipped.get("skipped")


def test_model_on_other_data_is_rejected_before_any_work(env):
    tables = env["tables"]
    feats = [tables[k] for k in FEATS]
    bad = {**env["ckpt"], "config": {**env["ckpt"]["config"], "d_audio": 99}}
    with pytest.raises(ValueError, match="d_audio=99 but the audio features have 16"):
        N.check_model_compatibility(env["cfg"], bad, *feats)
    bad = {**env["ckpt"], "config": {**env["ckpt"]["config"], "n_answers": 40}}
    with pytest.raises(ValueError, match="answer vocabulary: r2scp_model was trained on 40"):
        N.check_model_compatibility(env["cfg"], bad, *feats)
    with pytest.raises(ValueError, match="no question in split 'nope'"):
        N.check_model_compatibility({**env["cfg"], "split": "nope"}, env["ckpt"], *feats)


def test_masks_for_other_videos_are_rejected(env):
    masks = env["masks"].copy()
    masks["video_id"] = masks["video_id"] + "_other"
    with pytest.raises(ValueError, match="missing_masks has no row"):
        N.evaluate_methods(
            {**env["cfg"], "methods": ["r2scp"], "ablation_methods": []},
            env["compat"],
            env["ckpt"],
            {"models": {}},
            env["gen"],
            masks,
            *(env["tables"][k] for k in FEATS + RETR),
        )


def test_ablations_run_the_pretrain_and_mix_nodes_with_their_switch(env, monkeypatch):
    calls = []

    def fake_pretrain(*args):
        calls.append(("pretrain", args[4], args[5]))
        return {"config": {}, "stage": "fresh"}, {"history": {"loss": [1.0]}}

    def fake_mix(stage1, *args):
        calls.append(("mix", stage1, args[7], args[8]))
        return {"config": {}}, {"history": {"val_acc": [0.5, 0.6]}, "best": {"val_acc": 0.6}}

    monkeypatch.setattr(N, "pretrain_experts", fake_pretrain)
    monkeypatch.setattr(N, "mix_experts", fake_mix)
    cfg = N.check_evaluate_parameters(
        _params(methods=["r2scp", "no_cap", "no_stage1"], ablation_checkpoint_dir="ck/ablations"),
        seed=3,
    )
    base_pre = {"stage_one": True, "epochs": 3, "checkpoint_dir": "x/pretrain"}
    base_mix = {"rank_loss_weight": 0.1, "checkpoint_dir": "x/mix"}
    models, hist, metrics = N.train_ablation_models(
        cfg,
        env["compat"],
        {"stage": "main"},
        *[None] * 7,
        {"use_cap": True, "d_model": 16},
        base_pre,
        base_mix,
        {},
        3,
    )
    assert list(models["models"]) == ["no_cap", "no_stage1"]
    # no_cap: stage I reused, mix with use_cap false
    assert calls[0][0] == "mix" and calls[0][1] == {"stage": "main"}
    assert calls[0][2] == {"use_cap": False, "d_model": 16}
    assert calls[0][3]["checkpoint_dir"].endswith("ablations/no_cap/mix")
    # no_stage1: stage I re-run with stage_one false, then mix from that stage I
    assert calls[1][0] == "pretrain" and calls[1][2]["stage_one"] is False
    assert calls[1][2]["epochs"] == 3 and calls[2][1]["stage"] == "fresh"
    assert calls[1][2]["checkpoint_dir"] == "ck/ablations/no_stage1/pretrain"
    # every progress bar names the ablation it trains, not "mix epoch N/30" again
    assert calls[0][3]["progress_desc"] == "ablation no_cap: mix"
    assert calls[1][2]["progress_desc"] == "ablation no_stage1: pretrain"
    assert base_pre["stage_one"] is True  # the shared parameters are not mutated
    assert hist["no_cap"]["pretrain"] == {"reused": "stage1_experts"}
    assert metrics["no_cap.mix.val_acc"][1] == {"step": 1, "value": 0.6}


def test_reports_from_the_results(env):
    protocol = {"protocol": "video_disjoint", "description": "no shared video"}
    table, table_md, abl, abl_md, comp, comp_md, fig_rate, fig_loads = N.build_reports(
        env["cfg"], env["results"], env["preds"], protocol
    )
    for md in (table_md, abl_md, comp_md):  # every report names the split protocol
        assert "Split protocol: video_disjoint (no shared video)" in md
    assert {tuple(set(t["protocol"])) for t in (table, abl, comp)} == {("video_disjoint",)}
    assert set(table["method"]) == {
        "R2ScP",
        "zero-fill",
        "mean-fill",
        "generative imputation",
        "router masking",
    }
    assert list(abl["method"]) == ["R2ScP", "w/o expert mixing"]
    assert "| R2ScP |" in table_md and "| w/o expert mixing |" in abl_md
    assert len(fig_rate.axes) == 2 and len(fig_loads.axes) == 1
    # every non-reference method x 2 missing settings x 2 rates x (Avg, Overall)
    assert len(comp) == (len(METHODS) - 1) * 2 * 2 * 2
    assert set(comp["metric"]) == {"Avg", "Overall"}
    # at rate 1.0 every question is masked: the delta is the accuracy gap
    row = comp[
        (comp.method == "zero-fill")
        & (comp.setting == "audio_missing")
        & (comp.missing_rate == 1.0)
        & (comp.metric == "Overall")
    ].iloc[0]
    res = env["results"].set_index(["method", "setting", "missing_rate", "metric"])["value"]
    gap = (
        res[("zero_fill", "audio_missing", 1.0, "Overall")]
        - res[("r2scp", "audio_missing", 1.0, "Overall")]
    )
    assert row["delta_vs_r2scp"] == pytest.approx(gap, abs=0.01)
    assert row["ci_low"] <= row["delta_vs_r2scp"] <= row["ci_high"]
    assert "Each method minus R2ScP" in comp_md
    head = N.log_evaluation_runs(env["cfg"], env["results"])  # no active MLflow run here
    assert head["r2scp/audio_missing/rate_1/Avg"]["step"] == 0


def test_sweep_disabled_and_enabled(env):
    tables = [env["tables"][k] for k in FEATS + RETR]
    table, _ = N.sweep_n_k(env["cfg"], env["compat"], env["ckpt"], env["masks"], *tables)
    assert table.empty and list(table.columns) == ["setting", "vary", "n", "k", "value"]
    cfg = {
        **env["cfg"],
        "sweep": {
            "enabled": True,
            "n": [1, 2],
            "k": [0, 3],
            "settings": ["visual_missing"],
            "missing_rate": 1.0,
        },
    }
    table, _ = N.sweep_n_k(cfg, env["compat"], env["ckpt"], env["masks"], *tables)
    assert list(zip(table.vary, table.n, table.k, strict=True)) == [
        ("n", 1, 2),
        ("n", 2, 2),
        ("k", 2, 0),
        ("k", 2, 3),
    ]
    cfg["sweep"]["n"] = [1, 10]
    with pytest.raises(ValueError, match="build_index.neighbors.n >= 10"):
        N.sweep_n_k(cfg, env["compat"], env["ckpt"], env["masks"], *tables)


def test_modality_needs_scores_each_expert_alone_and_the_full_model(env):
    tables, t = env["tables"], env["tensors"]
    table, md = N.modality_needs_report(env["cfg"], env["compat"], env["ckpt"], env["preds"],
                                        *(tables[k] for k in FEATS))  # fmt: skip
    overall = table[table["level"] == "all"].iloc[0]
    rows = t.indices("test")
    assert overall["n"] == len(rows)
    # the audio expert alone, recomputed here from its stage-I head (eq. 10)
    model = load_model(env["ckpt"], "cpu")
    v, q, qm = t.video[rows], t.question[t.text[rows]], t.question_mask[t.text[rows]]
    with torch.no_grad():
        logits = model.expert_logits(t.audio[v], t.visual[v], q, qm)["audio"]
    expected = 100 * (logits.argmax(-1).numpy() == t.answer[rows].numpy()).mean()
    assert overall["audio_expert"] == pytest.approx(expected, abs=0.01)
    # the complete model's column is the r2scp complete predictions
    p = env["preds"]
    comp = p[(p.method == "r2scp") & (p.setting == "complete")]
    assert overall["r2scp_complete"] == pytest.approx(100 * comp["correct"].mean(), abs=0.01)
    assert {"prior", "text_expert", "zero_fill_audio_missing"} <= set(table.columns)
    types = table[table["level"] == "type"]
    assert types["n"].sum() == len(rows)
    assert "| Audio | Counting |" in md
