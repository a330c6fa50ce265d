"""``benchmarks/stage1_processes.py`` trains stage I once per ``pretrain.expert_processes``
value on a run's data and says whether the weights and history are the same."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.test_stage1_seeds_benchmark import SMALL, _project

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("stage1_processes",
                                              ROOT / "benchmarks/stage1_processes.py")  # fmt: skip
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_each_value_is_timed_and_compared_with_the_first(tmp_path):
    conf, data, _ = _project(tmp_path, SMALL)
    out = tmp_path / "r.json"
    args = ["--data", str(data), "--conf", str(conf), "--seeds", "7", "--processes", "1", "2",
            "--pretrain", "epochs=3", "--out", str(out)]  # fmt: skip
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert r["pretrain_overrides"] == {"epochs": 3} and r["seed"] == 7
    one, two = r["runs"]
    assert [one["expert_processes"], two["expert_processes"]] == [1, 2]
    assert "same_weights" not in one  # the first value is what the others are compared with
    assert two["same_weights"] and two["same_history"] and two["same_best"]
    assert two["timing"]["expert_processes"] == 2 and set(two["timing"]["groups"]) == {
        "audio", "visual+text"}
    for run in r["runs"]:
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["epochs_run"] <= 3
        assert 0 < run["peak_tree_pss_gb"] <= run["peak_tree_rss_gb"]


def test_same_history_allows_the_last_digits_of_the_summed_loss_only():
    a = {"train_loss": [1.0, 0.5], "val_acc_audio": [0.3, 0.4]}
    assert bench.same_history(a, {"train_loss": [1.0 + 1e-9, 0.5], "val_acc_audio": [0.3, 0.4]})
    assert not bench.same_history(a, {"train_loss": [1.01, 0.5], "val_acc_audio": [0.3, 0.4]})
    assert not bench.same_history(a, {"train_loss": [1.0, 0.5], "val_acc_audio": [0.3, 0.41]})
    assert not bench.same_history(a, {"val_acc_audio": [0.3, 0.4], "train_loss": [1.0, 0.5]})
