"""End to end, offline, on the AVQA path: ``kedro run --env=test
--params="dataset.embedded.answer_format=multiple_choice"`` in a throw-away project copy.

The embedded generator writes its questions as AVQA-format 4-way multiple choice, the AVQA
parser reads them, the ChoiceDecoder answers them, and evaluate reports AVQA's breakdown (per
question type and relation) next to the paper's AVQA column, in files and MLflow child runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from r2scp_pipeline.multiple_choice import QUESTION_TYPES
from r2scp_pipeline.tensors import frame_to_padded
from tests.conftest import ONE_PATH_EVALUATION, make_project_copy, run_pipelines

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = make_project_copy(tmp_path_factory.mktemp("avqa") / "project")
    old = Path.cwd()
    os.chdir(root)
    try:
        params = {"dataset.embedded.answer_format": "multiple_choice", **ONE_PATH_EVALUATION}
        run_pipelines(root, None, params)
    finally:
        os.chdir(old)
    return root


def _read(project: Path, rel: str) -> pd.DataFrame:
    return pd.read_parquet(project / "data/test" / rel)


def test_the_generator_wrote_avqa_files_and_ingestion_read_them(project: Path):
    raw = project / "data/test/01_raw/embedded/multiple_choice"
    records = json.loads((raw / "train_qa.json").read_text())
    assert {"id", "video_name", "video_id", "question_text", "multi_choice", "answer",
            "question_relation", "question_type"} == set(records[0])  # fmt: skip
    assert (raw / "val_qa.json").is_file()
    qa = _read(project, "02_intermediate/qa_pairs.parquet")
    assert list(qa.columns)[-2:] == ["choices", "choice_idx"]
    assert set(qa["split"]) == {"train", "val", "test"}
    assert all(len(c) == 4 for c in qa["choices"])
    assert (
        qa["answer"] == [c[i] for c, i in zip(qa["choices"], qa["choice_idx"], strict=True)]
    ).all()
    assert set(qa["subtype"]) <= set(QUESTION_TYPES)
    assert set(qa["modality"]) == {"Audio", "Visual", "Both"}
    ids, _, mask = frame_to_padded(_read(project, "04_feature/question_features.parquet"))
    assert {c for cs in qa["choices"] for c in cs} <= set(ids)  # candidates were encoded
    assert mask.any(axis=1).all()


def test_the_model_scores_four_candidates(project: Path):
    path = next((project / "data/test/06_models").rglob("r2scp_model.pt"))
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["config"]["answer_format"] == "choices" and ckpt["config"]["n_answers"] == 4
    preds = _read(project, "07_model_output/evaluation_predictions.parquet")
    assert set(preds["pred_idx"]) <= {0, 1, 2, 3} and set(preds["benchmark"]) == {"avqa"}


def test_results_are_reported_avqa_style_next_to_the_papers_column(project: Path):
    table = pd.read_csv(project / "data/test/08_reporting/results_table.csv")
    types = [c for c in QUESTION_TYPES if c in table.columns]
    assert len(types) >= 4, list(table.columns)
    assert {"Audio", "Visual", "Both", "Overall", "paper AVQA"} <= set(table.columns)
    r2 = table[table["method"] == "R2ScP"].set_index("setting")
    assert r2.loc["complete", "paper AVQA"] == 90.64  # the paper's number, labelled as such
    values = table[types + ["Overall"]].to_numpy(dtype=float)
    assert np.nanmin(values) >= 0 and np.nanmax(values) <= 100
    md = (project / "data/test/08_reporting/results_table.md").read_text()
    assert "AVQA-style multiple choice" in md
    assert (project / "data/test/08_reporting/accuracy_vs_missing_rate.png").is_file()


def test_child_runs_carry_the_avqa_metrics(project: Path):
    with sqlite3.connect(project / "data/test/mlflow.db") as con:
        keys = {r[0] for r in con.execute(
            "select distinct key from metrics where run_uuid in "
            "(select run_uuid from tags where key = 'mlflow.parentRunId')")}  # fmt: skip
    assert {"acc/Overall", "paper/Avg", "acc/Both", "acc/Happening"} <= keys, sorted(keys)
