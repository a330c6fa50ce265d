"""``hooks.EarlyChecks``: cross-pipeline parameter checks fail before the first node runs."""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import yaml

from r2scp_pipeline.hooks import check_factory_params, check_n_retrieve, neighbour_depth
from tests.conftest import make_project_copy, run_pipelines


def test_factory_checked_at_the_unified_space_width():
    ok = {"build_index": {"joint_space": {"dim": 32}, "index": {"factory": "IVF8,PQ16"}}}
    check_factory_params(ok)
    with pytest.raises(ValueError, match=r"factory='IVF8,PQ7'.*d=32"):
        check_factory_params({"build_index": {"joint_space": {"dim": 32},
                                              "index": {"factory": "IVF8,PQ7"}}})  # fmt: skip
    with pytest.raises(ValueError, match="search_params='nprobe=4'"):
        check_factory_params(
            {"build_index": {"index": {"factory": "Flat", "search_params": "nprobe=4"}}}
        )
    table = {"build_index": {"embeddings": {"source": "table"}, "index": {"factory": "HNSW32"}}}
    check_factory_params(table)
    table["build_index"]["index"]["factory"] = "NotAnIndex"
    with pytest.raises(ValueError, match="NotAnIndex"):
        check_factory_params(table)


def test_n_retrieve_against_the_depth_names_the_keys():
    check_n_retrieve({"model": {"n_retrieve": 3}}, 3, "build_index.neighbors.n")
    with pytest.raises(
        ValueError, match=r"model.n_retrieve = 4 .* build_index.neighbors.n holds 3"
    ):
        check_n_retrieve({"model": {"n_retrieve": 4}}, 3, "build_index.neighbors.n")
    ablation = {"model": {"n_retrieve": 3},
                "evaluate": {"ablations": {"deep": {"model": {"n_retrieve": 5}}}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"evaluate.ablations.deep.model.n_retrieve = 5"):
        check_n_retrieve(ablation, 3, "build_index.neighbors.n")
    # an ablation evaluate.methods does not train is not held to the depth
    params = yaml.safe_load(Path("conf/base/parameters_evaluate.yml").read_text())
    params["evaluate"]["methods"] = ["r2scp"]
    check_n_retrieve({"model": {"n_retrieve": 3}, "seed": 0, **params}, 3, "neighbors")
    params["evaluate"]["sweep"]["retrain"] = True  # adds sweep_n5 (n = 5)
    with pytest.raises(ValueError, match=r"evaluate.ablations.sweep_n5.model.n_retrieve = 5"):
        check_n_retrieve({"model": {"n_retrieve": 3}, "seed": 0, **params}, 3, "neighbors")


def _neighbors(depth: int) -> pd.DataFrame:
    rows = [
        {"query_video_id": q, "direction": d, "polarity": p, "rank": r,
         "neighbor_video_id": f"n{r}", "score": 0.0}
        for q in ("a", "b") for d in ("v2a", "a2v") for p in ("pos", "neg") for r in range(depth)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_neighbour_depth():
    assert neighbour_depth(_neighbors(2)) == 2
    assert neighbour_depth(_neighbors(0)) == 0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project_copy(tmp_path / "project")


def test_a_bad_factory_stops_the_run_before_any_node(project: Path):
    with pytest.raises(ValueError, match="build_index.index.factory='IVF8,PQ7'"):
        run_pipelines(project, ["build_index"], {"build_index.index.factory": "IVF8,PQ7"})
    assert not (project / "data/test/06_models").exists(), "a node ran before the check"
    if (project / "data/test/mlflow.db").exists():  # checked before kedro-mlflow opens its run
        with sqlite3.connect(project / "data/test/mlflow.db") as con:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0


def test_n_retrieve_deeper_than_the_neighbours_stops_the_run_before_stage_one(project: Path):
    with pytest.raises(ValueError, match="model.n_retrieve = 4 .*build_index.neighbors.n"):
        run_pipelines(project, ["build_index", "train"], {"model.n_retrieve": 4})
    # neighbours already built (only `train` runs): the table's depth counts
    path = project / "data/test/05_model_input/neighbors.parquet"
    path.parent.mkdir(parents=True)
    _neighbors(2).to_parquet(path)
    with pytest.raises(ValueError, match="n_retrieve = 3 but the neighbors table .* holds 2"):
        run_pipelines(project, ["train"])
    assert not (project / "data/test/06_models").exists(), "stage I ran before the check"


def test_node_times_saves_each_nodes_seconds(monkeypatch):
    from types import SimpleNamespace

    from kedro.io import DataCatalog, MemoryDataset

    from r2scp_pipeline import hooks

    clock = iter([10.0, 12.5, 20.0, 20.25])
    monkeypatch.setattr(hooks.time, "perf_counter", lambda: next(clock))
    timer = hooks.NodeTimes()
    timer.before_pipeline_run()
    for name in ("pretrain_experts", "grounding_labels"):
        node = SimpleNamespace(name=name)
        timer.before_node_run(node)
        timer.after_node_run(node)
    catalog = DataCatalog({"node_times": MemoryDataset()})
    timer.after_pipeline_run(catalog)
    saved = catalog.load("node_times")
    assert saved["nodes"] == {"pretrain_experts": 2.5, "grounding_labels": 0.25}
    assert list(saved["nodes"]) == ["pretrain_experts", "grounding_labels"]  # slowest first
    assert saved["total_seconds"] == 2.8
    timer.after_pipeline_run(DataCatalog({}))  # no entry: nothing saved, no error


def test_mlflow_params_once_logs_each_parameter_once_and_in_one_batch(
    tmp_path, monkeypatch, request
):
    import mlflow

    from r2scp_pipeline.hooks import MlflowParamsOnce

    hook = MlflowParamsOnce()  # kedro-mlflow's defaults: flatten off; switched on as in mlflow.yml
    hook.flatten, hook.long_params_strategy = True, "tag"
    request.addfinalizer(partial(mlflow.set_tracking_uri, mlflow.get_tracking_uri()))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    batches: list[dict] = []
    log_params = mlflow.log_params
    monkeypatch.setattr(mlflow, "log_params", lambda p: (batches.append(p), log_params(p))[1])
    monkeypatch.setattr(mlflow, "log_param", lambda *a: pytest.fail(f"one key at a time: {a}"))

    def node(**inputs):
        hook.before_node_run(node=None, catalog=None, inputs=inputs, is_async=False)

    # an experiment of this store (another test may have left an active experiment id behind)
    experiment = mlflow.MlflowClient().create_experiment("params_once")
    with mlflow.start_run(experiment_id=experiment) as run:
        node(**{"params:model": {"d_model": 16, "heads": 2}, "video_index": pd.DataFrame()})
        node(**{"params:model": {"d_model": 16, "heads": 2}, "params:seed": 7})
        node(**{"params:model": {"d_model": 16, "heads": 2}})  # nothing new: no call
        node(**{"params:notes": "x" * 7000})  # over MLflow's limit: a tag, as configured
        with pytest.raises(mlflow.exceptions.MlflowException):  # a changed value still fails
            node(**{"params:seed": 8})
    logged = mlflow.get_run(run.info.run_id).data
    assert batches == [{"model.d_model": "16", "model.heads": "2"}, {"seed": "7"}, {"seed": "8"}]
    assert logged.params == {"model.d_model": "16", "model.heads": "2", "seed": "7"}
    assert len(logged.tags["notes"]) == 7000
