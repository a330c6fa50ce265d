"""``scripts/corpus_study.py`` (the Table-4 comparison) and its docs block, on copies of the
committed default reference run standing in for both memory banks (no kedro run here)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study, render_docs = _module("corpus_study"), _module("render_docs")


def _run_folder(dest: Path, source: str, commit: str) -> Path:
    shutil.copytree(ROOT / "docs/results/default", dest)
    run = json.loads((dest / "run.json").read_text())
    run["commit"] = commit
    run["parameters"]["build_index"]["corpus"]["source"] = source
    (dest / "run.json").write_text(json.dumps(run))
    return dest


def test_compare_reads_both_runs_and_the_docs_block_renders_them(tmp_path):
    results = tmp_path / "docs/results"
    ref = _run_folder(results / "default", "train_split", "a" * 40)
    ext = _run_folder(results / "corpus_study", "external", "a" * 40)
    (ext / "corpus_report.json").write_text(json.dumps({"videos_encoded": 5}))
    out = study.compare(ref, ext)
    assert out["same_commit"] and [r["corpus_source"] for r in out["rows"]] == ["train_split", "external"]
    r2scp = out["rows"][0]["accuracy"]["R2ScP"]
    assert r2scp["mean"] == pytest.approx((r2scp["audio_missing"] + r2scp["visual_missing"]) / 2)
    assert out["rows"][1]["external_corpus"] == {"videos_encoded": 5}
    assert set(out["rows"][0]["retrieval_test"]) == {"a2v_pos", "a2v_random", "v2a_pos", "v2a_random"}

    block = "<!-- BEGIN GENERATED corpus_study -->\n<!-- END GENERATED corpus_study -->\n"
    assert "Not measured yet" in render_docs.render_text(block, tmp_path)
    (results / "corpus_study.json").write_text(json.dumps(out))
    text = render_docs.render_text(block, tmp_path)
    assert "training split (in-domain)" in text and "external: generated corpus" in text
    assert "different commits" not in text
    out["same_commit"] = False
    (results / "corpus_study.json").write_text(json.dumps(out))
    assert "different commits" in render_docs.render_text(block, tmp_path)


def test_a_missing_result_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="results_table.csv is missing"):
        study.summarise(tmp_path, "x")
