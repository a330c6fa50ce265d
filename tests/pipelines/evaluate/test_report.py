"""Report tables, figures and the nested MLflow runs, from a hand-made results table."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from r2scp_pipeline.pipelines.evaluate.report import (
    ablation_table,
    accuracy_vs_rate_figure,
    expert_loads_figure,
    results_table,
    sweep_figure,
    to_markdown,
)
from r2scp_pipeline.pipelines.evaluate.tracking import log_child_runs

RUNS = [("audio_missing", 0.5), ("audio_missing", 1.0), ("visual_missing", 1.0), ("complete", 0.0)]


def _results():
    rows = []
    for mi, method in enumerate(["r2scp", "zero_fill", "no_cap"]):
        for si, (setting, rate) in enumerate(RUNS):
            base = 60.0 + 5 * (mi == 0) + si
            for col in ("Exist", "Localis", "Count", "Comp", "Temp"):
                rows.append((method, 42, setting, rate, "paper", col, base, 10))
            rows.append((method, 42, setting, rate, "paper", "Avg", base + 0.5, 50))
            rows.append((method, 42, setting, rate, "overall", "Overall", base - 1, 90))
            rows.append((method, 42, setting, rate, "modalities", "Audio", base - 2, 20))
            for e, w in (("audio", 0.2), ("visual", 0.5), ("text", 0.3)):
                rows.append((method, 42, setting, rate, "loads", e, w, 90))
    return pd.DataFrame(
        rows, columns=["method", "seed", "setting", "missing_rate", "section", "metric", "value", "n"]
    )


def test_results_table_rows_and_average():
    res = _results()
    tab = results_table(
        res, ["r2scp", "zero_fill"], ["audio_missing", "visual_missing", "complete"], rate=1.0
    )
    r = tab[tab["method"] == "R2ScP"].set_index("setting")
    assert list(r.index) == ["audio_missing", "visual_missing", "complete", "Average"]
    # audio_missing at rate 1.0 is RUNS[1]: 65 + 1 = 66; visual 67; complete 68
    assert r.loc["audio_missing", "Exist"] == 66.0 and r.loc["complete", "Avg"] == 68.5
    assert r.loc["Average", "Avg"] == pytest.approx((66.5 + 67.5 + 68.5) / 3, abs=0.01)
    md = to_markdown(tab, title="T")
    assert md.startswith("### T") and "| R2ScP | Average |" in md and "nan" not in md


def test_ablation_table_with_paper_reference():
    tab = ablation_table(
        _results(),
        ["r2scp", "no_cap"],
        ["audio_missing", "visual_missing", "complete"],
        1.0,
        {"no_cap": "CAP off"},
    )
    row = tab.set_index("method").loc["w/o CAP"]
    assert row["change"] == "CAP off"
    assert row["Avg A/V missing"] == pytest.approx((61.5 + 62.5) / 2)
    assert row["paper visual_missing"] == 67.21  # Table 2, CMR only
    assert np.isnan(row["paper A/V missing"])  # not in Table 3
    assert tab.set_index("method").loc["R2ScP", "paper A/V missing"] == 70.72


def test_figures_are_built():
    res = _results()
    assert isinstance(accuracy_vs_rate_figure(res, ["r2scp", "zero_fill"]), Figure)
    loads = res[res["section"] == "loads"]
    hist = pd.DataFrame(
        {
            "epoch": [0, 1, 0, 1],
            "setting": "audio_missing",
            "expert": ["audio", "audio", "visual", "visual"],
            "load": [0.3, 0.2, 0.4, 0.5],
        }
    )
    assert len(expert_loads_figure(hist, loads).axes) == 2
    assert len(expert_loads_figure(None, loads).axes) == 1
    sw = pd.DataFrame(
        {
            "setting": "audio_missing",
            "vary": ["n", "n", "k"],
            "n": [1, 3, 3],
            "k": [5, 5, 1],
            "value": [60.0, 61.0, 59.0],
        }
    )
    assert isinstance(sweep_figure(sw), Figure)
    assert isinstance(sweep_figure(pd.DataFrame()), Figure)


def test_child_runs_are_nested_under_the_active_run(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        assert log_child_runs(_results()) == []  # no active run: nothing logged
        mlflow.set_experiment("t")
        with mlflow.start_run() as parent:
            ids = log_child_runs(_results())
        assert len(ids) == 3 * len(RUNS)
        runs = mlflow.search_runs(
            experiment_names=["t"],
            filter_string=(
                f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.method = 'r2scp'"
            ),
        )
        assert len(runs) == len(RUNS)
        row = runs[runs["tags.setting"] == "audio_missing"].sort_values("params.missing_rate")
        assert list(row["params.missing_rate"]) == ["0.5", "1.0"]
        assert list(row["metrics.paper/Avg"]) == [65.5, 66.5]
        assert "metrics.load/visual" in runs.columns
    finally:
        mlflow.set_tracking_uri(None)
