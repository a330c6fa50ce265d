"""Split protocols on official-format files whose splits share videos (split by question).

Fixture ``fixtures/music_avqa_shared`` (hand-written, see fixtures/README.md): 14 videos, 37
kept questions (train 22, val 7, test 8) and one withdrawn training question on a test-only
video. Shared videos: 10000007-08 train+val, 10000009-10 train+test, 10000011 val+test,
10000012 train+val+test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from r2scp_pipeline.pipelines.dataset.ingestion import AnnotationError
from r2scp_pipeline.pipelines.dataset.nodes import generate_embedded_dataset, ingest_annotations
from r2scp_pipeline.splits import membership, videos_in
from tests.pipelines.dataset.test_nodes import music_params, values

SHARED = Path(__file__).parent / "fixtures" / "music_avqa_shared"
V = [f"100000{i:02d}" for i in range(1, 15)]  # V[0] = 10000001 ... V[13] = 10000014


def ingest(folder: Path, protocol: str | None) -> tuple[Any, ...]:
    params = music_params(folder) | {"protocol": protocol}
    qa, index, scenes, metrics, report = ingest_annotations(
        params, generate_embedded_dataset(params, 0)
    )
    return qa, index, scenes, values(metrics), report


def test_official_keeps_every_question_and_records_every_split_of_a_video():
    qa, index, scenes, metrics, report = ingest(SHARED, None)  # music_avqa default: official
    assert report["protocol"] == "official"
    assert qa["split"].value_counts().to_dict() == {"train": 22, "test": 8, "val": 7}
    assert len(index) == 14 and index["video_id"].is_unique and len(scenes) == 14
    splits = dict(zip(index["video_id"], index["splits"], strict=True))
    assert [splits[v] for v in V[6:12]] == [
        "train+val", "train+val", "train+test", "train+test", "val+test", "train+val+test"
    ]  # fmt: skip
    # 10000013: a withdrawn training record only -> annotated in train, no training question
    row = index.set_index("video_id").loc[V[12]]
    assert row["splits"] == "test" and row["annotated_splits"] == "train+test"
    assert not row["in_train"] and row["in_test"]
    assert videos_in(index, "train") == sorted(V[:10] + [V[11]])
    assert videos_in(index, "val") == sorted([V[6], V[7], V[10], V[11], V[13]])
    assert videos_in(index, "test") == sorted(V[8:13])
    # every split of every video is the set of splits it has questions in
    asked = qa.groupby("video_id")["split"].agg(set).to_dict()
    m = membership(index)
    for vid, row in m.iterrows():
        assert {s for s in ("train", "val", "test") if row[s]} == asked[vid]
    assert metrics["questions.train"] == 22 and metrics["questions.val"] == 7
    assert metrics["questions.test"] == 8 and metrics["questions.total"] == 37
    assert metrics["videos.train"] == 11 and metrics["videos.val"] == 5
    assert metrics["videos.test"] == 5 and metrics["videos.total"] == 14
    assert metrics["shared_videos.total"] == 6 and metrics["shared_videos.train_val_test"] == 1
    assert metrics["shared_videos.train_test"] == 2 and metrics["shared_videos.val_test"] == 1
    assert metrics["protocol.removed_questions.train"] == 0
    # per split, per type (counted by hand from the fixture)
    assert (
        metrics["split_type.train.Audio.Counting"] == 3
        and metrics["split_type.train.Visual.Location"] == 3
    )
    assert metrics["split_type.train.Audio-Visual.Location"] == 1
    assert (
        metrics["split_type.val.Audio.Counting"] == 1
        and metrics["split_type.val.Visual.Counting"] == 0
    )
    assert metrics["split_type.test.Audio-Visual.Comparative"] == 1
    assert (
        metrics["split_type.test.Audio.Comparative"] == 1
        and metrics["split_type.test.Visual.Location"] == 0
    )
    for split, n in (("train", 22), ("val", 7), ("test", 8)):
        assert sum(v for k, v in metrics.items() if k.startswith(f"split_type.{split}.")) == n
    assert report["splits"]["train"] == {
        "questions_annotated": 22, "questions_kept": 22, "questions_removed": 0,
        "videos_annotated": 12, "videos_kept": 11, "videos_removed": 0,
    }  # fmt: skip
    assert report["shared_videos"]["kept"] == {
        "train+test": 2, "train+val": 2, "train+val+test": 1, "val+test": 1
    }  # fmt: skip


def test_video_disjoint_gives_each_video_one_split_and_counts_what_it_removed():
    qa, index, scenes, metrics, report = ingest(SHARED, "video_disjoint")
    assert report["protocol"] == "video_disjoint"
    assert qa["split"].value_counts().to_dict() == {"train": 14, "test": 8, "val": 5}
    assert (qa.groupby("video_id")["split"].nunique() == 1).all()
    assert (index[["in_train", "in_val", "in_test"]].sum(axis=1) == 1).all()
    assert "+" not in "".join(index["splits"])
    assert videos_in(index, "train") == V[:6]  # only videos without a val/test question
    assert videos_in(index, "val") == [V[6], V[7], V[13]]
    assert videos_in(index, "test") == V[8:13]
    assert not set(videos_in(index, "train")) & set(qa.loc[qa["split"] != "train", "video_id"])
    assert metrics["protocol.removed_questions.train"] == 8
    assert metrics["protocol.removed_videos.train"] == 5
    assert metrics["protocol.removed_questions.val"] == 2
    assert metrics["protocol.removed_videos.val"] == 2
    assert metrics["protocol.removed_questions.test"] == 0
    assert metrics["shared_videos.total"] == 0
    assert (
        metrics["split_type.train.Audio.Counting"] == 2
        and metrics["split_type.train.Visual.Location"] == 2
    )
    assert report["splits"]["train"]["questions_removed"] == 8
    assert report["splits"]["val"]["videos_kept"] == 3
    assert report["shared_videos"]["kept"] == {} and len(report["shared_videos"]["annotated"]) == 4
    assert scenes["splits"].tolist() == index["splits"].tolist()


def test_video_split_protocol_refuses_shared_videos():
    with pytest.raises(AnnotationError, match="with dataset.protocol 'video_split'"):
        ingest(SHARED, "video_split")
    with pytest.raises(ValueError, match="dataset.protocol is 'by_video'; valid values"):
        ingest(SHARED, "by_video")


@pytest.mark.parametrize("only", ["val", "test"])
@pytest.mark.parametrize("protocol", [None, "video_disjoint"])
def test_one_split_alone_still_ingests(tmp_path, only, protocol):
    shutil.copy(SHARED / f"avqa-{only}.json", tmp_path / f"avqa-{only}.json")
    qa, index, _, metrics, report = ingest(tmp_path, protocol)
    n = {"val": 7, "test": 8}[only]
    assert len(qa) == n and set(qa["split"]) == {only} and index[f"in_{only}"].all()
    assert report["splits"][only]["questions_removed"] == 0 and set(report["splits"]) == {only}


def test_a_question_id_in_two_files_stays_an_error(tmp_path):
    for split in ("train", "val", "test"):
        shutil.copy(SHARED / f"avqa-{split}.json", tmp_path / f"avqa-{split}.json")
    path = tmp_path / "avqa-test.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    records[2]["question_id"] = 2001  # a val question's id
    path.write_text(json.dumps(records), encoding="utf-8")
    for protocol in ("official", "video_disjoint"):
        with pytest.raises(
            AnnotationError, match=r"avqa-test\.json, record 2, field 'question_id'.*2001"
        ):
            ingest(tmp_path, protocol)


def test_video_index_from_before_shared_videos_is_still_read():
    legacy = pd.DataFrame({"video_id": ["a", "b", "c"], "split": ["train", "val", "train+test"]})
    assert videos_in(legacy, "train") == ["a", "c"] and videos_in(legacy, "test") == ["c"]
    with pytest.raises(ValueError, match="video_index lacks the split columns"):
        membership(pd.DataFrame({"video_id": ["a"]}))
