"""``benchmarks/stage2_seeds.py`` trains R2ScP's stage II once per seed and per variant of the
configuration on a run's data and stage-I experts, and reports the spread over seeds."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.training import model_checkpoint, train_stage_one, train_stage_two
from tests.synthetic import make_synthetic_tables

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("stage2_seeds", ROOT / "benchmarks/stage2_seeds.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
SMALL = {"model": {"d_model": 16, "n_heads": 2, "router_hidden": 8, "k_purge": 3, "n_retrieve": 2},
         "mix": {"epochs": 2, "batch_size": 32, "samples_per_epoch": None}, "seed": 7}  # fmt: skip


def test_a_variant_is_mix_or_model_assignments_read_as_yaml():
    name, over = bench.parse_variant("u", "mix.batch_by_video=false,model.k_purge=2")
    assert name == "u" and over == {"mix": {"batch_by_video": False}, "model": {"k_purge": 2}}
    for bad in ("mix.batch_by_video", "pretrain.epochs=1", "mix=1", "mix.a.b=1"):
        with pytest.raises(SystemExit, match="is not mix.KEY=VALUE"):
            bench.parse_variant("u", bad)


def _project(tmp_path: Path) -> tuple[Path, Path, object, dict, dict]:
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    for name in ("globals.yml", "parameters.yml", "parameters_model.yml", "parameters_mix.yml"):
        shutil.copy(ROOT / "conf/base" / name, conf / "base" / name)
    (conf / "local").mkdir()
    (conf / "local/parameters.yml").write_text(yaml.safe_dump(SMALL))
    tables = make_synthetic_tables(n_videos=30, seed=5, neighbor_ranks=2)
    data = tmp_path / "data"
    for folder, name in bench.TABLES:
        (data / folder).mkdir(parents=True, exist_ok=True)
        tables[name].to_parquet(data / folder / f"{name}.parquet")
    tensors = build_tensors(**{n: tables[n] for _, n in bench.TABLES}, n_neighbors=2)
    model_params = {**yaml.safe_load((conf / "base/parameters_model.yml").read_text())["model"],
                    **SMALL["model"]}  # fmt: skip
    model, _ = train_stage_one(tensors, model_params, {"epochs": 1, "batch_size": 32,
                                                       "checkpoint_dir": None}, {}, 0)  # fmt: skip
    stage1 = model_checkpoint(model, {"stage_one": True})
    (data / "06_models").mkdir()
    torch.save(stage1, data / bench.STAGE1)
    mix = {**yaml.safe_load((conf / "base/parameters_mix.yml").read_text())["mix"],
           **SMALL["mix"], "checkpoint_dir": None}  # fmt: skip
    return conf, data, tensors, stage1, {"model": model_params, "mix": mix}


def test_every_variant_and_seed_is_trained_and_the_run_seed_checked_against_its_history(tmp_path):
    conf, data, tensors, stage1, params = _project(tmp_path)
    out = tmp_path / "r.json"
    args = ["--data", str(data), "--conf", str(conf), "--seeds", "7", "8", "--out", str(out),
            "--variant", "uniform", "mix.batch_by_video=false"]  # fmt: skip
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert list(r["variants"]) == ["configured", "uniform"]
    assert r["variants"]["uniform"]["overrides"]["mix"] == {"batch_by_video": False}
    for v in r["variants"].values():
        assert set(v["seeds"]) == {"7", "8"} and v["seeds"]["7"] != v["seeds"]["8"]
        assert {"mean", "sd"} == set(v["spread"]["test_audio"])
    assert r["variants"]["configured"]["seeds"]["7"] != r["variants"]["uniform"]["seeds"]["7"]
    assert r["run_history_reproduced"] is None and r["run_seed"] == 7
    # accuracy per question type: one key per type of the test split, weighted back to the whole
    qa = pd.read_parquet(data / "02_intermediate/qa_pairs.parquet")
    test = qa[qa["split"] == "test"]
    counts = (test["modality"] + " " + test["subtype"]).value_counts()
    got = r["variants"]["configured"]["seeds"]["7"]
    per_type = {k.split("/", 1)[1]: v for k, v in got.items() if k.startswith("test_none/")}
    assert set(per_type) == set(counts.index)
    overall = sum(per_type[t] * n for t, n in counts.items()) / counts.sum()
    assert overall == pytest.approx(got["test_none"], abs=1e-3)
    # the run's own history: repeated by its seed with the configuration as it is
    _, summary = train_stage_two(stage1, tensors, params["model"], params["mix"], {}, 7)
    (data / "08_reporting").mkdir()
    history = data / "08_reporting/mix_history.json"
    history.write_text(json.dumps(summary))
    assert bench.main([*args[:-3], "--seeds", "7"]) == 0
    assert json.loads(out.read_text())["run_history_reproduced"] is True
    summary["history"]["train_loss"][0] += 1.0
    history.write_text(json.dumps(summary))
    bench.main([*args[:-3], "--seeds", "7"])
    assert json.loads(out.read_text())["run_history_reproduced"] is False


def test_missing_experts_and_clashing_names_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="stage1_experts.pt is missing"):
        bench.main(["--data", str(tmp_path), "--conf", str(ROOT / "conf")])
    with pytest.raises(SystemExit, match="must differ"):
        bench.main(["--data", str(tmp_path), "--variant", "configured", "mix.epochs=1"])
