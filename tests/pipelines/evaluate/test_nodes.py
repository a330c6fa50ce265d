"""Evaluation of trained variants on tiny synthetic data: every method is a model trained by
the ``variants`` nodes (1 epoch, two seeds), evaluated on the same masks, reported with mean and
sd over seeds; the claims table; the compatibility checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.pipelines.evaluate import nodes as N
from r2scp_pipeline.pipelines.variants import nodes as V
from r2scp_pipeline.training import load_model, model_checkpoint, train_stage_one, train_stage_two
from r2scp_pipeline.variants import variant_names
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)

MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "n_retrieve": 2, "k_purge": 2}
LOOP = {"epochs": 1, "batch_size": 16, "checkpoint_dir": None}
FEATS = ("qa_pairs", "audio_features", "visual_features", "question_features")
RETR = ("memory_bank_audio", "memory_bank_visual", "neighbors")
METHODS = ["r2scp", "zero_fill", "mean_fill", "generative", "router_mask", "oracle",
           "random_retrieval", "neighbour_mean", "no_cap", "no_mixing"]  # fmt: skip
SEEDS = [3, 4]
ABLATIONS = {
    "no_cmr": {"model": {"use_cmr": False}},
    "no_cap": {"description": "w/o CAP", "model": {"use_cap": False}},
    "no_cmr_cap": {"model": {"use_cmr": False, "use_cap": False}},
    "no_stage1": {"pretrain": {"stage_one": False}},
    "no_rank_loss": {"mix": {"rank_loss_weight": 0.0}},
    "no_mixing": {"description": "w/o mixing", "model": {"mixing": False}},
    "no_grounding": {"pretrain": {"grounding_weight": 0.0}},
    "no_audio_pretraining": {"pretrain": {"audio_encoder": {"videos": 0}}},
    "no_grounding_attributes": {"pretrain": {"grounding_attributes": False}},
    "no_grounding_playing": {"pretrain": {"grounding_playing": False}},
    "no_votes": {"model": {"expert_votes": False}},
    **{f"sweep_{k}": {"model": v} for k, v in (("n1", {"n_retrieve": 1}), ("n5", {"n_retrieve": 5}),
       ("k0", {"k_purge": 0}), ("k1", {"k_purge": 1}), ("k10", {"k_purge": 10}))},
}  # fmt: skip


def _params(**over):
    p = {
        "split": "test",
        "settings": ["audio_missing", "visual_missing", "complete"],
        "missing_rates": [0.5, 1.0],
        "methods": METHODS,
        "seeds": SEEDS,
        "paper_columns": "audio_visual",
        "batch_size": 16,
        "ablations": ABLATIONS,
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
        "report": {"table_missing_rate": 1.0, "plot_metric": ["paper", "Avg"], "bootstrap": 200},
        "sweep": {"enabled": False},
    }
    p.update(over)
    return p


def _train_variants(tables, params, seed, stage1, r2scp):
    """Every variant through the variants pipeline's nodes (what `kedro run` does)."""
    feats, retr = [tables[k] for k in FEATS], [tables[k] for k in RETR]
    seed_experts = V.pretrain_seed_experts(stage1, *feats, None, None, MODEL, LOOP, {}, seed,
                                           params)  # no grounding labels, no audio set
    imputers = V.train_generative_imputers(*feats, seed, params)
    out = {}
    for name in variant_names():
        models, history = V.train_variant(r2scp, seed_experts, imputers, *feats, *retr, None, None,
                                          MODEL, LOOP, LOOP, {}, seed, params, variant=name)  # fmt: skip
        out[name] = models
    return out, imputers, seed_experts


