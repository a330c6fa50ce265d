"""``r2scp-pipeline predict`` / ``kedro predict`` on a tiny trained project (``--env=test``).

The project copy is the session's (``conftest.kedro_project``): the pipelines up to ``train``
run once unless an earlier test (``test_e2e``) already trained the model there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from r2scp_pipeline.avqa import ANSWERS
from r2scp_pipeline.cli import cli

from .pipelines.features.media import tone, write_mp4

pytestmark = pytest.mark.e2e
QUESTION = "How many instruments are sounding in the video?"


@pytest.fixture(scope="module")
def project(kedro_project: Path, run_kedro) -> Path:
    if not (kedro_project / "data/test/06_models/r2scp_model.pt").exists():
        run_kedro(["dataset", "features", "build_index", "train"])
    return kedro_project


@pytest.fixture(scope="module")
def known_id(project: Path) -> str:
    qa = pd.read_parquet(project / "data/test/02_intermediate/qa_pairs.parquet")
    return str(qa.loc[qa["split"] == "test", "video_id"].iloc[0])


def predict(*args: str):
    return CliRunner().invoke(cli, ["predict", "--env", "test", *args])


def test_known_video_prints_an_answer_top5_router_and_neighbours(project, known_id):
    result = predict("--video-id", known_id, "--question", QUESTION)
    assert result.exit_code == 0, result.output
    out = result.stdout
    answer = next(ln for ln in out.splitlines() if ln.startswith("answer:")).split(":", 1)[1]
    assert answer.strip() in ANSWERS
    top = [ln.split() for ln in out.splitlines() if ln.startswith("  ") and "%" in ln]
    assert len(top) == 5 and all(a in ANSWERS for _, a in top)
    assert sum(float(p.rstrip("%")) for p, _ in top) <= 100.0 + 0.5  # rounding of 5 figures
    assert "router (alpha): audio" in out
    assert "  audio: " in out and "  visual: " in out  # complete: both directions


def test_json_parses_and_a_missing_modality_reports_its_neighbours(project, known_id):
    result = predict("--video-id", known_id, "-q", QUESTION, "--missing", "visual", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["video_id"] == known_id and out["missing"] == "visual"
    assert out["answer"] in ANSWERS and out["answer"] == out["top"][0]["answer"]
    probs = [t["probability"] for t in out["top"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert set(out["alpha"]) == {"audio", "visual", "text"}
    assert sum(out["alpha"].values()) == pytest.approx(1, abs=1e-5)
    nb = pd.read_parquet(project / "data/test/05_model_input/neighbors.parquet")
    expected = nb[(nb["query_video_id"] == known_id) & (nb["direction"] == "a2v")
                  & (nb["polarity"] == "pos")].sort_values("rank")["neighbor_video_id"]  # fmt: skip
    assert out["neighbors"] == {"visual": expected.tolist()[: out["n_retrieve"]]}


def test_a_trained_baseline_answers_with_its_own_model_and_recovery(project, known_id, run_kedro):
    """--method: a variant's model (params:seed) and its recovery, e.g. router masking."""
    if not (project / "data/test/06_models/variants/router_mask.pt").exists():
        run_kedro(["variants"])
    result = predict("--video-id", known_id, "-q", QUESTION, "--missing", "audio",
                     "--method", "router_mask", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha"]["audio"] == 0.0  # the missing expert is masked
    result = predict("--video-id", known_id, "-q", QUESTION, "--method", "no_cmr")
    assert result.exit_code == 1 and "has no model for seed" in result.stderr
    assert "--namespaces=no_cmr" in result.stderr


def test_a_new_mp4_goes_through_features_joint_space_and_faiss(project, tmp_path):
    video = Path(write_mp4(tmp_path / "clip.mp4", list(range(10)), fps=2, wave=tone(440, 10)))
    result = predict("--video", str(video), "-q", QUESTION, "--missing", "audio", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["video_id"] == "new:clip.mp4" and out["answer"] in ANSWERS
    train = pd.read_parquet(project / "data/test/02_intermediate/video_index.parquet")
    corpus = set(train.loc[train["in_train"], "video_id"])
    assert len(out["neighbors"]["audio"]) == out["n_retrieve"]
    assert set(out["neighbors"]["audio"]) <= corpus


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--video-id", "no_such_video", "-q", QUESTION], "unknown video id 'no_such_video'"),
        (["--video-id", "KNOWN", "-q", "   "], "--question is empty"),
        (["-q", QUESTION], "exactly one of --video-id"),
        (["--video", "MISSING_MP4", "-q", QUESTION], "no such file"),
        (["--video", "CORRUPT_MP4", "-q", QUESTION], "cannot open mp4, corrupt or truncated"),
        (["--video", "SILENT_MP4", "-q", QUESTION], "mp4 has no audio stream"),
    ],
)
def test_errors_exit_non_zero_with_one_line_naming_the_culprit(
    project, known_id, tmp_path, args, message
):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    subst = {"KNOWN": known_id, "MISSING_MP4": str(tmp_path / "absent.mp4"),
             "CORRUPT_MP4": str(corrupt), "SILENT_MP4": str(tmp_path / "no_audio.mp4")}  # fmt: skip
    if "SILENT_MP4" in args:
        write_mp4(tmp_path / "no_audio.mp4", list(range(10)), fps=2)
    result = predict(*[subst.get(a, a) for a in args])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    if "_MP4" in " ".join(args):  # the file is named
        assert subst[next(a for a in args if a.endswith("_MP4"))] in lines[0]


def test_missing_model_says_how_to_train_it(project, known_id):
    model = project / "data/test/06_models/r2scp_model.pt"
    aside = model.with_suffix(".pt.aside")
    model.rename(aside)
    try:
        result = predict("--video-id", known_id, "-q", QUESTION)
    finally:
        aside.rename(model)
    assert result.exit_code == 1
    assert "r2scp_model not found" in result.stderr
    assert "kedro run --pipelines=train" in result.stderr


def test_r2scp_pipeline_predict_is_dispatched_and_run_stays_kedro_run(project, known_id):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "r2scp_pipeline"]
    out = subprocess.run([*cmd, "predict", "--env", "test", "--video-id", known_id, "-q", QUESTION,
                          "--json"], cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] in ANSWERS  # stdout holds the JSON only
    run = subprocess.run([*cmd, "--help"], cwd=project, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "--pipelines" in run.stdout
