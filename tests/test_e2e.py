"""End to end: ``kedro run`` (the ``__default__`` pipeline) on a tiny generated dataset.

One run in a throw-away project copy (``--env=test``: ~30 videos, tiny models, 1-2 epochs),
then the catalog outputs of every stage are checked against the data contracts, and the MLflow
store is checked for the tracked run.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from r2scp_pipeline.avqa import ANSWERS
from r2scp_pipeline.tensors import frame_to_padded, frame_to_tokens

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tracked_project: Path) -> Path:
    return tracked_project  # after `kedro run --env=test` (__default__), see conftest


def _read(project: Path, rel: str) -> pd.DataFrame:
    path = project / rel
    assert path.exists(), f"{rel} was not written"
    return pd.read_parquet(path)


def test_dataset_outputs_follow_the_contract(project: Path):
    qa = _read(project, "data/test/02_intermediate/qa_pairs.parquet")
    assert list(qa.columns) == [
        "question_id", "video_id", "split", "question", "template", "templ_values",
        "modality", "subtype", "answer", "answer_idx",
    ]  # fmt: skip
    assert qa["question_id"].is_unique
    assert set(qa["split"]) == {"train", "val", "test"}
    assert (qa["answer"] == [ANSWERS[i] for i in qa["answer_idx"]]).all()
    assert not qa["question"].str.contains("<").any(), "a placeholder was left unfilled"
    videos = _read(project, "data/test/02_intermediate/video_index.parquet")
    assert videos["video_id"].is_unique
    assert set(qa["video_id"]) <= set(videos["video_id"])
    # split by video: a video's questions all sit in its split
    assert (qa.groupby("video_id")["split"].nunique() == 1).all()
    assert (videos[["in_train", "in_val", "in_test"]].sum(axis=1) == 1).all()
    raw = project / "data/test/01_raw/embedded"
    for name in ("avqa-train.json", "avqa-val.json", "avqa-test.json", "manifest.json"):
        assert (raw / name).exists()


def test_features_cover_every_video_and_question(project: Path):
    videos = _read(project, "data/test/02_intermediate/video_index.parquet")
    qa = _read(project, "data/test/02_intermediate/qa_pairs.parquet")
    for name in ("audio", "visual"):
        ids, x = frame_to_tokens(_read(project, f"data/test/04_feature/{name}_features.parquet"))
        assert sorted(ids) == sorted(videos["video_id"])
        assert x.shape[1] == 10 and x.shape[2] > 1 and x.shape[3] > 0  # [N, T, S, D]
        assert np.isfinite(x).all() and x.std() > 0
    ids, q, mask = frame_to_padded(_read(project, "data/test/04_feature/question_features.parquet"))
    assert set(ids) == set(qa["question"])
    assert mask.any(axis=1).all() and np.isfinite(q).all()


def test_neighbours_never_leak(project: Path):
    videos = _read(project, "data/test/02_intermediate/video_index.parquet")
    nb = _read(project, "data/test/05_model_input/neighbors.parquet")
    train = set(videos.loc[videos["in_train"], "video_id"])
    assert set(nb["direction"]) == {"v2a", "a2v"} and set(nb["polarity"]) == {"pos", "neg"}
    assert (nb["query_video_id"] != nb["neighbor_video_id"]).all()
    assert set(nb["neighbor_video_id"]) <= train, "a val/test video was retrievable"
    assert set(nb["query_video_id"]) == set(videos["video_id"])
    assert set(nb["protocol"]) == {"video_split"}  # the embedded data split by video
    assert (project / "data/test/06_models").exists()


def test_models_and_reports_are_written(project: Path):
    models = project / "data/test/06_models"
    assert list(models.rglob("stage1_experts.pt")), "stage-I checkpoint missing"
    assert list(models.rglob("r2scp_model.pt")), "stage-II checkpoint missing"
    reporting = project / "data/test/08_reporting"
    written = {p.name for p in reporting.rglob("*") if p.is_file()}
    for name in ("results_table.md", "results_table.csv", "accuracy_vs_missing_rate.png",
                 "claims_verdicts.csv", "claims_verdicts.md"):  # fmt: skip
        assert name in written, f"{name} not in data/08_reporting ({sorted(written)})"


def test_stage_one_learns_the_grounding_labels_of_the_generated_scenes(project: Path):
    tracks = _read(project, "data/test/02_intermediate/instrument_tracks.parquet")
    videos = set(_read(project, "data/test/02_intermediate/video_index.parquet")["video_id"])
    assert set(tracks["video_id"]) == videos
    labels = _read(project, "data/test/04_feature/grounding_labels.parquet")
    visual = _read(project, "data/test/04_feature/visual_features.parquet")
    assert len(labels[labels["modality"] == "visual"]) == len(visual)  # one row per visual token
    assert labels["instruments"].map(len).sum() > 0
    (ckpt,) = (project / "data/test/06_models").rglob("stage1_experts.pt")
    state = torch.load(ckpt, weights_only=False)["state_dicts"]["model"]
    assert "grounding.out.audio.weight" in state and "grounding.out.visual.weight" in state
    (metrics,) = [p for p in (project / "data/test/08_reporting").rglob("node_times.json")]
    assert "pretrain_experts" in json.loads(metrics.read_text())["nodes"]
    # the session's run trains the audio expert on a worker process (tests/conftest.py)
    history = json.loads((project / "data/test/08_reporting/pretrain_history.json").read_text())
    assert history["timing"]["expert_processes"] == 2
    assert set(history["timing"]["groups"]) == {"audio", "visual+text"}


def test_every_method_is_trained_per_seed_and_reported_with_its_spread(project: Path):
    """conf/test: every recovery (baselines, oracle, random retrieval, the plug-in example)
    and two ablations, each trained by its own namespace of the variants pipeline, two seeds."""
    import torch

    variants = project / "data/test/06_models/variants"
    zero = torch.load(variants / "zero_fill.pt", weights_only=True)
    assert zero["selected"] and sorted(zero["models"]) == ["seed_42", "seed_7"]
    assert zero["models"]["seed_7"]["config"]["use_cap"] is False  # trained as a baseline
    assert not torch.load(variants / "no_cmr.pt", weights_only=True)["selected"]  # not listed
    results = _read(project, "data/test/07_model_output/evaluation_results.parquet")
    assert set(results["seed"]) == {42, 7}
    assert {"oracle", "random_retrieval", "neighbour_mean", "no_cap"} <= set(results["method"])
    table = pd.read_csv(project / "data/test/08_reporting/results_table.csv")
    assert (table["n_seeds"] == 2).all() and {"Avg_sd", "Overall_sd"} <= set(table.columns)
    claims = pd.read_csv(project / "data/test/08_reporting/claims_verdicts.csv")
    assert set(claims["verdict"]) <= {"holds", "reversed", "no difference at 95%", "not run"}
    assert (claims.loc[claims["worse"] == "w/o CMR", "verdict"] == "not run").all()


def test_every_run_is_tracked_in_mlflow(project: Path):
    db = project / "data/test/mlflow.db"
    assert db.exists()
    with sqlite3.connect(db) as con:
        runs = con.execute("select count(*) from runs").fetchone()[0]
        metrics = {row[0] for row in con.execute("select distinct key from metrics")}
        params = con.execute("select count(*) from params").fetchone()[0]
    assert runs >= 1 and params > 0
    assert any(k.startswith("answer_prior") for k in metrics), sorted(metrics)[:20]


def test_evaluation_uses_one_mask_table_and_nested_child_runs(project: Path):
    masks = _read(project, "data/test/05_model_input/missing_masks.parquet")
    results = _read(project, "data/test/07_model_output/evaluation_results.parquet")
    assert {"setting", "missing_rate", "video_id", "missing"} <= set(masks.columns)
    # at rate 1.0 every test video misses the modality; nested rates: 0.5-set inside 1.0-set
    audio = masks[masks["setting"] == "audio_missing"]
    assert audio.loc[audio["missing_rate"] == 1.0, "missing"].all()
    half = set(audio.loc[(audio["missing_rate"] == 0.5) & audio["missing"], "video_id"])
    assert 0 < len(half) < audio["video_id"].nunique()
    assert results["method"].nunique() >= 2
    with sqlite3.connect(project / "data/test/mlflow.db") as con:
        children = con.execute(
            "select count(distinct run_uuid) from tags where key = 'mlflow.parentRunId'"
        ).fetchone()[0]
        methods = {r[0] for r in con.execute("select value from tags where key = 'method'")}
        # grouping the child runs by method / seed / setting / rate is one click: params too
        keyed = con.execute(
            "select count(distinct run_uuid) from params where key in "
            "('method', 'seed', 'setting', 'missing_rate') and run_uuid in "
            "(select run_uuid from tags where key = 'mlflow.parentRunId')"
        ).fetchone()[0]
        seeds = {r[0] for r in con.execute("select value from params where key = 'seed'")}
    assert children >= 2 * len(methods) >= 4, (children, methods)
    assert keyed == children and {"42", "7"} <= seeds


def test_the_test_environment_leaves_the_base_paths_alone(project: Path):
    """``--env=test`` writes under data/test/ and tracks into data/test/mlflow.db only."""
    outside = [
        str(p.relative_to(project)) for p in (project / "data").rglob("*")
        if p.is_file() and not p.is_relative_to(project / "data/test")
    ]  # fmt: skip
    assert not outside, f"the test env wrote base paths: {outside[:10]}"
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()
    assert (project / "data/test/mlflow.db").is_file()


def test_one_variant_trains_alone_through_its_namespace(project: Path):
    """`kedro run --pipelines=variants --namespaces=zero_fill` runs that variant's node only."""
    import os
    import subprocess
    import sys

    target = project / "data/test/06_models/variants/zero_fill.pt"
    before = target.stat().st_mtime_ns
    other = (project / "data/test/06_models/variants/oracle.pt").stat().st_mtime_ns
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--env=test", "--pipelines=variants",
         "--namespaces=zero_fill"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "zero_fill.train_variant" in res.stdout + res.stderr
    assert target.stat().st_mtime_ns > before  # retrained (resumed) and saved
    assert (project / "data/test/06_models/variants/oracle.pt").stat().st_mtime_ns == other