@pytest.fixture(scope="module")
def env():
    tables = make_synthetic_tables(n_videos=40, seed=0)
    tensors = build_tensors(*(tables[k] for k in FEATS + RETR), n_neighbors=2)
    s1, _ = train_stage_one(tensors, MODEL, LOOP, {}, SEEDS[0])
    stage1 = model_checkpoint(s1, {})
    r2, _ = train_stage_two(stage1, tensors, MODEL, LOOP, {}, SEEDS[0])
    ckpt = model_checkpoint(r2, {})
    params = _params()
    variants, imputers, seed_experts = _train_variants(tables, params, SEEDS[0], stage1, ckpt)
    cfg = N.check_evaluate_parameters(params, seed=SEEDS[0])
    compat = N.check_model_compatibility(cfg, ckpt, *(tables[k] for k in FEATS))
    video_index = tables["qa_pairs"][["video_id", "split"]].drop_duplicates()
    masks = N.draw_missing_masks(cfg, video_index)
    preds, results = N.evaluate_methods(cfg, compat, masks, *(tables[k] for k in FEATS + RETR),
                                        imputers, **variants)  # fmt: skip
    return {
        "tables": tables,
        "tensors": tensors,
        "ckpt": ckpt,
        "stage1": stage1,
        "cfg": cfg,
        "compat": compat,
        "masks": masks,
        "variants": variants,
        "imputers": imputers,
        "seed_experts": seed_experts,
        "preds": preds,
        "results": results,
    }


def test_variants_on_the_same_stage_one_share_one_expert_cache(env, monkeypatch):
    """The frozen experts' encodings are built once per distinct stage I (here: one per seed),
    and the predictions equal those with one cache per model."""
    from r2scp_pipeline.training import cache_key

    cfg = {**env["cfg"], "methods": ["r2scp", "zero_fill", "oracle", "no_mixing"]}
    tables = [env["tables"][k] for k in FEATS + RETR]
    models = [load_model(N._trained(env["variants"], m, s), "cpu")
              for m in cfg["methods"] for s in cfg["seeds"]]  # fmt: skip
    distinct = {cache_key(m) for m in models}
    assert len(distinct) < len(models)
    built = []
    build = N.build_cache
    monkeypatch.setattr(N, "build_cache", lambda *a, **k: built.append(1) or build(*a, **k))
    shared, _ = N.evaluate_methods(cfg, env["compat"], env["masks"], *tables, env["imputers"],
                                   **env["variants"])  # fmt: skip
    assert len(built) == len(distinct)
    keys = iter(range(len(models)))
    monkeypatch.setattr(N, "cache_key", lambda model: next(keys))  # every model its own cache
    own, _ = N.evaluate_methods(cfg, env["compat"], env["masks"], *tables, env["imputers"],
                                **env["variants"])  # fmt: skip
    assert len(built) == len(distinct) + len(models)
    assert own.equals(shared)


def test_every_method_and_seed_sees_the_same_masked_videos(env):
    preds, masks = env["preds"], env["masks"]
    assert set(preds["method"]) == set(METHODS) and set(preds["seed"]) == set(SEEDS)
    for (setting, rate), d in preds.groupby(["setting", "missing_rate"]):
        stored = set(
            masks[
                (masks.setting == setting) & (masks.missing_rate == rate) & masks.missing
            ].video_id
        )
        if setting == "complete":
            assert not stored and not d["missing"].any()
        for (method, seed), dm in d.groupby(["method", "seed"]):
            assert set(dm.loc[dm["missing"], "video_id"]) == stored, (method, seed, setting)
            assert len(dm) == env["compat"]["n_questions"]


def test_results_follow_from_the_predictions(env):
    res, preds = env["results"], env["preds"]
    sel = (preds.method == "r2scp") & (preds.setting == "audio_missing")
    one = preds[sel & (preds.missing_rate == 1.0) & (preds.seed == 4)]
    row = res[
        (res.method == "r2scp") & (res.setting == "audio_missing") & (res.missing_rate == 1.0)
        & (res.seed == 4)
    ].set_index(["section", "metric"])["value"]  # fmt: skip
    assert row[("overall", "Overall")] == pytest.approx(100 * one["correct"].mean())
    av = one[one.modality == "Audio-Visual"]
    assert row[("paper", "Avg")] == pytest.approx(100 * av["correct"].mean())
    assert row[("loads", "audio")] == pytest.approx(one["alpha_audio"].mean(), rel=1e-5)
    assert row[("subset", "masked_videos")] == pytest.approx(100 * one["correct"].mean())
    assert np.isfinite(res["value"]).all()


