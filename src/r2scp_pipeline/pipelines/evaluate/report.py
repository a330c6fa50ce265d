"""Tables and figures of the evaluation, built from the long ``evaluation_results`` table.

``evaluation_results`` has one row per (method, setting, missing_rate, section, metric):
``section`` is ``types`` / ``modalities`` / ``overall`` / ``paper`` / ``loads``, ``metric`` the
key within it (``Audio/Counting``, ``Audio-Visual``, ``Overall``, ``Exist`` ... ``Avg``,
``audio``/``visual``/``text``), ``value`` the accuracy in percent (or the mean router weight),
``n`` the number of questions behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

from r2scp_pipeline import avqa

RESULT_COLUMNS: tuple[str, ...] = (
    "method", "setting", "missing_rate", "section", "metric", "value", "n",
)  # fmt: skip

SETTING_LABELS: dict[str, str] = {
    "audio_missing": "audio missing (A○ V● Q●)",
    "visual_missing": "visual missing (A● V○ Q●)",
    "complete": "complete (A● V● Q●)",
}

#: Human-readable method names for tables and legends.
METHOD_LABELS: dict[str, str] = {
    "r2scp": "R2ScP",
    "zero_fill": "zero-fill",
    "mean_fill": "mean-fill",
    "generative": "generative imputation",
    "router_mask": "router masking",
    "no_cmr": "w/o CMR",
    "no_cap": "w/o CAP",
    "no_cmr_cap": "w/o CMR & CAP",
    "no_stage1": "w/o stage I",
    "no_rank_loss": "w/o ranking loss",
    "no_mixing": "w/o expert mixing",
}

#: The paper's Music-AVQA numbers (Tables 2 and 3) for the ablation table's reference column.
#: Table 2 keys: (method, setting); Table 3 keys: method (mean of the two missing settings).
PAPER_TABLE2: dict[tuple[str, str], float] = {
    ("no_cmr_cap", "visual_missing"): 62.43, ("no_cmr", "visual_missing"): 64.11,
    ("no_cap", "visual_missing"): 67.21, ("r2scp", "visual_missing"): 69.37,
    ("no_cmr_cap", "audio_missing"): 63.54, ("no_cmr", "audio_missing"): 65.21,
    ("no_cap", "audio_missing"): 70.18, ("r2scp", "audio_missing"): 72.06,
    ("no_cmr_cap", "complete"): 71.14, ("no_cmr", "complete"): 72.12,
    ("no_cap", "complete"): 72.42, ("r2scp", "complete"): 73.19,
}  # fmt: skip
#: Table 2's AVQA column (same keys); Table 3 reports Music-AVQA only.
PAPER_TABLE2_AVQA: dict[tuple[str, str], float] = {
    ("no_cmr_cap", "visual_missing"): 57.43, ("no_cmr", "visual_missing"): 59.64,
    ("no_cap", "visual_missing"): 61.78, ("r2scp", "visual_missing"): 63.25,
    ("no_cmr_cap", "audio_missing"): 68.02, ("no_cmr", "audio_missing"): 69.14,
    ("no_cap", "audio_missing"): 73.86, ("r2scp", "audio_missing"): 75.12,
    ("no_cmr_cap", "complete"): 88.68, ("no_cmr", "complete"): 89.43,
    ("no_cap", "complete"): 90.06, ("r2scp", "complete"): 90.64,
}  # fmt: skip
PAPER_TABLE3: dict[str, float] = {
    "r2scp": 70.72, "no_stage1": 68.98, "no_mixing": 64.21, "no_rank_loss": 69.62,
}  # fmt: skip
#: The paper's Table 1 R2ScP rows (Music-AVQA), columns Exist..Avg.
PAPER_TABLE1_R2SCP: dict[str, tuple[float, ...]] = {
    "visual_missing": (81.07, 65.54, 71.32, 61.95, 67.51, 69.37),
    "audio_missing": (82.49, 68.93, 74.05, 63.49, 69.34, 72.06),
    "complete": (83.59, 70.57, 75.95, 64.08, 70.75, 73.19),
}

#: The paper's Table 1 R2ScP rows, AVQA column (accuracy over all questions), and its Average.
PAPER_TABLE1_AVQA: dict[str, float] = {
    "visual_missing": 63.25, "audio_missing": 75.12, "complete": 90.64, "Average": 76.35,
}  # fmt: skip

PAPER_COLS: tuple[str, ...] = tuple(c for c, _ in avqa.PAPER_COLUMNS) + ("Avg",)
MODALITY_COLS: tuple[str, ...] = avqa.QUESTION_MODALITIES + ("Overall",)


def label(method: str) -> str:
    """Readable name of a method."""
    return METHOD_LABELS.get(method, method)


def _wide(results: pd.DataFrame, sections: Sequence[str]) -> pd.DataFrame:
    """results -> one row per (method, setting, missing_rate), one column per metric."""
    sel = results[results["section"].isin(sections)]
    return sel.pivot_table(
        index=["method", "setting", "missing_rate"],
        columns="metric",
        values="value",
        aggfunc="first",
        sort=False,
    )


def table_rate(results: pd.DataFrame, setting: str, wanted: float) -> float:
    """The missing rate a table shows for ``setting``: ``wanted`` (complete: 0.0)."""
    if setting == "complete":
        return 0.0
    return float(wanted)


def results_table(
    results: pd.DataFrame, methods: Sequence[str], settings: Sequence[str], rate: float
) -> pd.DataFrame:
    """Table-1-style: per method, one row per setting (at missing rate ``rate``) and an
    ``Average`` row (mean of the setting rows, as the paper's Average rows), with the paper's
    five columns + Avg, then the official per-modality and overall accuracies."""
    wide = _wide(results, ["paper", "modalities", "overall"])
    cols = [c for c in PAPER_COLS + MODALITY_COLS if c in wide.columns]
    rows = []
    for method in methods:
        block = []
        for setting in settings:
            key = (method, setting, table_rate(results, setting, rate))
            if key not in wide.index:
                continue
            vals = wide.loc[key, cols]
            block.append(
                {
                    "method": label(method),
                    "setting": setting,
                    "missing_rate": key[2],
                    **vals.to_dict(),
                }
            )
        rows += block
        if len(block) > 1:
            avg = pd.DataFrame(block)[cols].mean(axis=0, skipna=True)
            rows.append(
                {
                    "method": label(method),
                    "setting": "Average",
                    "missing_rate": np.nan,
                    **avg.to_dict(),
                }
            )
    return pd.DataFrame(rows, columns=["method", "setting", "missing_rate", *cols]).round(2)


def choice_results_table(
    results: pd.DataFrame, methods: Sequence[str], settings: Sequence[str], rate: float
) -> pd.DataFrame:
    """:func:`results_table` of multiple-choice (AVQA) results: per method, one row per setting
    and an ``Average`` row, with the accuracy per AVQA question type, per question relation and
    overall, and ``paper AVQA``: the paper's Table 1 AVQA column for R2ScP's rows."""
    from r2scp_pipeline.multiple_choice import QUESTION_TYPES

    wide = _wide(results, ["types", "modalities", "overall"])
    sections = results.drop_duplicates("metric").set_index("metric")["section"]
    present = list(wide.columns)
    types = [t for t in QUESTION_TYPES if t in present]
    relations = sorted(m for m in present if sections.get(m) == "modalities")
    cols = types + relations + (["Overall"] if "Overall" in present else [])
    rows = []
    for method in methods:
        block = []
        for setting in settings:
            key = (method, setting, table_rate(results, setting, rate))
            if key not in wide.index:
                continue
            block.append({"method": label(method), "setting": setting, "missing_rate": key[2],
                          **wide.loc[key, cols].to_dict()})  # fmt: skip
        if len(block) > 1:
            avg = pd.DataFrame(block)[cols].mean(axis=0, skipna=True)
            block.append({"method": label(method), "setting": "Average", "missing_rate": np.nan,
                          **avg.to_dict()})  # fmt: skip
        for row in block:
            row["paper AVQA"] = (
                PAPER_TABLE1_AVQA.get(row["setting"], np.nan) if method == "r2scp" else np.nan
            )
        rows += block
    return pd.DataFrame(
        rows, columns=["method", "setting", "missing_rate", *cols, "paper AVQA"]
    ).round(2)


def ablation_table(
    results: pd.DataFrame,
    methods: Sequence[str],
    settings: Sequence[str],
    rate: float,
    descriptions: dict[str, str],
    benchmark: str = "music_avqa",
) -> pd.DataFrame:
    """Table-2/3-style: one row per method (R2ScP and its ablations), the paper Avg per setting,
    the mean over the two missing settings (Table 3's metric), and the paper's numbers
    (``benchmark`` avqa: Table 2's AVQA column; Table 3 has none)."""
    table2 = PAPER_TABLE2_AVQA if benchmark == "avqa" else PAPER_TABLE2
    table3 = {} if benchmark == "avqa" else PAPER_TABLE3
    wide = _wide(results, ["paper"])
    missing_settings = [s for s in settings if s != "complete"]
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": label(method), "change": descriptions.get(method, "")}
        got = []
        for setting in settings:
            key = (method, setting, table_rate(results, setting, rate))
            v = (
                float(wide.loc[key, "Avg"])
                if key in wide.index and "Avg" in wide.columns
                else np.nan
            )
            row[f"Avg {setting}"] = v
            if setting in missing_settings and np.isfinite(v):
                got.append(v)
        row["Avg A/V missing"] = (
            float(np.mean(got)) if len(got) == len(missing_settings) and got else np.nan
        )
        for setting in settings:
            row[f"paper {setting}"] = table2.get((method, setting), np.nan)
        row["paper A/V missing"] = table3.get(method, np.nan)
        rows.append(row)
    return pd.DataFrame(rows).round(2)


def to_markdown(df: pd.DataFrame, title: str = "", note: str = "") -> str:
    """A GitHub markdown table (NaN shown as "-"), with optional title and footnote."""

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "-" if not np.isfinite(v) else f"{v:.2f}"
        return str(v)

    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(str(c) for c in df.columns) + " |")
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(v) for v in r.tolist()) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def accuracy_vs_rate_figure(
    results: pd.DataFrame,
    methods: Sequence[str],
    metric: tuple[str, str] = ("paper", "Avg"),
    dashed: Sequence[str] = (),
) -> Figure:
    """The paper's Fig. 5: accuracy vs missing rate, one panel per missing setting, one line
    per method (``dashed``: e.g. the ablations); R2ScP's complete-modality accuracy is drawn
    as a grey reference line."""
    section, key = metric
    sel = results[(results["section"] == section) & (results["metric"] == key)]
    settings = [s for s in ("audio_missing", "visual_missing") if s in set(sel["setting"])]
    fig = Figure(figsize=(6 * max(len(settings), 1) + 2, 4.2))
    axes = fig.subplots(1, max(len(settings), 1), squeeze=False)
    complete = sel[(sel["setting"] == "complete") & (sel["method"] == "r2scp")]["value"]
    for ax, setting in zip(axes[0], settings, strict=False):
        for method in methods:
            d = sel[(sel["setting"] == setting) & (sel["method"] == method)].sort_values(
                "missing_rate"
            )
            if d.empty:
                continue
            ax.plot(
                d["missing_rate"],
                d["value"],
                marker="o",
                label=label(method),
                linewidth=2.6 if method == "r2scp" else 1.3,
                linestyle="--" if method in dashed else "-",
                color="black" if method == "r2scp" else None,
            )
        if len(complete):
            ax.axhline(
                float(complete.iloc[0]),
                color="grey",
                linestyle="--",
                linewidth=1,
                label="R2ScP, complete",
            )
        ax.set_title(SETTING_LABELS.get(setting, setting))
        ax.set_xlabel("missing rate (fraction of test videos)")
        ax.set_ylabel(f"{key} accuracy (%)")
        ax.grid(alpha=0.3)
    if settings:
        axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Accuracy vs missing rate (cf. paper Fig. 5)")
    fig.tight_layout()
    return fig


def expert_loads_figure(loads_history: pd.DataFrame | None, eval_loads: pd.DataFrame) -> Figure:
    """The paper's Fig. 6 (expert loads).

    Left, if the mix stage recorded them: the mean router weight of each expert per epoch
    (``loads_history``: ``epoch, setting, expert, load``). Right: the router weights measured
    by this evaluation for R2ScP per setting at each setting's largest missing rate
    (``eval_loads``: rows of ``evaluation_results`` with ``section == "loads"``).
    """
    has_hist = loads_history is not None and len(loads_history) > 0
    fig = Figure(figsize=(12 if has_hist else 6.5, 4.2))
    axes = fig.subplots(1, 2 if has_hist else 1, squeeze=False)
    ax_i = 0
    if has_hist:
        ax = axes[0][0]
        for (setting, expert), d in loads_history.groupby(["setting", "expert"], sort=True):
            ax.plot(d["epoch"], d["load"], marker=".", label=f"{setting}: {expert}")
        ax.set_xlabel("stage-II epoch")
        ax.set_ylabel("mean router weight")
        ax.set_title("expert loads during expert mixing training")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax_i = 1
    ax = axes[0][ax_i]
    d = eval_loads[eval_loads["method"] == "r2scp"]
    if len(d):
        top = d.groupby("setting")["missing_rate"].transform("max")
        d = d[d["missing_rate"] == top]
        piv = d.pivot_table(index="setting", columns="metric", values="value", aggfunc="first")
        experts = list(piv.columns)
        x = np.arange(len(piv))
        width = 0.8 / max(len(experts), 1)
        for i, expert in enumerate(experts):
            ax.bar(x + i * width, piv[expert].to_numpy(), width, label=expert)
        ax.set_xticks(
            x + width * (len(experts) - 1) / 2,
            [
                f"{s}\n(rate {r:g})"
                for s, r in zip(
                    piv.index,
                    d.groupby("setting")["missing_rate"].max().reindex(piv.index),
                    strict=True,
                )
            ],
            fontsize=8,
        )
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "R2ScP was not evaluated", ha="center", va="center")
    ax.set_ylabel("mean router weight α (Eq. 11)")
    ax.set_title("R2ScP expert loads on the test split")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def sweep_figure(sweep: pd.DataFrame) -> Figure:
    """The paper's Fig. 4: accuracy vs retrieval count n (k fixed) and vs purification budget k
    (n fixed), one line per missing setting. ``sweep``: ``setting, n, k, value``."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, squeeze=False)
    if sweep is None or sweep.empty:
        for ax in axes[0]:
            ax.text(
                0.5, 0.5, "sweep disabled (evaluate.sweep.enabled: false)", ha="center", va="center"
            )
        return fig
    for ax, (var, fixed) in zip(axes[0], (("n", "k"), ("k", "n")), strict=True):
        for setting, d in sweep[sweep["vary"] == var].groupby("setting"):
            d = d.sort_values(var)
            ax.plot(d[var], d["value"], marker="o", label=setting)
        ax.set_xlabel(f"{var} ({'retrieved candidates' if var == 'n' else 'purification budget'})")
        ax.set_ylabel("Avg accuracy (%)")
        ax.set_title(f"varying {var} ({fixed} at its default)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def comparison_table(
    predictions: pd.DataFrame,
    reference: str,
    methods: Sequence[str],
    paper_columns: str,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Each method minus ``reference`` (percentage points) on the same questions, per missing
    setting and rate, for the paper Avg and the overall accuracy, with 95% paired bootstrap
    intervals (``metrics.paired_bootstrap``). ``significant``: the interval excludes 0."""
    from .metrics import paired_bootstrap

    rows = []
    ref = predictions[predictions["method"] == reference]
    for method in methods:
        if method == reference:
            continue
        other = predictions[predictions["method"] == method]
        for (setting, rate), r in ref.groupby(["setting", "missing_rate"], sort=True):
            if setting == "complete":
                continue
            o = other[(other["setting"] == setting) & (other["missing_rate"] == rate)]
            if o.empty:
                continue
            o = o.set_index("question_id").loc[r["question_id"]]
            scopes = {"Overall": np.ones(len(r), bool)}
            scopes["Avg"] = (
                r["modality"].to_numpy() == "Audio-Visual"
                if paper_columns == "audio_visual"
                else np.ones(len(r), bool)
            )
            for metric, sel in scopes.items():
                if not sel.any():
                    continue
                d, lo, hi = paired_bootstrap(
                    o["correct"].to_numpy()[sel], r["correct"].to_numpy()[sel], n_boot, seed
                )
                rows.append(
                    {
                        "method": label(method),
                        "setting": setting,
                        "missing_rate": rate,
                        "metric": metric,
                        "delta_vs_" + reference: d,
                        "ci_low": lo,
                        "ci_high": hi,
                        "significant": bool(lo > 0 or hi < 0),
                        "n": int(sel.sum()),
                    }
                )
    return pd.DataFrame(rows).round(2)


