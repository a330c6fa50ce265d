"""Tests of ``r2scp_pipeline.multiple_choice`` (shared words and the candidate prior)."""

from __future__ import annotations

import pandas as pd

from r2scp_pipeline.multiple_choice import benchmark_of, choice_prior, is_multiple_choice


def _frame(rows):
    return pd.DataFrame(rows, columns=["modality", "subtype", "answer", "choices"])


def test_the_prior_prefers_the_type_then_overall_counts_then_the_first_candidate():
    fit = _frame([
        ("Both", "Which", "dog", ["dog", "cat", "car", "bell"]),
        ("Both", "Which", "dog", ["cat", "dog", "car", "bell"]),
        ("Both", "Where", "cat", ["cat", "dog", "car", "bell"]),
        ("Both", "Where", "cat", ["cat", "dog", "car", "bell"]),
        ("Both", "Where", "cat", ["cat", "dog", "car", "bell"]),
    ])  # fmt: skip
    ev = _frame([
        ("Both", "Which", "cat", ["car", "cat", "dog", "bell"]),  # type count: dog
        ("Visual", "Which", "dog", ["car", "cat", "dog", "bell"]),  # unseen type: overall: cat
        ("Both", "Why", "x", ["x", "y", "z", "w"]),  # nothing seen: the first candidate
    ])  # fmt: skip
    assert list(choice_prior(fit, ev)) == [2, 1, 0]


def test_a_choices_column_makes_data_multiple_choice():
    assert is_multiple_choice(_frame([])) and benchmark_of(_frame([])) == "avqa"
    open_ended = pd.DataFrame({"answer": ["yes"]})
    assert not is_multiple_choice(open_ended) and benchmark_of(open_ended) == "music_avqa"
