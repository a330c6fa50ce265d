"""The commands of docs/deployment.md that can run here: the Airflow DAG is generated
(kedro-airflow), with one task per feature shard, and ``kedro run`` on the project's DaskRunner
(a LocalCluster of 2) extracts the same features as the sequential nodes and reports the numbers
of a sequential run (``kedro run --env=test``)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_DATA, make_project_copy

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    "KEDRO_DISABLE_TELEMETRY": "1",
}


def _kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, (
        f"kedro {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    return run


def test_airflow_dag_has_one_task_per_feature_shard(tmp_path):
    pytest.importorskip(
        "kedro_airflow", reason="kedro-airflow is not installed (pip install -e '.[dev]')"
    )
    project = make_project_copy(tmp_path / "project")
    _kedro(
        project,
        "airflow",
        "create",
        "--pipelines=features",
        "--env=airflow",
        "--target-dir=dags",
        "--group-by=memory",
    )
    dag = project / "dags" / "r2scp_pipeline_airflow_features_dag.py"
    assert dag.exists(), sorted(p.name for p in (project / "dags").iterdir())
    text = dag.read_text()
    ast.parse(text)  # valid Python, whether or not Airflow is installed here
    tasks = set(re.findall(r'task_id="([^"]+)"', text))
    from r2scp_pipeline.pipelines.features.pipeline import feature_shards

    shards = feature_shards()
    for i in range(shards):
        for modality in ("audio", "visual"):
            assert f"features-shard-{i}-extract-{modality}-features" in tasks, tasks
    # the merges, alignment and report share in-memory data: one task, after every shard
    (merge,) = [t for t in tasks if "merge-audio-shards" in t]
    assert "merge-visual-shards" in merge and "feature-report" in merge
    # plus the grounding labels, read from and written to files: a task of its own
    assert "grounding-labels" in tasks
    assert len(tasks) == 2 * shards + 2
    assert text.count(f'>> tasks["{merge}"]') == 2 * shards
    assert 'env = "airflow"' in text  # each task runs the airflow configuration environment


@pytest.fixture(scope="module")
def test_project(tmp_path_factory) -> Path:
    """A project copy after ``kedro run --env=test --pipelines=dataset``."""
    project = make_project_copy(tmp_path_factory.mktemp("deploy") / "project")
    _kedro(project, "run", "--env=test", "--pipelines=dataset")
    return project


def _assert_sequential_features(project: Path) -> None:
    """data/test/04_feature holds what the plain nodes give over all videos."""
    from kedro.config import OmegaConfigLoader

    from r2scp_pipeline.pipelines.features.nodes import (
        extract_audio_features,
        extract_visual_features,
    )
    from r2scp_pipeline.settings import CONFIG_LOADER_ARGS

    params = OmegaConfigLoader(str(project / "conf"), env="test", **CONFIG_LOADER_ARGS)[
        "parameters"
    ]["features"]
    params = {**params, "media_root": str(project), "progress": False}
    data = project / TEST_DATA
    video_index = pd.read_parquet(data / "02_intermediate/video_index.parquet")
    for name, extract, atol in (
        ("audio", extract_audio_features, 0.0),
        ("visual", extract_visual_features, 1e-4),  # batches differ (test_dask_features.py)
    ):
        got = pd.read_parquet(data / f"04_feature/{name}_features.parquet")
        want, _ = extract(video_index, params)
        keys = [c for c in want.columns if c != "feature"]
        pd.testing.assert_frame_equal(got[keys], want[keys], check_dtype=False)
        a, b = np.stack(got["feature"].to_numpy()), np.stack(want["feature"].to_numpy())
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


#: report tables of the evaluate pipeline compared byte for byte between runners
REPORT_TABLES = ("results_table.csv", "comparison_table.csv", "ablation_table.csv",
                 "modality_needs.csv", "retrieval_quality.csv", "claims_verdicts.csv")  # fmt: skip


@pytest.mark.e2e
def test_the_whole_chain_on_the_dask_runner_gives_the_sequential_numbers(
    test_project, tracked_project
):
    """``kedro run --runner=r2scp_pipeline.runner.DaskRunner`` (a LocalCluster of 2
    single-threaded workers) runs every pipeline: its features are the plain nodes' and its
    report tables are byte for byte those of the session's sequential run
    (``conftest.tracked_project``, the same configuration in-process on the SequentialRunner)."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    reports = Path(TEST_DATA) / "08_reporting"
    want = {name: (tracked_project / reports / name).read_bytes() for name in REPORT_TABLES}
    run = _kedro(test_project, "run", "--env=test", "--runner=r2scp_pipeline.runner.DaskRunner",
                 "--runner-params=n_workers=2,threads_per_worker=1")  # fmt: skip
    assert "DaskRunner" in run.stdout + run.stderr  # its log line names the cluster
    _assert_sequential_features(test_project)
    for name, table in want.items():
        assert (test_project / reports / name).read_bytes() == table, name


@pytest.mark.e2e
def test_airflow_tasks_as_separate_kedro_runs(test_project):
    """What the tasks of the generated DAG do, in separate processes, with conf/airflow's
    pickled shards (added to the test environment here): the shard tasks (in one process: a
    kedro run per task costs seconds of start-up each, and they do not read each other's
    output), then the tasks after them in another, which find the shards only on disk."""
    extra = test_project / "conf/test/catalog_airflow.yml"
    extra.write_text((ROOT / "conf/airflow/catalog.yml").read_text())
    try:
        from r2scp_pipeline.pipelines.features.pipeline import feature_shards

        def task(i: int, modality: str) -> str:
            return f"features_shard_{i}.extract_{modality}_features"

        tasks = [task(i, m) for i in range(feature_shards()) for m in ("audio", "visual")]
        _kedro(test_project, "run", "--env=test", "--pipelines=features", f"--nodes={','.join(tasks)}")
        shards = sorted(p.name for p in (test_project / TEST_DATA / "04_feature/shards").iterdir())
        assert len(shards) == 2 * feature_shards(), shards
        after = "extract_question_features,merge_audio_shards,merge_visual_shards,align_media_features,feature_report"
        _kedro(test_project, "run", "--env=test", "--pipelines=features", f"--nodes={after}")
    finally:
        extra.unlink()
    _assert_sequential_features(test_project)
