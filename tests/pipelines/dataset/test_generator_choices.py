"""Tests of the embedded generator's multiple-choice writer (``generator/choices.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from r2scp_pipeline import avqa
from r2scp_pipeline.multiple_choice import QUESTION_TYPES
from r2scp_pipeline.pipelines.dataset.avqa_ingestion import parse_split as parse_avqa
from r2scp_pipeline.pipelines.dataset.generator.choices import (
    FAMILY_OF,
    avqa_type,
    candidates,
    write_multiple_choice,
)
from r2scp_pipeline.pipelines.dataset.ingestion import parse_split

MUSIC = Path(__file__).parent / "fixtures" / "music_avqa_mini"


def test_every_answer_has_a_family_and_every_template_an_avqa_type():
    assert set(FAMILY_OF) == set(avqa.ANSWERS)
    for modality, subtype, template in avqa.TEMPLATES:
        assert avqa_type(modality, subtype, template) in QUESTION_TYPES


@pytest.mark.parametrize("answer", ["violin", "three", "left", "yes", "indoor", "simultaneously"])
def test_candidates_hold_the_answer_once_and_distractors_of_its_family_first(answer):
    rng = np.random.default_rng(0)
    for _ in range(20):
        choices, right = candidates(answer, rng)
        assert len(choices) == len(set(choices)) == 4 and choices[right] == answer
        family = FAMILY_OF[answer]
        in_family = sum(c in family for c in choices)
        assert in_family == min(4, len(family))  # the family first, then the vocabulary


def test_the_right_answer_is_not_always_in_one_place():
    rng = np.random.default_rng(1)
    positions = {candidates("violin", rng)[1] for _ in range(40)}
    assert positions == {0, 1, 2, 3}


def test_written_files_follow_the_avqa_format_and_keep_the_questions(tmp_path):
    for split in ("train", "val", "test"):
        shutil.copy(MUSIC / f"avqa-{split}.json", tmp_path / f"avqa-{split}.json")
    rows = write_multiple_choice(tmp_path, 7)
    assert [r["split"] for r in rows] == ["train", "test"]
    train = parse_avqa(rows[0]["annotations_path"], "train")
    test = parse_avqa(rows[1]["annotations_path"], "test")
    music = {
        s: parse_split(MUSIC / f"avqa-{s}.json", s).questions for s in ("train", "val", "test")
    }
    assert len(train.questions) == len(music["train"]) + len(music["val"])
    assert len(test.questions) == len(music["test"]) == rows[1]["n_records"]
    by_id = {q["question_id"]: q for qs in music.values() for q in qs}
    for q in train.questions + test.questions:
        source = by_id[q["question_id"]]
        assert q["question"] == source["question"] and q["answer"] == source["answer"]
        assert q["video_id"] == source["video_id"]
    first = (tmp_path / "multiple_choice" / "train_qa.json").read_bytes()
    write_multiple_choice(tmp_path, 7)
    assert (tmp_path / "multiple_choice" / "train_qa.json").read_bytes() == first
