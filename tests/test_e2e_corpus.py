"""End to end: the corpus study on the tiny ``test`` environment.

``kedro run --env=test --pipelines=corpus`` generates an 8-video external corpus, then
``kedro run --env=test --pipelines=dataset,features,build_index
--params=build_index.corpus.source=external`` builds the memory bank from it: every neighbour
of every dataset video is a corpus video, and retrieval quality is scored with the corpus'
instrument labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from r2scp_pipeline.tensors import frame_to_tokens
from tests.conftest import TEST_DATA, make_project_copy, run_pipelines

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = make_project_copy(tmp_path_factory.mktemp("corpus_study") / "project")
    old = Path.cwd()
    os.chdir(project)
    try:
        run_pipelines(project, ["corpus"])
        run_pipelines(project, ["dataset", "features", "build_index"],
                      {"build_index.corpus.source": "external"})  # fmt: skip
    finally:
        os.chdir(old)
    return project


def _read(project: Path, rel: str) -> pd.DataFrame:
    return pd.read_parquet(project / TEST_DATA / rel)


def test_the_corpus_pipeline_writes_the_external_corpus_entries(project: Path):
    audio = _read(project, "01_raw/external_corpus/audio_features.parquet")
    visual = _read(project, "01_raw/external_corpus/visual_features.parquet")
    meta = _read(project, "01_raw/external_corpus/scene_metadata.parquet")
    ids = [f"corpus_{i:08d}" for i in range(1, 9)]
    assert sorted(audio["video_id"].unique()) == sorted(visual["video_id"].unique()) == ids
    assert sorted(meta["video_id"]) == ids and all(len(x) for x in meta["instruments"])
    report = json.loads((project / TEST_DATA / "01_raw/external_corpus/report.json").read_text())
    assert report["seed"] == 7 + 1000 and report["videos_encoded"] == 8
    # the same [T, S, D] as the dataset's features (build_index checks it too)
    for modality, ext in (("audio", audio), ("visual", visual)):
        own = _read(project, f"04_feature/{modality}_features.parquet")
        assert list(own.columns) == list(ext.columns)
        assert frame_to_tokens(own)[1].shape[1:] == frame_to_tokens(ext)[1].shape[1:]


def test_build_index_retrieves_only_corpus_videos(project: Path):
    bank = _read(project, "05_model_input/memory_bank_audio.parquet")
    assert set(bank["video_id"]) == {f"corpus_{i:08d}" for i in range(1, 9)}
    nb = _read(project, "05_model_input/neighbors.parquet")
    video_index = _read(project, "02_intermediate/video_index.parquet")
    assert set(nb["query_video_id"]) == set(video_index["video_id"])  # every dataset video
    assert nb["neighbor_video_id"].str.startswith("corpus_").all()
    emb = _read(project, "05_model_input/unified_embeddings.parquet")
    ext = emb[emb["source"] == "external_corpus"]
    assert set(ext["video_id"]) == set(bank["video_id"]) and ext["in_corpus"].all()
    assert not emb.loc[emb["source"] == "dataset", "in_corpus"].any()


def test_retrieval_quality_uses_the_corpus_labels(project: Path):
    quality = pd.read_csv(project / TEST_DATA / "08_reporting/retrieval_quality.csv")
    assert (quality["n_pairs"] > 0).all(), quality


def test_the_default_pipeline_leaves_the_corpus_out(project: Path):
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    assert "corpus" in pipelines
    corpus_nodes = {n.name for n in pipelines["corpus"].nodes}
    assert corpus_nodes == {"generate_corpus", "extract_corpus_features", "corpus_metadata",
                            "corpus_report"}  # fmt: skip
    assert not corpus_nodes & {n.name for n in pipelines["__default__"].nodes}