def test_every_method_is_a_model_trained_with_its_own_fill_per_seed(env):
    v = env["variants"]
    for name in METHODS:
        assert v[name]["selected"] and set(v[name]["models"]) == {"seed_3", "seed_4"}, name
    assert not v["no_cmr"]["selected"] and v["no_cmr"]["models"] == {}  # not in methods
    # the r2scp model of params:seed is the mix pipeline's; the other seed is trained here
    assert v["r2scp"]["models"]["seed_3"] is env["ckpt"]
    assert v["r2scp"]["models"]["seed_4"]["meta"]["seed"] == 4
    # baselines train as the literature runs them: their fill, no CAP, task loss only
    zero = v["zero_fill"]["models"]["seed_3"]
    assert zero["meta"]["recovery"] == "zero_fill"
    assert zero["config"]["use_cap"] is False and zero["config"]["complete_mode"] == "off"
    assert v["zero_fill"]["changes"] == (
        "model.use_cap=False, model.complete_mode=off, mix.rank_loss_weight=0.0"
    )
    mix_state = lambda c: c["state_dicts"]["model"]["decoder.net.1.weight"]  # noqa: E731
    assert not torch.equal(mix_state(zero), mix_state(env["ckpt"]))
    # stage I per seed: seed 3 is the given one, seed 4 its own
    se = env["seed_experts"]["models"]
    assert se["seed_3"] is env["stage1"]
    key = "phi.visual.proj.weight"
    assert not torch.equal(se["seed_4"]["state_dicts"]["model"][key],
                           env["stage1"]["state_dicts"]["model"][key])  # fmt: skip


def test_the_plug_in_example_is_the_no_cap_ablation(env):
    """neighbour_mean (one class in recovery.py) trains and answers exactly as the no_cap
    ablation (R2ScP with use_cap false): same training path, same seeds, same numbers."""
    p = env["preds"]
    a = p[p.method == "neighbour_mean"].reset_index(drop=True)
    b = p[p.method == "no_cap"].reset_index(drop=True)
    np.testing.assert_array_equal(a["pred_idx"], b["pred_idx"])
    np.testing.assert_allclose(a["alpha_audio"], b["alpha_audio"], rtol=1e-5)


def _logits(env, method, setting, rate, seed=3):
    p = env["preds"]
    d = p[(p.method == method) & (p.setting == setting) & (p.missing_rate == rate)
          & (p.seed == seed)]  # fmt: skip
    return d.reset_index(drop=True)


def test_router_masking_gives_the_missing_expert_no_weight(env):
    d = _logits(env, "router_mask", "audio_missing", 0.5)
    assert (d.loc[d["missing"], "alpha_audio"] == 0).all()
    assert (d.loc[~d["missing"], "alpha_audio"] > 0).all()
    r = _logits(env, "r2scp", "audio_missing", 0.5)
    assert (r.loc[r["missing"], "alpha_audio"] > 0).all()


def test_a_model_without_the_requested_seed_is_rejected(env):
    cfg = {**env["cfg"], "seeds": [3, 99]}
    tables = [env["tables"][k] for k in FEATS + RETR]
    with pytest.raises(ValueError, match="variant 'r2scp' has no model for seed 99"):
        N.evaluate_methods(cfg, env["compat"], env["masks"], *tables, env["imputers"],
                           **env["variants"])  # fmt: skip


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
        N.evaluate_methods({**env["cfg"], "methods": ["r2scp"]}, env["compat"], masks,
                           *(env["tables"][k] for k in FEATS + RETR), env["imputers"],
                           **env["variants"])  # fmt: skip


