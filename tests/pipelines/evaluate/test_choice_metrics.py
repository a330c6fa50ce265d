"""AVQA-style (multiple-choice) accuracies, results table and the benchmark dispatch
(``evaluate/metrics.py``, ``report.py``, ``nodes.results_from_predictions``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from r2scp_pipeline.pipelines.evaluate.metrics import choice_accuracy_report, report_for
from r2scp_pipeline.pipelines.evaluate.nodes import results_from_predictions
from r2scp_pipeline.pipelines.evaluate.report import PAPER_TABLE1_AVQA, choice_results_table

RELATION = np.array(["Both", "Both", "Visual", "Audio", "Both", "Visual"])
QTYPE = np.array(["Which", "Happening", "Where", "When", "Which", "Which"])
CORRECT = np.array([True, False, True, False, False, True])


def test_choice_report_breaks_down_by_type_and_relation():
    r = choice_accuracy_report(RELATION, QTYPE, CORRECT)
    assert list(r["types"]) == ["Which", "Happening", "Where", "When"]  # AVQA's order
    assert r["types"]["Which"] == pytest.approx(200 / 3) and r["counts"]["Which"] == 3
    assert r["modalities"] == {"Audio": 0.0, "Both": pytest.approx(100 / 3), "Visual": 100.0}
    assert r["overall"]["Overall"] == r["paper"]["Avg"] == 50.0
    with pytest.raises(ValueError, match="lengths differ"):
        choice_accuracy_report(RELATION[:2], QTYPE, CORRECT)


def test_report_for_dispatches_on_the_benchmark():
    assert report_for("avqa", RELATION, QTYPE, CORRECT)["types"]["Where"] == 100.0
    with pytest.raises(ValueError, match="unknown question types"):
        report_for("music_avqa", RELATION, QTYPE, CORRECT)  # MUSIC-AVQA's types only
    with pytest.raises(ValueError, match="unknown benchmark"):
        report_for("nextqa", RELATION, QTYPE, CORRECT)


def _predictions() -> pd.DataFrame:
    frames = []
    for method, setting, rate, shift in (("r2scp", "audio_missing", 1.0, 0),
                                         ("r2scp", "visual_missing", 1.0, 1),
                                         ("r2scp", "complete", 0.0, 2),
                                         ("zero_fill", "audio_missing", 1.0, 3)):  # fmt: skip
        correct = np.roll(CORRECT, shift)
        frames.append(pd.DataFrame({
            "method": method, "seed": 42, "setting": setting, "missing_rate": rate,
            "question_id": np.arange(6), "video_id": "v", "missing": rate > 0,
            "modality": RELATION, "subtype": QTYPE, "answer_idx": 0,
            "pred_idx": np.where(correct, 0, 1), "correct": correct,
            "alpha_audio": 0.2, "alpha_visual": 0.3, "alpha_text": 0.5, "benchmark": "avqa",
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_results_of_multiple_choice_predictions_use_the_avqa_breakdown():
    res = results_from_predictions(_predictions(), "audio_visual")
    r2 = res[(res["method"] == "r2scp") & (res["setting"] == "audio_missing")]
    types = r2[r2["section"] == "types"].set_index("metric")["value"]
    assert types["Which"] == pytest.approx(200 / 3)
    assert set(r2[r2["section"] == "modalities"]["metric"]) == {"Audio", "Both", "Visual"}
    assert r2[r2["section"] == "paper"]["metric"].tolist() == ["Avg"]


def test_the_choice_results_table_sits_next_to_the_papers_avqa_column():
    res = results_from_predictions(_predictions(), "audio_visual")
    settings = ["audio_missing", "visual_missing", "complete"]
    table = choice_results_table(res, ["r2scp", "zero_fill"], settings, 1.0)
    assert list(table.columns) == ["method", "setting", "missing_rate", "Which", "Happening",
                                   "Where", "When", "Audio", "Both", "Visual", "Overall",
                                   "paper AVQA"]  # fmt: skip
    r2 = table[table["method"] == "R2ScP"].set_index("setting")
    assert r2.loc["complete", "paper AVQA"] == PAPER_TABLE1_AVQA["complete"]
    assert r2.loc["Average", "paper AVQA"] == PAPER_TABLE1_AVQA["Average"]
    assert r2.loc["Average", "Overall"] == pytest.approx(
        r2.loc[settings, "Overall"].mean(), abs=0.01
    )
    zero = table[table["method"] == "zero-fill"]
    assert len(zero) == 1 and zero["paper AVQA"].isna().all()  # one setting: no Average row


def test_the_ablation_table_quotes_the_papers_avqa_column_for_avqa():
    from r2scp_pipeline.pipelines.evaluate.report import ablation_table

    res = results_from_predictions(_predictions(), "audio_visual")
    settings = ["audio_missing", "visual_missing", "complete"]
    avqa = ablation_table(res, ["r2scp"], settings, 1.0, {}, "avqa").iloc[0]
    music = ablation_table(res, ["r2scp"], settings, 1.0, {}).iloc[0]
    assert avqa["paper visual_missing"] == 63.25 and music["paper visual_missing"] == 69.37
    assert np.isnan(avqa["paper A/V missing"]) and music["paper A/V missing"] == 70.72
