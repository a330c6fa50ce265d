"""``scripts/reference_run.py``: a reference run starts from scratch, and its memory sampler
adds up a process tree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reference_run", ROOT / "scripts/reference_run.py")
reference_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_run)


def test_models_of_an_earlier_run_stop_a_reference_run(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "06_models").mkdir(parents=True)
    (data / "06_models" / ".gitkeep").touch()
    assert reference_run.earlier_models(data) == []
    last = data / "06_models" / "checkpoints" / "pretrain" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    assert reference_run.earlier_models(data) == [last]
    code = reference_run.main(["--data-root", str(data), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "last.pt" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_tree_memory_counts_the_children_of_the_process():
    """A parent holding little and a child holding ~200 MB: the sampled peak of the tree is
    above the child's allocation, which the parent's own RSS never shows."""
    child = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    with subprocess.Popen([sys.executable, "-c", parent]) as proc:
        with reference_run.TreeMemory(proc.pid, interval=0.1) as tree:
            proc.wait()
    assert tree.peak_bytes > 200 * 2**20
    assert 0 < tree.peak_pss_bytes <= tree.peak_bytes


def test_recorded_parameters_deep_merge_an_environment_over_base():
    """``--env=nocue`` overrides one nested key (dataset.embedded.visual_cue): the recorded
    parameters keep every other key of conf/base, as `kedro run --env=nocue` does."""
    base, nocue = reference_run.parameters("base"), reference_run.parameters("nocue")
    assert base["dataset"]["embedded"]["visual_cue"] is True
    assert nocue["dataset"]["embedded"]["visual_cue"] is False
    rest = {k: v for k, v in nocue["dataset"]["embedded"].items() if k not in ("visual_cue", "root")}
    assert rest == {k: v for k, v in base["dataset"]["embedded"].items()
                    if k not in ("visual_cue", "root")}  # fmt: skip
    assert nocue["pretrain"]["epochs"] == base["pretrain"]["epochs"]


def test_a_run_config_overrides_the_recorded_parameters_as_kedro_merges_them():
    """``--config docs/run_configs/full_default_methods.yml``: the full environment's data
    with base's methods and seed; its nested params override keys and keep their siblings."""
    runtime = reference_run.run_config_params(ROOT / "docs/run_configs/full_default_methods.yml")
    full = reference_run.parameters("full")
    both = reference_run.parameters("full", runtime_params=runtime)
    base = reference_run.parameters("base")
    assert full["evaluate"]["seeds"] and full["evaluate"]["all_ablations"] is True
    assert both["evaluate"]["seeds"] is None and both["evaluate"]["all_ablations"] is False
    assert both["evaluate"]["sweep"] == {**full["evaluate"]["sweep"], "retrain": False}
    assert both["evaluate"]["methods"] == base["evaluate"]["methods"]
    assert both["dataset"] == full["dataset"] and both["mix"] == full["mix"]
