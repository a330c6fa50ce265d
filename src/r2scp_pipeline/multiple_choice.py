"""Multiple-choice questions (AVQA, Yang et al., ACM MM 2022): the words every pipeline shares.

AVQA asks each question about a real-life VGGSound video with four candidate answers; the
released annotation files (``train_qa.json``, ``val_qa.json``) give, per question, the four
strings (``multi_choice``) and the index of the right one (``answer``). The project reads them
into ``qa_pairs`` with two more columns, ``choices`` (the candidate texts) and ``choice_idx``
(the right one); ``modality`` holds AVQA's ``question_relation`` and ``subtype`` its
``question_type``. A ``qa_pairs`` table *with* a ``choices`` column is multiple-choice data
everywhere downstream (:func:`is_multiple_choice`); without one it is MUSIC-AVQA's
open-ended format (``avqa.py``: 42-answer vocabulary).

This module also holds the answer prior of multiple-choice data (:func:`choice_prior`), which
the dataset report and the evaluation's modality-needs report both use.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

#: Candidate answers per question in AVQA.
N_CHOICES = 4
#: AVQA's eight question types (the ``question_type`` field; the official AVQA code maps exactly
#: these names to its categories), in that code's order.
QUESTION_TYPES: tuple[str, ...] = (
    "Which", "Come From", "Happening", "Where", "Why", "Before Next", "When", "Used For",
)  # fmt: skip
#: The release's annotation files: project split -> file name. The release has no test file:
#: papers report on ``val_qa.json``, so it is the project's ``test`` split and ``val`` is held
#: out of the training videos (``dataset.avqa.val_fraction``).
RELEASE_FILES: dict[str, str | None] = {
    "train": "train_qa.json",
    "val": None,
    "test": "val_qa.json",
}
#: The benchmark names the evaluation reports under.
BENCHMARKS: tuple[str, ...] = ("music_avqa", "avqa")


def is_multiple_choice(qa_pairs: pd.DataFrame) -> bool:
    """Whether ``qa_pairs`` holds multiple-choice questions (it has a ``choices`` column)."""
    return "choices" in qa_pairs.columns


def benchmark_of(qa_pairs: pd.DataFrame) -> str:
    """``avqa`` for multiple-choice data, else ``music_avqa`` (how results are broken down)."""
    return "avqa" if is_multiple_choice(qa_pairs) else "music_avqa"


def choice_prior(fit: pd.DataFrame, evaluate: pd.DataFrame) -> np.ndarray:
    """The answer prior of multiple-choice data: per question of ``evaluate``, the index of the
    choice it picks without looking at the video.

    It picks the candidate whose text was most often the right answer among ``fit``'s questions
    of the same type (``modality``, ``subtype``), counts over all of ``fit`` breaking ties, then
    the first candidate. Both tables need ``modality``, ``subtype``, ``answer``, ``choices``.
    """
    overall = Counter(fit["answer"].astype(str))
    by_type: dict[tuple[str, str], Counter[str]] = {}
    for m, s, a in zip(fit["modality"], fit["subtype"], fit["answer"], strict=True):
        by_type.setdefault((str(m), str(s)), Counter())[str(a)] += 1
    out = np.zeros(len(evaluate), dtype=np.int64)
    rows = zip(evaluate["modality"], evaluate["subtype"], evaluate["choices"], strict=True)
    for i, (m, s, choices) in enumerate(rows):
        local = by_type.get((str(m), str(s)), Counter())
        scores = [(local[str(c)], overall[str(c)], -j) for j, c in enumerate(choices)]
        out[i] = -max(scores)[2]
    return out