def test_reports_from_the_results(env):
    protocol = {"protocol": "video_disjoint", "description": "no shared video"}
    (table, table_md, abl, abl_md, comp, comp_md, claims, claims_md, fig_rate,
     fig_loads) = N.build_reports(env["cfg"], env["results"], env["preds"], protocol)  # fmt: skip
    for md in (table_md, abl_md, comp_md, claims_md):  # every report names the split protocol
        assert "Split protocol: video_disjoint (no shared video)" in md
    assert {tuple(set(t["protocol"])) for t in (table, abl, comp, claims)} == {("video_disjoint",)}
    assert set(table["method"]) == {
        "R2ScP", "zero-fill", "mean-fill", "generative imputation", "router masking",
        "oracle recovery", "random retrieval", "neighbour mean",
    }  # fmt: skip
    # mean and sd over the seeds, per accuracy column
    assert (table["n_seeds"] == 2).all() and {"Avg_sd", "Overall_sd"} <= set(table.columns)
    res = env["results"]
    per_seed = res[(res.method == "zero_fill") & (res.setting == "audio_missing")
                   & (res.missing_rate == 1.0) & (res.metric == "Overall")]["value"]  # fmt: skip
    row = table[(table.method == "zero-fill") & (table.setting == "audio_missing")].iloc[0]
    assert row["Overall"] == pytest.approx(per_seed.mean(), abs=0.01)
    assert row["Overall_sd"] == pytest.approx(per_seed.std(), abs=0.01)
    assert list(abl["method"]) == ["R2ScP", "w/o CAP", "w/o expert mixing"]
    assert "| R2ScP |" in table_md and "| w/o expert mixing |" in abl_md
    assert len(fig_rate.axes) == 2 and len(fig_loads.axes) == 1
    # every non-reference method x 2 missing settings x 2 rates x (Avg, Overall)
    assert len(comp) == (len(METHODS) - 1) * 2 * 2 * 2 and (comp["n_seeds"] == 2).all()
    assert set(comp["metric"]) == {"Avg", "Overall"}
    # at rate 1.0 every question is masked: the delta is the mean accuracy gap over seeds
    row = comp[(comp.method == "zero-fill") & (comp.setting == "audio_missing")
               & (comp.missing_rate == 1.0) & (comp.metric == "Overall")].iloc[0]  # fmt: skip
    acc = res[(res.setting == "audio_missing") & (res.missing_rate == 1.0)
              & (res.metric == "Overall")].groupby("method")["value"].mean()  # fmt: skip
    assert row["delta_vs_r2scp"] == pytest.approx(acc["zero_fill"] - acc["r2scp"], abs=0.01)
    assert row["ci_low"] <= row["delta_vs_r2scp"] <= row["ci_high"]
    # the claims: fixed rule on the interval; a method not evaluated is "not run"
    assert set(claims["verdict"]) <= {"holds", "reversed", "no difference at 95%", "not run"}
    cmr = claims[claims.claim == "CMR helps"]
    assert (cmr["verdict"] == "not run").all()
    for r in claims[claims.verdict != "not run"].itertuples():
        expect = "holds" if r.ci_low > 0 else "reversed" if r.ci_high < 0 else "no difference"
        assert r.verdict.startswith(expect)
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
    table, md = N.modality_needs_report(env["cfg"], env["compat"], env["stage1"], env["preds"],
                                        *(tables[k] for k in FEATS))  # fmt: skip
    overall = table[table["level"] == "all"].iloc[0]
    rows = t.indices("test")
    assert overall["n"] == len(rows)
    # the audio expert alone, recomputed here from its stage-I head (eq. 10)
    model = load_model(env["stage1"], "cpu")
    v, q, qm = t.video[rows], t.question[t.text[rows]], t.question_mask[t.text[rows]]
    with torch.no_grad():
        logits = model.expert_logits(t.audio[v], t.visual[v], q, qm)["audio"]
    expected = 100 * (logits.argmax(-1).numpy() == t.answer[rows].numpy()).mean()
    assert overall["audio_expert"] == pytest.approx(expected, abs=0.01)
    # the complete model's column is the r2scp complete predictions
    p = env["preds"]
    comp = p[(p.method == "r2scp") & (p.setting == "complete") & (p.seed == 3)]
    assert overall["r2scp_complete"] == pytest.approx(100 * comp["correct"].mean(), abs=0.01)
    assert {"prior", "text_expert", "zero_fill_audio_missing"} <= set(table.columns)
    types = table[table["level"] == "type"]
    assert types["n"].sum() == len(rows)
    assert "| Audio | Counting |" in md
