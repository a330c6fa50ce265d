"""``benchmarks/training.py``: both stages per thread count, written as JSON (docs/model.md,
"Threads"), optionally next to processes that keep cores busy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("training_benchmark", ROOT / "benchmarks/training.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_one_run_of_both_stages_per_thread_count(tmp_path):
    out = tmp_path / "threads.json"
    bench.main(["--videos", "20", "--epochs", "1", "--d-model", "16", "--batch-size", "16",
                "--threads", "1", "2", "--out", str(out)])  # fmt: skip
    r = json.loads(out.read_text())
    assert [run["threads"] for run in r["runs"]] == [1, 2]
    assert r["busy"] == 0 and r["epochs"] == 1 and r["d_model"] == 16
    first, second = r["runs"]
    for run in r["runs"]:
        for stage in ("stage_one", "stage_two"):
            assert run[stage]["train_samples_per_s"] > 0
            assert 0 <= run[stage]["best_val_score"] <= 1
    assert "speedup_vs_first" not in first
    ratio = second["stage_two"]["train_samples_per_s"] / first["stage_two"]["train_samples_per_s"]
    assert second["speedup_vs_first"]["stage_two"] == pytest.approx(ratio, abs=0.01)
    # the scores are compared, not assumed: equal here only if both runs agree
    same = second["same_scores_as_first"]["stage_one"]
    assert same == (second["stage_one"]["best_val_score"] == first["stage_one"]["best_val_score"])
    assert r["command"].endswith(f"--out {out}")


def test_busy_cores_start_and_stop_their_processes():
    with bench.busy_cores(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_thread_counts_must_be_positive():
    with pytest.raises(SystemExit):
        bench.main(["--threads", "0"])
