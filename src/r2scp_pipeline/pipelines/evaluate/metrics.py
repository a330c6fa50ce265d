"""Accuracy as the official MUSIC-AVQA evaluation computes it, plus the paper's Table-1 columns.

Official evaluation (Li et al., CVPR 2022, ``net_grd_avst/main_avst.py::test``):

* accuracy per question type, i.e. per ``(modality, sub-type)`` pair -- 9 of them;
* accuracy per modality (Audio, Visual, Audio-Visual): all questions of that modality pooled
  (micro-average over its sub-types, *not* the mean of the sub-type accuracies);
* overall accuracy: all questions pooled (micro-average).

The paper's Table 1 reports five columns under the header "Music-AVQA (Audio-Visual)": Exist,
Localis, Count, Comp, Temp, and Avg. These are the five **Audio-Visual** sub-types, and Avg is the
Audio-Visual modality accuracy (micro over the AV questions). Evidence: weighting the five
columns by the AV question counts of the official val split (495/461/633/549/411, a proxy for
the test counts) reproduces the printed Avg of the specialised models (TSPM 73.52 vs 73.51
printed, QA-TIGER 73.76 vs 73.74) while the plain mean of the five columns does not (73.44,
73.54). That is ``paper_columns="audio_visual"`` (the default).

``paper_columns="all_modalities"`` instead pools every modality by sub-type name (Count = A+V+AV
counting questions, Localis = V+AV location, Comp = A+AV comparative; ``avqa.PAPER_COLUMNS``) and
its Avg is the overall accuracy (micro over all questions).

A group with no question gets no entry at all (never NaN): callers show it as "-".

Multiple-choice data (AVQA, ``multiple_choice.py``) are reported by
:func:`choice_accuracy_report` in the same structure: ``types`` per AVQA question type,
``modalities`` per question relation, ``overall``, and ``paper`` = ``{"Avg": overall}`` (the
paper's Table 1 gives one AVQA column, the accuracy over all questions).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from r2scp_pipeline import avqa
from r2scp_pipeline.avqa import PAPER_POOLINGS
from r2scp_pipeline.multiple_choice import BENCHMARKS
from r2scp_pipeline.multiple_choice import QUESTION_TYPES as AVQA_TYPES

PaperPooling = Literal["audio_visual", "all_modalities"]

#: Metric-name fragments. Keys are safe for MLflow (letters, digits, ``_-./ ``).
TYPE_KEYS: tuple[str, ...] = tuple(f"{m}/{s}" for m, s in avqa.QUESTION_TYPES)
PAPER_KEYS: tuple[str, ...] = tuple(c for c, _ in avqa.PAPER_COLUMNS) + ("Avg",)


def _acc(correct: np.ndarray) -> tuple[float, int] | None:
    """(percent correct, n) of a boolean vector, or None if it is empty."""
    n = int(correct.size)
    if n == 0:
        return None
    return 100.0 * float(correct.sum()) / n, n


def accuracy_report(
    modality: np.ndarray | pd.Series,
    subtype: np.ndarray | pd.Series,
    correct: np.ndarray | pd.Series,
    paper_columns: PaperPooling = "audio_visual",
) -> dict[str, dict[str, float]]:
    """All accuracies (in percent) of one evaluated method on one setting.

    Args:
        modality: per question, one of ``avqa.QUESTION_MODALITIES``.
        subtype: per question, the sub-type (Counting, Comparative, Location, Existential,
            Temporal).
        correct: per question, whether the predicted answer equals the ground truth.
        paper_columns: how the paper's five columns pool questions (module docstring).

    Returns:
        ``{"types": {"Audio/Counting": acc, ...}, "modalities": {"Audio": acc, ...},
        "overall": {"Overall": acc}, "paper": {"Exist": acc, ..., "Avg": acc},
        "counts": {<every key above>: n_questions}}``; groups without questions are absent.
    """
    modality = np.asarray(modality, dtype=object)
    subtype = np.asarray(subtype, dtype=object)
    correct = np.asarray(correct, dtype=bool)
    if not (len(modality) == len(subtype) == len(correct)):
        raise ValueError(
            f"modality/subtype/correct lengths differ: {len(modality)}, {len(subtype)}, "
            f"{len(correct)}"
        )
    known = set(avqa.QUESTION_TYPES)
    unknown = {(m, s) for m, s in zip(modality, subtype, strict=True)} - known
    if unknown:
        raise ValueError(
            f"unknown question types {sorted(unknown)[:5]}; expected pairs of "
            f"avqa.QUESTION_TYPES (modality, sub-type)"
        )
    if paper_columns not in PAPER_POOLINGS:
        raise ValueError(f"paper_columns={paper_columns!r}; choose one of {PAPER_POOLINGS}")

    out: dict[str, dict[str, float]] = {
        "types": {},
        "modalities": {},
        "overall": {},
        "paper": {},
        "counts": {},
    }

    def put(section: str, key: str, mask: np.ndarray) -> None:
        res = _acc(correct[mask])
        if res is not None:
            out[section][key] = res[0]
            out["counts"][key] = res[1]

    for (m, s), key in zip(avqa.QUESTION_TYPES, TYPE_KEYS, strict=True):
        put("types", key, (modality == m) & (subtype == s))
    for m in avqa.QUESTION_MODALITIES:
        put("modalities", m, modality == m)
    put("overall", "Overall", np.ones(len(correct), dtype=bool))

    scope = modality == "Audio-Visual" if paper_columns == "audio_visual" else np.ones_like(correct)
    for column, sub in avqa.PAPER_COLUMNS:
        put("paper", column, scope & (subtype == sub))
    put("paper", "Avg", scope)
    return out


def choice_accuracy_report(
    relation: np.ndarray | pd.Series,
    qtype: np.ndarray | pd.Series,
    correct: np.ndarray | pd.Series,
) -> dict[str, dict[str, float]]:
    """:func:`accuracy_report` of multiple-choice (AVQA) questions: ``types`` per question type
    (AVQA's order), ``modalities`` per relation (as written in the data), ``overall``, and
    ``paper`` = ``{"Avg": overall}``; ``counts`` as there."""
    relation = np.asarray(relation, dtype=object)
    qtype = np.asarray(qtype, dtype=object)
    correct = np.asarray(correct, dtype=bool)
    if not (len(relation) == len(qtype) == len(correct)):
        raise ValueError(
            f"relation/type/correct lengths differ: {len(relation)}, {len(qtype)}, {len(correct)}"
        )
    out: dict[str, dict[str, float]] = {s: {} for s in ("types", "modalities", "overall", "paper",
                                                        "counts")}  # fmt: skip

    def put(section: str, key: str, mask: np.ndarray) -> None:
        res = _acc(correct[mask])
        if res is not None:
            out[section][key] = res[0]
            out["counts"][key] = res[1]

    order = {t: i for i, t in enumerate(AVQA_TYPES)}
    for t in sorted(set(qtype), key=lambda t: (order.get(t, len(order)), str(t))):
        put("types", str(t), qtype == t)
    for r in sorted(set(relation), key=str):
        put("modalities", str(r), relation == r)
    everything = np.ones(len(correct), dtype=bool)
    put("overall", "Overall", everything)
    put("paper", "Avg", everything)
    return out


def report_for(
    benchmark: str,
    modality: np.ndarray | pd.Series,
    subtype: np.ndarray | pd.Series,
    correct: np.ndarray | pd.Series,
    paper_columns: PaperPooling = "audio_visual",
) -> dict[str, dict[str, float]]:
    """The accuracy report of ``benchmark`` (``multiple_choice.BENCHMARKS``): MUSIC-AVQA's
    (:func:`accuracy_report`) or AVQA's (:func:`choice_accuracy_report`)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {BENCHMARKS}")
    if benchmark == "avqa":
        return choice_accuracy_report(modality, subtype, correct)
    return accuracy_report(modality, subtype, correct, paper_columns)


def flat_metrics(report: dict[str, dict[str, float]]) -> dict[str, float]:
    """One flat ``{name: accuracy}`` dict for MLflow: ``acc/<type>``, ``acc/<modality>``,
    ``acc/Overall``, ``paper/<column>`` (names use ``_`` for ``-`` and spaces)."""
    flat: dict[str, float] = {}
    for section, prefix in (
        ("types", "acc"),
        ("modalities", "acc"),
        ("overall", "acc"),
        ("paper", "paper"),
    ):
        for key, value in report[section].items():
            flat[f"{prefix}/{key.replace('-', '_')}"] = float(value)
    return flat


def report_from_predictions(
    predictions: pd.DataFrame, paper_columns: PaperPooling = "audio_visual"
) -> dict[str, dict[str, float]]:
    """:func:`accuracy_report` of a predictions table with ``modality, subtype, answer_idx,
    pred_idx`` columns."""
    correct = predictions["pred_idx"].to_numpy() == predictions["answer_idx"].to_numpy()
    return accuracy_report(
        predictions["modality"].to_numpy(),
        predictions["subtype"].to_numpy(),
        correct,
        paper_columns,
    )


def paired_bootstrap(
    correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Accuracy difference a - b (percentage points) on the same questions, with a 95%
    bootstrap interval that accounts for both seeds and test questions.

    ``correct_a`` / ``correct_b``: ``[Q]`` (one trained model each) or ``[S, Q]`` (one row per
    seed, row ``s`` of both trained with seed ``s``). Each resample draws S seeds and Q
    questions with replacement (the same questions for every seed: the pairs stay paired) and
    averages the per-question differences over them; with one seed this is the ordinary
    paired bootstrap over questions.

    Returns ``(delta, low, high)``; an interval that excludes 0 means the difference is larger
    than what retraining with other seeds and resampling the test questions produce.
    """
    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two equal-shape non-empty arrays, got {a.shape} and {b.shape}")
    diff = a - b  # [S, Q]
    n_seeds, n_q = diff.shape
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for i in range(0, n_boot, 250):  # chunks bound the memory at [250, S, Q]
        m = min(250, n_boot - i)
        s_idx = rng.integers(0, n_seeds, size=(m, n_seeds))
        q_idx = rng.integers(0, n_q, size=(m, n_q))
        boots[i : i + m] = diff[s_idx[:, :, None], q_idx[:, None, :]].mean(axis=(1, 2))
    low, high = np.percentile(boots, [2.5, 97.5])
    return 100.0 * float(diff.mean()), 100.0 * float(low), 100.0 * float(high)
