"""End-to-end ``kedro run --env=test --pipelines=train`` on synthetic upstream tables.

The upstream tables (qa_pairs, features, memory banks, neighbours) are written in the catalog
contract format into a throw-away project copy, so this test does not depend on the
``dataset``/``features``/``build_index`` pipelines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2scp_pipeline.training import TrainingInterrupted, load_model
from tests.conftest import make_project_copy, run_pipelines
from tests.synthetic import make_synthetic_tables

UPSTREAM = {
    "qa_pairs": "data/test/02_intermediate/qa_pairs.parquet",
    "audio_features": "data/test/04_feature/audio_features.parquet",
    "visual_features": "data/test/04_feature/visual_features.parquet",
    "question_features": "data/test/04_feature/question_features.parquet",
    "memory_bank_audio": "data/test/05_model_input/memory_bank_audio.parquet",
    "memory_bank_visual": "data/test/05_model_input/memory_bank_visual.parquet",
    "neighbors": "data/test/05_model_input/neighbors.parquet",
}


def kedro_run(project: Path, pipelines: list[str], params: dict | None = None) -> None:
    """``run_pipelines``, then close the MLflow run: with Kedro 1.7 kedro-mlflow re-enters the
    run once per node and ends it once, so an in-process session leaves it on the stack."""
    import mlflow

    try:
        run_pipelines(project, pipelines, params)
    finally:
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project_copy(tmp_path_factory.mktemp("train_project"))
    for name, df in make_synthetic_tables(n_videos=30, seed=4).items():
        path = root / UPSTREAM[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path)
    # the contract's paths, in case the upstream pipelines' catalogs are not in this checkout
    lines = [f"{n}:\n  type: pandas.ParquetDataset\n  filepath: {p}\n" for n, p in UPSTREAM.items()]
    (root / "conf" / "test" / "catalog_train_upstream.yml").write_text("\n".join(lines))
    return root


@pytest.mark.e2e
def test_kedro_run_train(project, monkeypatch):
    monkeypatch.chdir(project)
    kedro_run(project, ["train"])
    model = load_model(
        __import__("torch").load(project / "data/test/06_models/r2scp_model.pt", weights_only=True)
    )
    assert model.cfg.d_model == 16  # conf/test sizes
    history = json.loads((project / "data/test/08_reporting/mix_history.json").read_text())
    assert len(history["history"]["val_acc_audio"]) == 2
    assert (project / "data/test/08_reporting/expert_loads.png").stat().st_size > 0
    assert (project / "data/test/06_models/stage1_experts.pt").exists()
    # MLflow got the per-epoch metrics and the weights
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'data/test/mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["r2scp_pipeline"]).iloc[0]
    assert "metrics.mix.val_load_visual_text" in run and "metrics.pretrain.val_acc_audio" in run
    assert run["params.model.k_purge"] == "5"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "models")]
    assert sorted(artifacts) == ["models/r2scp_model.pt", "models/stage1_experts.pt"]
    # ... and the model with MLflow's PyTorch flavour: listed, with a signature, loads by run id
    logged = mlflow.search_logged_models(experiment_ids=[run.experiment_id], output_format="list")
    assert [m.name for m in logged] == ["r2scp_model"] and logged[0].source_run_id == run.run_id
    info = mlflow.models.get_model_info(f"runs:/{run.run_id}/r2scp_model")
    assert [s["name"] for s in info.signature.inputs.to_dict()] == [
        "audio", "visual", "question", "question_mask"]  # fmt: skip
    module = mlflow.pytorch.load_model(f"runs:/{run.run_id}/r2scp_model")
    assert module.cfg.d_model == model.cfg.d_model
    for name, value in module.state_dict().items():
        assert __import__("torch").equal(value, model.state_dict()[name]), name


@pytest.mark.e2e
def test_kedro_run_killed_then_resumed(project, monkeypatch):
    monkeypatch.chdir(project)

    def mix(**kw):
        return {
            "mix": {"epochs": 3, "checkpoint_dir": "data/test/06_models/checkpoints/mix_resume", **kw}
        }

    with pytest.raises(TrainingInterrupted, match="max_epochs_this_run"):
        kedro_run(project, ["train"], mix(max_epochs_this_run=1))  # "killed" after stage-II epoch 1
    kedro_run(
        project, ["train"], mix()
    )  # stage I: finished checkpoint; stage II resumes at epoch 2
    resumed = json.loads((project / "data/test/08_reporting/mix_history.json").read_text())
    kedro_run(project, ["mix"], mix(checkpoint_dir="data/test/06_models/checkpoints/mix_full"))
    full = json.loads((project / "data/test/08_reporting/mix_history.json").read_text())
    assert len(full["history"]["val_score"]) == 3
    assert resumed["history"] == full["history"]
    assert resumed["best"] == full["best"]
