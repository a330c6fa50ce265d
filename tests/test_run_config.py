"""Parameter values with commas: ``kedro run --params`` splits at commas, a run config file
(``kedro run --config FILE``) carries them (docs/build_index.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from r2scp_pipeline.hooks import check_factory_params
from tests.conftest import PROJECT_ROOT, make_project_copy

EXAMPLE = PROJECT_ROOT / "docs" / "run_configs" / "ivf_index.yml"


def _kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env=test", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_documented_run_config_is_valid():
    run = OmegaConf.to_container(OmegaConf.load(EXAMPLE))["run"]
    from kedro.framework.cli.utils import _validate_config_file

    for key in run:
        _validate_config_file(key)  # raises on a key `kedro run` does not know
    factory = run["params"]["build_index"]["index"]["factory"]
    assert "," in factory
    check_factory_params(
        {"build_index": {"joint_space": {"dim": 256}, **run["params"]["build_index"]}}
    )


def test_a_factory_with_a_comma_reaches_the_run_through_a_config_file(tmp_path: Path):
    project = make_project_copy(tmp_path / "project")
    # --params cannot carry it: Kedro splits at the comma
    res = _kedro_run(
        project, "--pipelines=build_index", "--params=build_index.index.factory=IVF8,PQ7"
    )
    assert res.returncode != 0 and "PQ7" in res.stderr and "must contain a key" in res.stderr
    # a run config file does: the whole string arrives (and the early check rejects PQ7 for
    # d=32, naming it in full, before any node runs)
    config = tmp_path / "run.yml"
    config.write_text(
        "run:\n  pipelines: build_index\n"
        "  params:\n    build_index:\n      index:\n        factory: IVF8,PQ7\n"
    )
    res = _kedro_run(project, "--config", str(config))
    assert res.returncode != 0
    assert "build_index.index.factory='IVF8,PQ7'" in res.stdout + res.stderr, res.stderr[-3000:]
    assert not (project / "data/test/06_models").exists()
