"""Shared fixtures.

``kedro_project``: a throw-away copy of this Kedro project (conf/, pyproject.toml) in a temp
folder, so end-to-end runs write their data/test/ (store: data/test/mlflow.db) there and never
touch the developer's. ``run_kedro`` runs pipelines in it with the ``test`` environment (tiny sizes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = Path(
    os.environ.get(
        "R2SCP_SHARED_REFERENCE", PROJECT_ROOT.parent / "shared" / "reference" / "music_avqa"
    )
)  # R2SCP_SHARED_REFERENCE: the reference annotations when they live elsewhere

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
#: where ``--env=test`` writes (conf/test/globals.yml, conf/test/mlflow.yml): never data/
TEST_DATA = "data/test"
TEST_MLFLOW_DB = f"{TEST_DATA}/mlflow.db"


#: for e2e tests of one path (ingestion, a benchmark's reports) rather than of the method grid,
#: which tests/test_e2e.py runs in full: R2ScP and zero-fill, one seed, no n/k sweep
ONE_PATH_EVALUATION: dict[str, Any] = {
    "evaluate.methods": ["r2scp", "zero_fill"],
    "evaluate.seeds": [42],
    "evaluate.sweep.enabled": False,
}


def make_project_copy(dest: Path) -> Path:
    """Copy what ``kedro run`` needs (configuration, project metadata) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "conf", dest / "conf", dirs_exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy2(PROJECT_ROOT / name, dest / name)
    (dest / "src").mkdir(exist_ok=True)
    # mlflow caches one SQL store per URI string in-process: a relative sqlite:///mlflow.db
    # would make every later copy log into the first copy's database. Pin it to this copy.
    for env, rel in (("base", "mlflow.db"), ("test", TEST_MLFLOW_DB)):
        mlflow_yml = dest / "conf" / env / "mlflow.yml"
        text = mlflow_yml.read_text()
        assert f"sqlite:///{rel}" in text, f"conf/{env}/mlflow.yml tracking URI changed"
        mlflow_yml.write_text(text.replace(f"sqlite:///{rel}", f"sqlite:///{dest / rel}"))
    return dest


@pytest.fixture(scope="session")
def kedro_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-wide project copy; e2e tests share it so each pipeline runs once."""
    root = make_project_copy(tmp_path_factory.mktemp("project"))
    old = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old)


def nested(params: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, as ``kedro run --params="a.b=1"`` does.

    ``KedroSession.create(runtime_params=...)`` does not split dotted keys itself.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def run_pipelines(
    project: Path,
    pipelines: list[str] | None = None,
    params: dict[str, Any] | None = None,
    env: str = "test",
) -> dict[str, Any]:
    """Run ``pipelines`` (None = ``__default__``) in ``project`` like ``kedro run`` does.

    ``params`` may use dotted keys (``{"dataset.source": "music_avqa"}``).
    """
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    try:
        with KedroSession.create(
            project_path=project, env=env, runtime_params=nested(params or {})
        ) as session:
            return session.run(pipeline_names=pipelines) if pipelines else session.run()
    finally:
        # kedro-mlflow leaves its run active in-process; the next session would log into it
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="session")
def run_kedro(kedro_project: Path) -> Callable[..., dict[str, Any]]:
    def _run(pipelines: list[str] | None = None, params: dict[str, Any] | None = None):
        return run_pipelines(kedro_project, pipelines, params)

    return _run


@pytest.fixture(scope="session")
def tracked_project(kedro_project: Path, run_kedro) -> Path:
    """The session's project copy after one ``kedro run --env=test`` (``__default__``): data
    under data/test/, tracked runs in data/test/mlflow.db. Shared by the e2e and browser tests.
    Stage I trains on a worker process beside the node's (conf/base's default; conf/test's
    other runs keep one process)."""
    run_kedro(params={"pretrain.expert_processes": 2})  # dataset, features, ..., evaluate
    return kedro_project
