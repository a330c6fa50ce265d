"""``benchmarks/stage1_seeds.py`` trains stage I once per seed with a configuration's own
parameters and reports each expert's val / test accuracy and their spread over seeds."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import train_stage_one
from tests.synthetic import make_synthetic_tables

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("stage1_seeds", ROOT / "benchmarks/stage1_seeds.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
SMALL = {"model": {"d_model": 16, "n_heads": 2, "router_hidden": 8, "k_purge": 3, "n_retrieve": 2},
         "pretrain": {"epochs": 2, "batch_size": 32, "grounding_weight": 0.0,
                      "audio_encoder": {"videos": 0}}, "seed": 7}  # fmt: skip


def test_spread_is_the_mean_and_sample_sd_over_seeds():
    s = bench.spread({"1": {"a": 0.5}, "2": {"a": 0.7}})
    assert s["a"]["mean"] == pytest.approx(0.6) and s["a"]["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert bench.spread({"1": {"a": 0.5}})["a"] == {"mean": 0.5, "sd": 0.0}


def _project(tmp_path: Path, local: dict) -> tuple[Path, Path, dict]:
    """conf/ (conf/base's model and pretrain parameters, ``local`` over them) and data/ with
    the synthetic tables the benchmark reads."""
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    for name in ("globals.yml", "parameters.yml", "parameters_model.yml",
                 "parameters_pretrain.yml"):  # fmt: skip
        shutil.copy(ROOT / "conf/base" / name, conf / "base" / name)
    (conf / "local").mkdir()
    (conf / "local/parameters.yml").write_text(yaml.safe_dump(local))
    tables = make_synthetic_tables(n_videos=30, seed=5)
    data = tmp_path / "data"
    for folder, name in bench.TABLES:
        (data / folder).mkdir(parents=True, exist_ok=True)
        tables[name].to_parquet(data / folder / f"{name}.parquet")
    return conf, data, tables


def test_every_seed_is_trained_and_the_run_seed_is_checked_against_its_history(tmp_path):
    conf, data, tables = _project(tmp_path, SMALL)
    out = tmp_path / "r.json"
    args = ["--data", str(data), "--conf", str(conf), "--seeds", "7", "8", "--out", str(out)]
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert set(r["seeds"]) == {"7", "8"} and r["run_seed"] == 7
    assert r["run_history_reproduced"] is None  # no history of the run to compare with
    assert r["seeds"]["7"] != r["seeds"]["8"]
    for key in ("val_audio", "test_visual", "epoch_text"):
        assert {"mean", "sd"} == set(r["spread"][key])
    # the run's own history: reproduced by its seed, and a changed one is not
    tens = build_tensors(*(tables[n] for _, n in bench.TABLES))
    base = yaml.safe_load((conf / "base/parameters_pretrain.yml").read_text())["pretrain"]
    model_params = {**yaml.safe_load((conf / "base/parameters_model.yml").read_text())["model"],
                    **SMALL["model"]}  # fmt: skip
    _, summary = train_stage_one(tens, model_params, {**base, **SMALL["pretrain"],
                                                      "checkpoint_dir": None}, {}, 7)  # fmt: skip
    (data / "08_reporting").mkdir()
    history = data / "08_reporting/pretrain_history.json"
    history.write_text(json.dumps(summary))
    assert bench.main([*args, "--seeds", "7"]) == 0  # the last --seeds wins
    assert json.loads(out.read_text())["run_history_reproduced"] is True
    summary["history"]["train_loss"][0] += 1.0
    history.write_text(json.dumps(summary))
    bench.main(args)
    assert json.loads(out.read_text())["run_history_reproduced"] is False


def test_the_audio_pretraining_set_of_the_run_is_required_unless_turned_off(tmp_path):
    small = {**SMALL, "pretrain": {**SMALL["pretrain"], "audio_encoder": {"videos": 4}}}
    conf, data, _ = _project(tmp_path, small)
    args = ["--data", str(data), "--conf", str(conf), "--seeds", "7"]
    with pytest.raises(SystemExit, match="audio_pretraining_set.pt is missing"):
        bench.main(args)
    out = tmp_path / "r.json"
    assert bench.main([*args, "--no-audio-pretraining", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["audio_pretraining_videos"] == 0


def test_pretrain_overrides_are_applied_recorded_and_checked_and_types_are_reported(tmp_path):
    conf, data, tables = _project(tmp_path, SMALL)
    out = tmp_path / "r.json"
    args = ["--data", str(data), "--conf", str(conf), "--seeds", "7", "--out", str(out)]
    assert bench.main(args) == 0
    plain = json.loads(out.read_text())
    assert plain["pretrain_overrides"] == {}
    assert bench.main([*args, "--pretrain", "lr=0.5"]) == 0
    changed = json.loads(out.read_text())
    assert changed["pretrain_overrides"] == {"lr": 0.5}
    assert changed["seeds"]["7"] != plain["seeds"]["7"]
    with pytest.raises(SystemExit, match="'lr0.01': expected KEY=VALUE"):
        bench.main([*args, "--pretrain", "lr0.01"])
    with pytest.raises(SystemExit, match="'lrr=0.01'"):
        bench.main([*args, "--pretrain", "lrr=0.01"])
    # per question type: every test question's type, weighing back to the overall accuracy
    qa = tables["qa_pairs"]
    test = qa[qa["split"] == "test"]
    types = (test["modality"] + " " + test["subtype"]).value_counts()
    row = plain["seeds"]["7"]
    for m in ("audio", "visual", "text"):
        keys = {k.split("/", 1)[1] for k in row if k.startswith(f"test_{m}/")}
        assert keys == set(types.index)
        overall = sum(row[f"test_{m}/{t}"] * n for t, n in types.items()) / types.sum()
        assert overall == pytest.approx(row[f"test_{m}"], abs=1e-3)
