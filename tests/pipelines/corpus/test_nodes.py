"""``corpus`` nodes on a tiny generated corpus (3 videos of 4 s, 32 px frames).

The corpus must be usable as build_index's external memory bank: prefixed ids that never equal
a dataset id, features of the dataset's ``[T, S, D]`` (same ``params:features``), instrument
labels for every encoded video, other scenes than the dataset's; bad parameters are named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from r2scp_pipeline.pipelines.corpus.nodes import (
    METADATA_COLUMNS,
    VIDEO_INDEX_COLUMNS,
    corpus_metadata,
    corpus_report,
    corpus_seed,
    extract_corpus_features,
    generate_corpus,
    generator_config,
)
from r2scp_pipeline.pipelines.dataset.generator import generate_dataset, load_scenes
from r2scp_pipeline.pipelines.features.nodes import extract_audio_features, extract_visual_features
from r2scp_pipeline.tensors import frame_to_tokens

from ..features.media import deep_merge

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SEED = 7
TINY = {"num_videos": 3, "seconds": 4, "frame_size": 32, "questions_per_video": [1, 2]}


def _base(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{name}.yml").read_text())


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def dataset_params(tmp: Path) -> dict[str, Any]:
    params = _base("dataset")["dataset"]
    params["embedded"] = {**params["embedded"], **TINY, "root": str(tmp / "embedded")}
    return params


@pytest.fixture(scope="module")
def corpus_params(tmp: Path) -> dict[str, Any]:
    return {**_base("corpus")["corpus"], "root": str(tmp / "corpus"), "num_videos": 3}


@pytest.fixture(scope="module")
def features_params() -> dict[str, Any]:
    small = {"num_threads": 1, "progress": False,
             "visual": {"efficientnet_lite0": {"input_size": 96, "batch_size": 16}}}  # fmt: skip
    return deep_merge(_base("features")["features"], small)


@pytest.fixture(scope="module")
def corpus(corpus_params, dataset_params, features_params) -> dict[str, Any]:
    index = generate_corpus(corpus_params, dataset_params, SEED)
    audio, visual, stats = extract_corpus_features(index, features_params)
    meta = corpus_metadata(corpus_params, index, audio)
    report = corpus_report(corpus_params, SEED, index, audio, visual, meta, stats)
    return {"index": index, "audio": audio, "visual": visual, "meta": meta, "report": report}


def test_ids_are_prefixed_and_paths_point_at_the_generated_media(corpus, corpus_params):
    index = corpus["index"]
    assert list(index.columns) == list(VIDEO_INDEX_COLUMNS)
    assert index["video_id"].tolist() == ["corpus_00000001", "corpus_00000002", "corpus_00000003"]
    assert index["generator_video_id"].tolist() == ["00000001", "00000002", "00000003"]
    root = Path(corpus_params["root"])
    for row in index.itertuples():
        assert Path(row.audio_path) == root / "audio" / f"{row.generator_video_id}.wav"
        assert Path(row.audio_path).is_file()
        assert len(list(Path(row.frames_dir).glob("*.jpg"))) == TINY["seconds"]
    assert set(corpus["audio"]["video_id"]) == set(index["video_id"]) == set(corpus["visual"]["video_id"])


def test_features_have_the_shape_of_the_dataset_features(corpus, dataset_params, features_params):
    """The features pipeline's own functions on the dataset's videos give the same [T, S, D]."""
    generate_dataset({k: v for k, v in dataset_params["embedded"].items() if k != "answer_format"},
                     SEED)  # fmt: skip
    root = Path(dataset_params["embedded"]["root"])
    ids = [s["video_id"] for s in load_scenes(root)]
    index = pd.DataFrame({"video_id": ids,
                          "audio_path": [str(root / "audio" / f"{v}.wav") for v in ids],
                          "frames_dir": [str(root / "frames" / v) for v in ids]})  # fmt: skip
    audio, _ = extract_audio_features(index, features_params)
    visual, _ = extract_visual_features(index, features_params)
    for own, ext in ((audio, corpus["audio"]), (visual, corpus["visual"])):
        assert list(ext.columns) == list(own.columns)
        assert frame_to_tokens(ext)[1].shape[1:] == frame_to_tokens(own)[1].shape[1:]
    assert not set(ids) & set(corpus["index"]["video_id"])  # never a dataset id


def test_scenes_differ_from_the_dataset_scenes(corpus, corpus_params, dataset_params):
    generate_dataset({k: v for k, v in dataset_params["embedded"].items() if k != "answer_format"},
                     SEED)  # fmt: skip
    ours = load_scenes(corpus_params["root"])
    theirs = load_scenes(dataset_params["embedded"]["root"])
    assert [s["instruments"] for s in ours] != [s["instruments"] for s in theirs]
    assert {s["split"] for s in ours} == {"train"}


def test_metadata_labels_every_encoded_video(corpus):
    meta = corpus["meta"]
    assert list(meta.columns) == list(METADATA_COLUMNS)
    assert meta["video_id"].tolist() == corpus["index"]["video_id"].tolist()
    for row in meta.itertuples():
        assert row.instruments == sorted(set(row.visible) | set(row.sounding))
        assert row.instruments and row.background in ("indoor", "outdoor")


def test_report_says_what_the_corpus_is(corpus, corpus_params):
    r = corpus["report"]
    assert r["seed"] == SEED + corpus_params["seed_offset"]
    assert r["videos_generated"] == r["videos_encoded"] == 3 and r["skipped_video_ids"] == []
    assert r["shapes"]["audio"][0] == r["shapes"]["visual"][0] == 10  # features.segments
    assert r["sound_source"] == "note_bank"


def test_generator_config_inherits_the_dataset_knobs(corpus_params, dataset_params):
    cfg = generator_config({**corpus_params, "embedded": {"indoor_prob": 0.0}}, dataset_params)
    assert cfg["seconds"] == 4 and cfg["frame_size"] == 32  # the dataset's media sizes
    assert cfg["indoor_prob"] == 0.0 and cfg["root"] == corpus_params["root"]
    assert cfg["split_fractions"] == {"train": 1.0, "val": 0.0, "test": 0.0}
    assert "answer_format" not in cfg and cfg["splits_sound_source"] == {}


@pytest.mark.parametrize(
    "over, match",
    [
        ({"seed_offset": 0}, r"^parameter corpus\.seed_offset must be an integer >= 1"),
        ({"id_prefix": ""}, r"corpus\.id_prefix must be a non-empty"),
        ({"id_prefix": "9"}, r"corpus\.id_prefix"),
        ({"num_videos": 0}, r"corpus\.num_videos must be an integer >= 1"),
        ({"sound_source": "/nope/font.sf2"}, r"corpus\.sound_source is '/nope/font\.sf2'"),
        ({"embedded": {"indoor_prb": 0.1}}, r"unknown parameter corpus\.embedded\.indoor_prb"),
        ({"embedded": {"root": "x"}}, r"corpus\.embedded\.root cannot be overridden.*corpus\.root"),
        ({"embedded": {"indoor_prob": 2.0}}, r"corpus generation failed.*indoor_prob.*corpus\.embedded"),
    ],
)
def test_bad_parameters_are_named(corpus_params, dataset_params, over, match, tmp_path):
    params = {**corpus_params, "root": str(tmp_path / "c"), **over}
    with pytest.raises(ValueError, match=match):
        generate_corpus(params, dataset_params, SEED)


def test_the_dataset_folder_is_refused(corpus_params, dataset_params):
    params = {**corpus_params, "root": dataset_params["embedded"]["root"]}
    with pytest.raises(ValueError, match=r"corpus\.root .* the dataset's own folder"):
        generate_corpus(params, dataset_params, SEED)


def test_seed_is_offset(corpus_params):
    assert corpus_seed(corpus_params, 42) == 42 + corpus_params["seed_offset"]


def test_precomputed_encoders_are_refused(corpus, features_params):
    params = deep_merge(features_params, {"visual": {"encoder": "precomputed"}})
    with pytest.raises(ValueError, match=r"features\.visual\.encoder is 'precomputed'"):
        extract_corpus_features(corpus["index"], params)
