"""``mlflow_store``: a copied project keeps its MLflow artifacts; the experiment kind tag."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import mlflow
import pytest

from r2scp_pipeline.mlflow_store import (
    EXPERIMENT_KIND,
    local_path,
    relocate_artifacts,
    sqlite_path,
)
from tests.conftest import TEST_MLFLOW_DB, make_project_copy, run_pipelines


def _store_with_a_run(project: Path, monkeypatch) -> str:
    monkeypatch.chdir(project)  # MLflow's default artifact root is ./mlruns (made absolute)
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.create_experiment("r2scp_pipeline")
    run = client.create_run(exp)
    (project / "note.txt").write_text("from A")
    client.log_artifact(run.info.run_id, str(project / "note.txt"))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_a_copied_store_writes_its_artifacts_into_the_copy(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    run_id = _store_with_a_run(a, monkeypatch)
    shutil.copytree(a, b)
    assert relocate_artifacts(b / "mlflow.db", "r2scp_pipeline", b) == a.resolve()
    assert relocate_artifacts(b / "mlflow.db", "r2scp_pipeline", b) is None  # done once
    client = mlflow.MlflowClient(f"sqlite:///{b / 'mlflow.db'}")
    exp = client.get_experiment_by_name("r2scp_pipeline")
    assert local_path(exp.artifact_location) == b.resolve() / "mlruns" / exp.experiment_id
    # the old run's artifacts are read from the copy, new ones are written there
    assert local_path(client.get_run(run_id).info.artifact_uri).is_relative_to(b.resolve())
    local = client.download_artifacts(run_id, "note.txt", str(tmp_path))
    assert Path(local).read_text() == "from A"
    before = sorted(p for p in (a / "mlruns").rglob("*"))
    new = client.create_run(exp.experiment_id)
    (b / "note.txt").write_text("from B")
    client.log_artifact(new.info.run_id, str(b / "note.txt"))
    assert sorted(p for p in (a / "mlruns").rglob("*")) == before, "wrote into the original"
    assert list((b / "mlruns").rglob(f"{new.info.run_id}/artifacts/note.txt"))
    # the original store is untouched
    with sqlite3.connect(a / "mlflow.db") as con:
        locs = [r[0] for r in con.execute("select artifact_uri from runs")]
    assert all(str(a.resolve()) in loc for loc in locs)


def test_other_layouts_are_left_alone(tmp_path, monkeypatch):
    a = tmp_path / "a"
    a.mkdir()
    _store_with_a_run(a, monkeypatch)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert relocate_artifacts(b / "mlflow.db", "r2scp_pipeline", b, "/srv/mlflow") is None
    assert relocate_artifacts(b / "mlflow.db", "other", b) is None
    assert relocate_artifacts(b / "none.db", "r2scp_pipeline", b) is None
    assert sqlite_path("http://127.0.0.1:5000", b) is None
    assert sqlite_path("sqlite:///x/m.db", b) == b / "x/m.db"


@pytest.mark.e2e
def test_a_copied_kedro_project_tracks_into_its_own_store(tmp_path):
    """A tracked ``kedro run`` in project A; A copied to B; a run in B writes B's artifacts."""
    a = make_project_copy(tmp_path / "a")
    params = {"dataset.embedded.num_videos": 3}
    run_pipelines(a, ["dataset"], params)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    for yml in (b / "conf").rglob("mlflow.yml"):  # a real copy has a relative URI
        yml.write_text(yml.read_text().replace(str(a), str(b)))
    before = sorted((a / "data/test/mlruns").rglob("*"))
    run_pipelines(b, ["dataset"], params)
    assert sorted((a / "data/test/mlruns").rglob("*")) == before, "B wrote into A's artifacts"
    client = mlflow.MlflowClient(f"sqlite:///{b / TEST_MLFLOW_DB}")
    exp = client.get_experiment_by_name("r2scp_pipeline")
    assert local_path(exp.artifact_location).is_relative_to(b.resolve() / "data/test/mlruns")
    assert exp.tags.get(EXPERIMENT_KIND[0]) == EXPERIMENT_KIND[1]  # the runs table first
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    assert len(runs) == 2
    newest = runs[0].info
    assert local_path(newest.artifact_uri).is_relative_to(b.resolve())
    assert "answer_prior.csv" in {f.path for f in client.list_artifacts(newest.run_id)}