def modality_needs_table(meta: pd.DataFrame, correct: dict[str, np.ndarray]) -> pd.DataFrame:
    """Accuracy (%) of each ``correct`` column per question type, per template and overall.

    ``meta``: per question ``modality``, ``subtype``, ``template``; ``correct``: name -> bool
    per question (same order). Rows: ``level`` = all | type | template, with ``n``.
    """
    df = meta[["modality", "subtype", "template"]].copy()
    for name, values in correct.items():
        df[name] = np.asarray(values, dtype=float) * 100.0
    names = list(correct)
    rows = [{"level": "all", "modality": "All", "subtype": "", "template": "", "n": len(df),
             **df[names].mean().round(2).to_dict()}]  # fmt: skip
    order = {t: i for i, t in enumerate(avqa.QUESTION_TYPES)}
    types = sorted(df.groupby(["modality", "subtype"]).groups, key=lambda t: order.get(t, 99))
    for mod, sub in types:
        g = df[(df["modality"] == mod) & (df["subtype"] == sub)]
        rows.append({"level": "type", "modality": mod, "subtype": sub, "template": "",
                     "n": len(g), **g[names].mean().round(2).to_dict()})  # fmt: skip
    for (mod, sub, tpl), g in df.groupby(["modality", "subtype", "template"], sort=True):
        rows.append({"level": "template", "modality": mod, "subtype": sub, "template": tpl,
                     "n": len(g), **g[names].mean().round(2).to_dict()})  # fmt: skip
    return pd.DataFrame(rows)
