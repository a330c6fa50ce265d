"""Tests of the official-format parser (``pipelines/dataset/ingestion.py``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from r2scp_pipeline import avqa
from r2scp_pipeline.pipelines.dataset.ingestion import (
    AnnotationError,
    check_across_splits,
    derive_instruments,
    fill_placeholders,
    find_placeholders,
    parse_record,
    parse_split,
    read_scenes,
)
from tests.conftest import SHARED_REFERENCE

FIXTURES = Path(__file__).parent / "fixtures" / "music_avqa_mini"

GOOD: dict[str, Any] = {
    "video_id": "00000093",
    "question_id": 12,
    "type": '["Audio", "Comparative"]',
    "question_content": "Is the <Object> louder than the <Object>?",
    "templ_values": '["violin", "piano"]',
    "question_deleted": 0,
    "anser": "yes",
}


def _write(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


# ---- placeholders ----------------------------------------------------------------------------


def test_placeholders_are_filled_in_order_for_every_kind():
    content = "<Object> <LR> <FL> <LL> <TH> <BA> <LRer> <Object>"
    assert find_placeholders(content) == [
        "<Object>", "<LR>", "<FL>", "<LL>", "<TH>", "<BA>", "<LRer>", "<Object>"
    ]  # fmt: skip
    values = ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert fill_placeholders(content, values) == "a b c d e f g h"
    # <LRer> must not be read as <LR> followed by "er>"
    assert fill_placeholders("the <LRer> one", ["leftest"]) == "the leftest one"


def test_every_official_template_has_only_known_placeholders():
    for _, _, template in avqa.TEMPLATES:
        n = len(find_placeholders(template))
        assert n == template.count("<"), template


# ---- the hand-written fixture ----------------------------------------------------------------


def test_fixture_train_split_is_parsed():
    p = parse_split(FIXTURES / "avqa-train.json", "train")
    assert p.n_records == 12 and p.n_deleted == 1 and len(p.questions) == 11
    assert p.video_ids == ["00000001", "00000002", "00000003"]  # the withdrawn one's video kept
    by_id = {q["question_id"]: q for q in p.questions}
    assert 104 not in by_id  # withdrawn
    q = by_id[101]  # template with a trailing space
    assert q["template"] == "What kind of instrument is the <LRer> instrument?"
    assert q["question"] == "What kind of instrument is the leftest instrument?"
    assert q["modality"] == "Visual" and q["subtype"] == "Location"
    assert q["answer"] == "violin" and q["answer_idx"] == avqa.ANSWERS.index("violin")
    q = by_id[103]  # the full-width question mark is kept, as in avqa.TEMPLATES
    assert q["template"] == "How many sounding <Object> in the video\uff1f"
    assert q["question"] == "How many sounding guzheng in the video\uff1f"
    assert by_id[105]["question"] == "Is the first sound coming from the left instrument?"
    assert by_id[107]["question"] == "Which instrument makes sounds after the cello?"
    assert by_id[100]["templ_values"] == '["violin", "piano"]'  # as in the source
    assert all((q["modality"], q["subtype"], q["template"]) in avqa.TEMPLATES for q in p.questions)


def test_native_lists_are_accepted_for_type_and_templ_values(tmp_path):
    rec = dict(GOOD, type=["Audio", "Comparative"], templ_values=["violin", "piano"])
    p = parse_split(_write(tmp_path / "avqa-val.json", [rec]), "val")
    assert p.questions[0]["templ_values"] == '["violin", "piano"]'
    assert p.questions[0]["question"] == "Is the violin louder than the piano?"


def test_withdrawn_records_are_not_validated_beyond_their_ids(tmp_path):
    rec = {"video_id": "v1", "question_deleted": 1, "anser": "maybe"}
    p = parse_split(_write(tmp_path / "avqa-val.json", [GOOD, rec]), "val")
    assert p.n_deleted == 1 and len(p.questions) == 1 and p.video_ids == ["00000093", "v1"]


# ---- malformed input: errors name the file, the record and the field -------------------------

MALFORMED = [
    ("missing video_id", {"video_id": None}, "video_id", "missing field"),
    ("missing question_deleted", {"question_deleted": None}, "question_deleted", "missing field"),
    ("missing anser", {"anser": None}, "anser", "missing field"),
    ("missing templ_values", {"templ_values": None}, "templ_values", "missing field"),
    ("missing type", {"type": None}, "type", "missing field"),
    ("answer outside vocabulary", {"anser": "maybe"}, "anser", "42-answer vocabulary"),
    ("answer case differs", {"anser": "Yes"}, "anser", "42-answer vocabulary"),
    ("type not JSON", {"type": "Audio, Comparative"}, "type", "JSON list"),
    ("type not a list", {"type": '"Audio"'}, "type", "JSON list"),
    ("type three items", {"type": '["Audio", "Comparative", "x"]'}, "type", "two-item"),
    ("unknown modality", {"type": '["Smell", "Comparative"]'}, "type", "unknown question type"),
    ("unknown pair", {"type": '["Visual", "Temporal"]'}, "type", "unknown question type"),
    ("too few values", {"templ_values": '["violin"]'}, "templ_values", "1 value(s)"),
    ("too many values", {"templ_values": '["a", "b", "c"]'}, "templ_values", "3 value(s)"),
    ("values not JSON", {"templ_values": "[violin, piano]"}, "templ_values", "JSON list"),
    ("values not strings", {"templ_values": "[1, 2]"}, "templ_values", "non-empty strings"),
    ("question_id a string", {"question_id": "12"}, "question_id", "integer"),
    ("deleted flag 2", {"question_deleted": 2}, "question_deleted", "0 or 1"),
    ("video_id an int", {"video_id": 93}, "video_id", "non-empty string"),
    ("unknown placeholder", {"question_content": "Is the <Thing> loud?", "templ_values": "[]"},
     "question_content", "unknown placeholder"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_record_is_reported_with_file_record_and_field(tmp_path, change, field, message):
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = _write(tmp_path / "avqa-train.json", [GOOD, dict(GOOD, question_id=13), bad])
    with pytest.raises(AnnotationError) as info:
        parse_split(path, "train")
    text = str(info.value)
    assert str(path) in text and "record 2" in text and f"field '{field}'" in text, text
    assert message in text, text
    assert info.value.index == 2 and info.value.field == field


def test_bad_json_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "avqa-val.json"
    path.write_text('[\n{"video_id": "1",\n "question_id": }\n]', encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"avqa-val\.json: not valid JSON \(line 3"):
        parse_split(path, "val")


@pytest.mark.parametrize("content", ['{"video_id": "1"}', '"text"', "3"])
def test_top_level_must_be_a_list(tmp_path, content):
    path = tmp_path / "avqa-val.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AnnotationError, match="expected a JSON list of question records"):
        parse_split(path, "val")


def test_record_must_be_an_object(tmp_path):
    with pytest.raises(AnnotationError, match="record 1: expected a JSON object"):
        parse_split(_write(tmp_path / "avqa-val.json", [GOOD, ["not", "a", "record"]]), "val")


def test_duplicate_question_id_in_a_file(tmp_path):
    with pytest.raises(
        AnnotationError, match="record 1, field 'question_id'.*already used by record 0"
    ):
        parse_split(_write(tmp_path / "avqa-val.json", [GOOD, GOOD]), "val")


def test_video_in_two_splits_names_both_files(tmp_path):
    train = parse_split(_write(tmp_path / "avqa-train.json", [GOOD]), "train")
    val = parse_split(_write(tmp_path / "avqa-val.json", [dict(GOOD, question_id=99)]), "val")
    with pytest.raises(AnnotationError) as info:
        check_across_splits([train, val])
    text = str(info.value)
    assert "00000093" in text and str(tmp_path / "avqa-train.json") in text
    assert str(tmp_path / "avqa-val.json") in text and "'video_split'" in text
    check_across_splits([train, val], shared_videos=True)  # the official protocols allow it


@pytest.mark.parametrize("shared_videos", [False, True])
def test_question_id_reused_across_splits(tmp_path, shared_videos):
    train = parse_split(_write(tmp_path / "avqa-train.json", [GOOD]), "train")
    val = parse_split(_write(tmp_path / "avqa-val.json", [dict(GOOD, video_id="x")]), "val")
    with pytest.raises(AnnotationError, match="question_id 12 is also used in .*avqa-train.json"):
        check_across_splits([train, val], shared_videos=shared_videos)
    shared = parse_split(_write(tmp_path / "avqa-test.json", [GOOD]), "test")  # same video too
    with pytest.raises(AnnotationError, match="question_id 12 is also used"):
        check_across_splits([train, shared], shared_videos=True)


def test_parse_record_returns_none_row_for_withdrawn():
    vid, row = parse_record(dict(GOOD, question_deleted=1), "f.json", 0, "train")
    assert vid == "00000093" and row is None


# ---- scene metadata helpers ------------------------------------------------------------------


def test_derive_instruments_uses_objects_and_instrument_answers():
    p = parse_split(FIXTURES / "avqa-train.json", "train")
    by_video: dict[str, list[dict[str, Any]]] = {}
    for q in p.questions:
        by_video.setdefault(q["video_id"], []).append(q)
    assert derive_instruments(by_video["00000001"]) == ["piano", "violin"]
    assert derive_instruments(by_video["00000002"]) == ["erhu", "guzheng"]  # 104 withdrawn
    # "Is there a drum sound?" -> "no": drum is not evidence; "flute" answer is
    assert derive_instruments(by_video["00000003"]) == ["cello", "flute"]


def test_read_scenes_accepts_the_generator_form_a_list_or_an_object(tmp_path):
    scene = {"split": "train", "visible": ["violin", "piano", "violin"], "sounding": ["piano"]}
    generator_form = {
        "generator": {"seed": 1},
        "videos": [{"video_id": "v1", **scene, "instruments": [{"class": "piano"}]}],
    }
    as_list = [{"video_id": "v1", **scene}]
    as_object = {"v1": scene}
    for i, data in enumerate([generator_form, as_list, as_object]):
        scenes = read_scenes(_write(tmp_path / f"scenes{i}.json", data))
        assert scenes == {"v1": scene}  # lists as given: left to right, repeats kept


@pytest.mark.parametrize(
    ("scene", "message"),
    [
        ({"visible": [], "sounding": []}, "field 'split': missing"),
        ({"split": "dev", "visible": [], "sounding": []}, "unknown split 'dev'"),
        ({"split": "train", "sounding": []}, "field 'visible': missing"),
        ({"split": "train", "visible": ["kazoo"], "sounding": []}, "unknown instrument"),
        ({"split": "train", "visible": "piano", "sounding": []}, "list of strings"),
    ],
)
def test_read_scenes_errors(tmp_path, scene, message):
    path = _write(tmp_path / "scenes.json", {"v1": scene})
    with pytest.raises(AnnotationError, match=message):
        read_scenes(path)


# ---- the real MUSIC-AVQA val split (shared reference, when present) --------------------------

README_COUNTS = {
    ("Audio", "Counting"): 511,
    ("Audio", "Comparative"): 295,
    ("Visual", "Counting"): 600,
    ("Visual", "Location"): 613,
    ("Audio-Visual", "Existential"): 495,
    ("Audio-Visual", "Counting"): 633,
    ("Audio-Visual", "Location"): 461,
    ("Audio-Visual", "Comparative"): 549,
    ("Audio-Visual", "Temporal"): 411,
}


def test_real_val_split_reproduces_the_reference_counts():
    path = SHARED_REFERENCE / "avqa-val.json"
    if not path.is_file():
        pytest.skip(f"shared reference not available at {SHARED_REFERENCE}")
    p = parse_split(path, "val")
    assert len(p.questions) == 4568 and len(p.video_ids) == 3815 and p.n_deleted == 0
    counts = Counter((q["modality"], q["subtype"]) for q in p.questions)
    assert dict(counts) == README_COUNTS
    templates = {(q["modality"], q["subtype"], q["template"]) for q in p.questions}
    assert len(templates) == 33 and templates == set(avqa.TEMPLATES)
    assert len({q["answer"] for q in p.questions}) == 41
    assert not any("<" in q["question"] for q in p.questions)
    vocab = (SHARED_REFERENCE / "answers.txt").read_text(encoding="utf-8").split("\n")
    assert tuple(a for a in vocab if a) == avqa.ANSWERS
