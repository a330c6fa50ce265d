"""Tests of the AVQA-format parser (``pipelines/dataset/avqa_ingestion.py``) and of the
``dataset`` nodes on AVQA files (``dataset.source: avqa``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from r2scp_pipeline.multiple_choice import QUESTION_TYPES
from r2scp_pipeline.pipelines.dataset.avqa_ingestion import (
    avqa_manifest_rows,
    hold_out_val,
    parse_record,
    parse_split,
)
from r2scp_pipeline.pipelines.dataset.ingestion import AnnotationError
from r2scp_pipeline.pipelines.dataset.nodes import (
    answer_prior_report,
    generate_embedded_dataset,
    ingest_annotations,
)

FIXTURES = Path(__file__).parent / "fixtures" / "avqa_mini"

GOOD: dict[str, Any] = {
    "id": 7,
    "video_name": "-2poGMEmbbk_000098",
    "video_id": 75,
    "question_text": "What is the man in the video doing? ",
    "multi_choice": ["singing", "playing the drum", "cooking", "typing"],
    "answer": 1,
    "question_relation": "Both",
    "question_type": "Happening",
}


def _write(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _params(annotations_dir: Path, **avqa: Any) -> dict[str, Any]:
    block = {"annotations_dir": str(annotations_dir), "media_dir": None,
             "files": {"train": "train_qa.json", "val": None, "test": "val_qa.json"},
             "val_fraction": 0.25, **avqa}  # fmt: skip
    return {"source": "avqa", "protocol": None, "avqa": block}


# ---- one record ------------------------------------------------------------------------------


def test_a_good_record_becomes_a_qa_pairs_row_with_its_choices():
    row = parse_record(GOOD, "train_qa.json", 0, "train")
    assert row["question_id"] == 7 and row["video_id"] == "-2poGMEmbbk_000098"
    assert row["question"] == row["template"] == "What is the man in the video doing?"
    assert row["choices"] == ["singing", "playing the drum", "cooking", "typing"]
    assert row["choice_idx"] == 1 and row["answer"] == "playing the drum"
    assert (row["modality"], row["subtype"]) == ("Both", "Happening")
    assert row["answer_idx"] == -1  # not one of MUSIC-AVQA's 42 answers
    assert parse_record({**GOOD, "answer": "3"}, "f", 0, "train")["answer"] == "typing"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"multi_choice": ["a", "b", "c"]}, "multi_choice", "3 item(s)"),
        ({"multi_choice": ["a", "b", "c", "d", "e"]}, "multi_choice", "5 item(s)"),
        ({"multi_choice": "a, b, c, d"}, "multi_choice", "list of 4"),
        ({"multi_choice": ["a", "", "c", "d"]}, "multi_choice", "candidate 1"),
        ({"multi_choice": ["a", "b", "   ", "d"]}, "multi_choice", "candidate 2"),
        ({"multi_choice": ["a", "b", None, "d"]}, "multi_choice", "candidate 2"),
        ({"answer": 4}, "answer", "outside 0..3"),
        ({"answer": -1}, "answer", "outside 0..3"),
        ({"answer": True}, "answer", "integer"),
        ({"answer": "b"}, "answer", "integer"),
        ({"question_type": "What"}, "question_type", "unknown question type"),
        ({"question_text": " "}, "question_text", "non-empty"),
        ({"question_relation": ""}, "question_relation", "non-empty"),
        ({"video_name": "a/b"}, "video_name", "without '/'"),
        ({"id": 1.5}, "id", "integer"),
    ],
)
def test_a_bad_record_names_file_record_and_field(change, field, words):
    with pytest.raises(AnnotationError) as err:
        parse_record({**GOOD, **change}, "train_qa.json", 5, "train")
    message = str(err.value)
    assert message.startswith("train_qa.json, record 5, field '" + field + "'"), message
    assert words in message, message
    assert err.value.field == field and err.value.index == 5


@pytest.mark.parametrize("field", ["id", "video_name", "video_id", "question_text", "multi_choice",
                                   "answer", "question_relation", "question_type"])  # fmt: skip
def test_every_field_is_required(field):
    record = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(AnnotationError, match=f"record 0, field '{field}': missing field"):
        parse_record(record, "val_qa.json", 0, "test")


# ---- one file --------------------------------------------------------------------------------


def test_the_fixture_parses_with_every_question_type():
    train = parse_split(FIXTURES / "train_qa.json", "train")
    test = parse_split(FIXTURES / "val_qa.json", "test")
    assert (train.n_records, len(train.questions), len(train.video_ids)) == (12, 12, 6)
    assert (len(test.questions), len(test.video_ids)) == (4, 2)
    assert {q["subtype"] for q in train.questions} == set(QUESTION_TYPES)
    assert {q["modality"] for q in train.questions + test.questions} == {"Audio", "Visual", "Both"}
    assert all(len(q["choices"]) == 4 and q["answer"] == q["choices"][q["choice_idx"]]
               for q in train.questions)  # fmt: skip
    assert train.questions[2]["choice_idx"] == 2  # written as "2"


def test_a_duplicate_id_names_both_records(tmp_path):
    path = _write(tmp_path / "train_qa.json", [GOOD, {**GOOD, "question_text": "Other?"}])
    with pytest.raises(
        AnnotationError, match=r"record 1, field 'id': id 7 already used by record 0"
    ):
        parse_split(path, "train")


def test_one_video_name_with_two_video_ids_is_an_error(tmp_path):
    other = {**GOOD, "id": 8, "video_id": 76}
    path = _write(tmp_path / "train_qa.json", [GOOD, other])
    with pytest.raises(AnnotationError, match=r"record 1, field 'video_id'.*75"):
        parse_split(path, "train")
    other = {**GOOD, "id": 8, "video_name": "zzz_000001"}
    path = _write(tmp_path / "train_qa.json", [GOOD, other])
    with pytest.raises(AnnotationError, match=r"record 1, field 'video_name'"):
        parse_split(path, "train")


def test_a_file_that_is_not_a_list_is_an_error(tmp_path):
    path = _write(tmp_path / "train_qa.json", {"questions": []})
    with pytest.raises(AnnotationError, match="expected a JSON list"):
        parse_split(path, "train")


# ---- held-out val ----------------------------------------------------------------------------


def test_val_is_held_out_by_video_and_deterministically():
    parsed = [parse_split(FIXTURES / "train_qa.json", "train"),
              parse_split(FIXTURES / "val_qa.json", "test")]  # fmt: skip
    out = hold_out_val(parsed, 0.25)
    assert [p.split for p in out] == ["train", "val", "test"]
    train, val, test = out
    assert val.video_ids and not set(val.video_ids) & set(train.video_ids)
    assert sorted(train.video_ids + val.video_ids) == sorted(parsed[0].video_ids)
    assert all(q["split"] == "val" and q["video_id"] in val.video_ids for q in val.questions)
    assert len(train.questions) + len(val.questions) == 12
    again = hold_out_val([parse_split(FIXTURES / "train_qa.json", "train")], 0.25)
    assert again[1].video_ids == val.video_ids
    assert hold_out_val(parsed, 0.0) == sorted(parsed, key=lambda p: p.split != "train")
    with pytest.raises(ValueError, match="val_fraction"):
        hold_out_val(parsed, 1.0)


# ---- the dataset nodes on AVQA files ----------------------------------------------------------


def test_source_avqa_ingests_the_release_into_qa_pairs(tmp_path):
    params = _params(FIXTURES)
    manifest = generate_embedded_dataset(params, 0)
    assert list(manifest["split"]) == ["train", "test"]
    qa, videos, scenes, metrics, report = ingest_annotations(params, manifest)
    assert list(qa.columns)[-2:] == ["choices", "choice_idx"]
    assert set(qa["split"]) == {"train", "val", "test"} and len(qa) == 16
    assert (
        qa["answer"] == [c[i] for c, i in zip(qa["choices"], qa["choice_idx"], strict=True)]
    ).all()
    assert report["protocol"] == "official" and len(videos) == 8
    assert all(len(x) == 0 for x in scenes["instruments"])  # AVQA has no instrument labels
    assert metrics["type.Both.Which"]["value"] == 4.0
    saved = tmp_path / "qa.parquet"
    qa.to_parquet(saved)  # the catalog's ParquetDataset round trip
    back = pd.read_parquet(saved)
    assert [list(c) for c in back["choices"]] == [list(c) for c in qa["choices"]]
    table, prior = answer_prior_report(qa)
    assert set(table["level"]) == {"overall", "modality", "type"}
    assert 0 <= prior["overall"]["value"] <= 100


def test_the_answer_prior_picks_the_most_frequent_candidate_of_the_type(tmp_path):
    qa, *_ = ingest_annotations(_params(FIXTURES, val_fraction=0.0),
                                generate_embedded_dataset(_params(FIXTURES), 0))  # fmt: skip
    table, _ = answer_prior_report(qa)
    rows = table.set_index("group")
    # test 101 (Both/Which) lists "a drum" first, but "a car engine" was right once in training
    # (Both/Which) and "a drum" never: the prior picks "a car engine", which is right
    assert rows.loc["Both/Which", "n_correct"] == 1
    # test 102 (Both/Happening): no candidate was ever a training answer: the first one is
    # picked, and it is the right one
    assert rows.loc["Both/Happening", "n_correct"] == 1
    # test 104 (Audio/When): "all the time" was right in training but is not right here
    assert rows.loc["Audio/When", "n_correct"] == 0


def test_avqa_parameters_name_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="dataset.avqa.annotations_dir is not set"):
        avqa_manifest_rows({"annotations_dir": None})
    with pytest.raises(ValueError, match="is not a directory"):
        avqa_manifest_rows({"annotations_dir": str(tmp_path / "nope")})
    shutil.copy(FIXTURES / "train_qa.json", tmp_path / "train_qa.json")
    with pytest.raises(ValueError, match=r"dataset.avqa.files.test='val_qa.json'"):
        avqa_manifest_rows(_params(tmp_path)["avqa"])
    rows = avqa_manifest_rows({**_params(tmp_path)["avqa"], "files": {"train": "train_qa.json"}})
    assert [(r["split"], r["n_records"]) for r in rows] == [("train", 12)]


def test_a_bad_record_stops_ingestion_naming_the_file(tmp_path):
    records = json.loads((FIXTURES / "train_qa.json").read_text())
    records[3]["multi_choice"] = records[3]["multi_choice"][:3]
    _write(tmp_path / "train_qa.json", records)
    shutil.copy(FIXTURES / "val_qa.json", tmp_path / "val_qa.json")
    params = _params(tmp_path)
    with pytest.raises(AnnotationError, match=r"train_qa.json, record 3, field 'multi_choice'"):
        ingest_annotations(params, generate_embedded_dataset(params, 0))


def test_an_id_in_both_files_is_an_error(tmp_path):
    shutil.copy(FIXTURES / "train_qa.json", tmp_path / "train_qa.json")
    records = json.loads((FIXTURES / "val_qa.json").read_text())
    records[0]["id"] = 5
    _write(tmp_path / "val_qa.json", records)
    params = _params(tmp_path)
    with pytest.raises(AnnotationError, match=r"val_qa.json, record 0, field 'question_id'.*5"):
        ingest_annotations(params, generate_embedded_dataset(params, 0))


def test_an_unknown_embedded_answer_format_names_the_parameter():
    from r2scp_pipeline.pipelines.dataset.nodes import multiple_choice_source

    params = {"source": "embedded", "embedded": {"answer_format": "choices"}}
    with pytest.raises(ValueError, match="dataset.embedded.answer_format is 'choices'"):
        multiple_choice_source(params)
    assert multiple_choice_source({**params, "embedded": {"answer_format": "multiple_choice"}})
    assert not multiple_choice_source({"source": "music_avqa"})
