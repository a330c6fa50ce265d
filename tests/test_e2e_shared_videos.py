"""End to end on official-format annotations whose splits share videos (split by question).

The hand-written fixture ``tests/pipelines/dataset/fixtures/music_avqa_shared`` (14 videos,
six of them with questions in several splits) with precomputed ``.npy`` features written here
(VGGish-like ``[60, 128]``, ResNet-18-like ``[60, 512]``) goes through ``kedro run``
(``--env=test`` sizes) under both split protocols: dataset -> features -> build_index ->
pretrain -> mix -> evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ONE_PATH_EVALUATION, make_project_copy, run_pipelines

pytestmark = pytest.mark.e2e

SHARED = Path(__file__).parent / "pipelines" / "dataset" / "fixtures" / "music_avqa_shared"
VIDEOS = [f"100000{i:02d}" for i in range(1, 15)]


def write_features(root: Path) -> dict[str, str]:
    """Official-shape ``<video_id>.npy`` files; returns the features parameters to read them."""
    rng = np.random.default_rng(0)
    for name, dim in (("vggish", 128), ("res18", 512)):
        (root / name).mkdir(parents=True)
        for vid in VIDEOS:
            x = rng.normal(size=(60, dim)).astype(np.float32)
            np.save(root / name / f"{vid}.npy", x)
    return {
        "features.audio.encoder": "precomputed",
        "features.audio.precomputed.dir": str(root / "vggish"),
        "features.visual.encoder": "precomputed",
        "features.visual.precomputed.dir": str(root / "res18"),
    }


@pytest.fixture(scope="module", params=["official", "video_disjoint"])
def run(request, tmp_path_factory) -> tuple[str, Path]:
    protocol = request.param
    tmp = tmp_path_factory.mktemp(f"shared_{protocol}")
    project = make_project_copy(tmp / "project")
    params = {
        "dataset.source": "music_avqa",
        "dataset.music_avqa.annotations_dir": str(SHARED),
        "dataset.protocol": protocol,
        **write_features(tmp / "features"),
        **ONE_PATH_EVALUATION,
    }
    old = Path.cwd()
    import os

    os.chdir(project)
    try:
        run_pipelines(project, None, params)  # __default__
    finally:
        os.chdir(old)
    return protocol, project


def _read(project: Path, rel: str) -> pd.DataFrame:
    return pd.read_parquet(project / rel)


def test_counts_corpus_and_no_self_retrieval(run):
    protocol, project = run
    qa = _read(project, "data/test/02_intermediate/qa_pairs.parquet")
    index = _read(project, "data/test/02_intermediate/video_index.parquet")
    nb = _read(project, "data/test/05_model_input/neighbors.parquet")
    bank = _read(project, "data/test/05_model_input/memory_bank_audio.parquet")
    report = json.loads((project / "data/test/08_reporting/split_protocol.json").read_text())
    assert report["protocol"] == protocol and set(nb["protocol"]) == {protocol}
    expected = {"official": {"train": 22, "val": 7, "test": 8},
                "video_disjoint": {"train": 14, "val": 5, "test": 8}}[protocol]  # fmt: skip
    assert qa["split"].value_counts().to_dict() == expected
    train_videos = set(qa.loc[qa["split"] == "train", "video_id"])
    # the memory bank is exactly the videos with training questions
    assert set(bank["video_id"]) == train_videos == set(index.loc[index["in_train"], "video_id"])
    assert set(nb["neighbor_video_id"]) <= train_videos
    assert (nb["query_video_id"] != nb["neighbor_video_id"]).all()  # never itself
    assert set(nb["query_video_id"]) == set(VIDEOS)
    # no video with only val/test questions is in the corpus
    held_out = set(qa["video_id"]) - train_videos
    assert held_out and not held_out & set(bank["video_id"])
    if protocol == "video_disjoint":
        assert (qa.groupby("video_id")["split"].nunique() == 1).all()
        assert not set(qa.loc[qa["split"] != "train", "video_id"]) & set(bank["video_id"])
        assert report["splits"]["train"]["questions_removed"] == 8
    else:
        assert (qa.groupby("video_id")["split"].nunique() > 1).sum() == 6
        shared_test = set(qa.loc[qa["split"] == "test", "video_id"]) & train_videos
        assert shared_test and shared_test <= set(bank["video_id"])


def test_joint_space_is_fit_on_corpus_videos_only(run):
    _, project = run
    import torch

    ckpt = torch.load(project / "data/test/06_models/joint_space.pt", weights_only=False)
    qa = _read(project, "data/test/02_intermediate/qa_pairs.parquet")
    assert sorted(ckpt["train_video_ids"]) == sorted(
        set(qa.loc[qa["split"] == "train", "video_id"])
    )


def test_trains_and_evaluates_per_test_video(run):
    protocol, project = run
    assert list((project / "data/test/06_models").rglob("r2scp_model.pt"))
    masks = _read(project, "data/test/05_model_input/missing_masks.parquet")
    qa = _read(project, "data/test/02_intermediate/qa_pairs.parquet")
    assert set(masks["video_id"]) == set(qa.loc[qa["split"] == "test", "video_id"])
    md = (project / "data/test/08_reporting/results_table.md").read_text()
    assert f"Split protocol: {protocol}" in md
    history = json.loads((project / "data/test/08_reporting/mix_history.json").read_text())
    assert history  # stage II ran
