"""Official MUSIC-AVQA accuracies and the paper's columns, against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from r2scp_pipeline.pipelines.evaluate.metrics import (
    accuracy_report,
    flat_metrics,
    report_from_predictions,
)


def _questions():
    """12 questions; correct counts chosen so that micro and macro averages differ.

    A/Counting 2 of 3, A/Comparative 0 of 1, V/Location 1 of 2,
    AV/Existential 1 of 1, AV/Counting 1 of 4, AV/Temporal 1 of 1.
    """
    rows = (
        [("Audio", "Counting", c) for c in (1, 1, 0)]
        + [("Audio", "Comparative", 0)]
        + [("Visual", "Location", c) for c in (1, 0)]
        + [("Audio-Visual", "Existential", 1)]
        + [("Audio-Visual", "Counting", c) for c in (1, 0, 0, 0)]
        + [("Audio-Visual", "Temporal", 1)]
    )
    m, s, c = zip(*rows, strict=True)
    return np.array(m), np.array(s), np.array(c, dtype=bool)


def test_per_type_modality_and_overall_are_micro_averages():
    rep = accuracy_report(*_questions())
    assert rep["types"]["Audio/Counting"] == pytest.approx(200 / 3)
    assert rep["types"]["Audio/Comparative"] == 0.0
    assert rep["types"]["Visual/Location"] == 50.0
    assert rep["types"]["Audio-Visual/Counting"] == 25.0
    # Audio: 2 correct of 4 pooled = 50 (the mean of the two sub-types would be 33.3)
    assert rep["modalities"]["Audio"] == 50.0
    assert rep["modalities"]["Visual"] == 50.0
    # AV: 3 of 6 = 50 (mean of 100, 25, 100 would be 75)
    assert rep["modalities"]["Audio-Visual"] == 50.0
    # overall: 6 of 12
    assert rep["overall"]["Overall"] == 50.0
    assert rep["counts"]["Audio"] == 4 and rep["counts"]["Overall"] == 12


def test_empty_groups_are_absent_not_nan():
    rep = accuracy_report(*_questions())
    assert "Visual/Counting" not in rep["types"]
    assert "Audio-Visual/Location" not in rep["types"]
    assert "Comp" not in rep["paper"]  # no AV comparative question
    flat = flat_metrics(rep)
    assert all(np.isfinite(v) for v in flat.values())
    assert "acc/Audio_Visual/Counting" in flat and "paper/Avg" in flat


def test_paper_columns_audio_visual_pooling():
    rep = accuracy_report(*_questions(), paper_columns="audio_visual")
    assert rep["paper"] == {"Exist": 100.0, "Count": 25.0, "Temp": 100.0, "Avg": 50.0}


def test_paper_columns_all_modalities_pooling():
    rep = accuracy_report(*_questions(), paper_columns="all_modalities")
    # Count pools A (2/3), AV (1/4) counting = 3/7; Localis = V location 1/2; Comp = A 0/1
    assert rep["paper"]["Count"] == pytest.approx(300 / 7)
    assert rep["paper"]["Localis"] == 50.0
    assert rep["paper"]["Comp"] == 0.0
    assert rep["paper"]["Avg"] == 50.0  # overall micro


def test_from_predictions_table_and_bad_input():
    m, s, c = _questions()
    df = pd.DataFrame({"modality": m, "subtype": s, "answer_idx": 3, "pred_idx": np.where(c, 3, 4)})
    assert report_from_predictions(df)["overall"]["Overall"] == 50.0
    with pytest.raises(ValueError, match="unknown question types"):
        accuracy_report(np.array(["Audio"]), np.array(["Temporal"]), np.array([True]))
    with pytest.raises(ValueError, match="lengths differ"):
        accuracy_report(m, s[:-1], c)
    with pytest.raises(ValueError, match="paper_columns"):
        accuracy_report(m, s, c, paper_columns="macro")


def test_paired_bootstrap_interval():
    from r2scp_pipeline.pipelines.evaluate.metrics import paired_bootstrap

    a = np.array([1, 1, 1, 1, 0, 1, 1, 1] * 50, bool)  # 87.5%
    b = np.array([1, 0, 1, 0, 0, 1, 0, 1] * 50, bool)  # 50%
    delta, lo, hi = paired_bootstrap(a, b, n_boot=500, seed=1)
    assert delta == pytest.approx(37.5)
    assert 0 < lo < delta < hi
    same = paired_bootstrap(a, a, n_boot=100)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:-1])
