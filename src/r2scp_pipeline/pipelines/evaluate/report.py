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
    "method", "seed", "setting", "missing_rate", "section", "metric", "value", "n",
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
    "oracle": "oracle recovery",
    "random_retrieval": "random retrieval",
    "neighbour_mean": "neighbour mean",
    "no_cmr": "w/o CMR",
    "no_cap": "w/o CAP",
    "no_cmr_cap": "w/o CMR & CAP",
    "no_stage1": "w/o stage I",
    "no_rank_loss": "w/o ranking loss",
    "no_mixing": "w/o expert mixing",
    "no_grounding": "w/o grounding heads",
    "no_audio_pretraining": "w/o audio encoder pretraining",
    "no_grounding_attributes": "w/o loudness / rhythm tags",
    "no_grounding_playing": "w/o who-plays tags",
    "no_votes": "w/o expert votes",
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


def seed_mean(results: pd.DataFrame) -> pd.DataFrame:
    """``evaluation_results`` averaged over seeds: ``value`` = mean, plus ``sd`` (sample
    standard deviation, NaN with one seed) and ``n_seeds``; no ``seed`` column."""
    keys = ["method", "setting", "missing_rate", "section", "metric"]
    g = results.groupby(keys, sort=False)
    out = g.agg(value=("value", "mean"), sd=("value", "std"), n_seeds=("seed", "nunique"),
                n=("n", "first")).reset_index()  # fmt: skip
    return out


def over_seeds(per_seed: Sequence[pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    """Tables built once per seed -> one table: every numeric column's mean over seeds, a
    ``<column>_sd`` (sample sd, NaN with one seed) after the means, and ``n_seeds``."""
    stacked = pd.concat(list(per_seed), ignore_index=True)
    if stacked.empty:
        return stacked
    numeric = [c for c in stacked.columns if c not in keys and
               pd.api.types.is_numeric_dtype(stacked[c])]  # fmt: skip
    g = stacked.groupby(list(keys), sort=False, dropna=False)
    mean = g[numeric].mean()
    sd = g[numeric].std().add_suffix("_sd")
    n = g.size().rename("n_seeds")
    return pd.concat([mean, sd, n], axis=1).reset_index().round(2)


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


def _correct_matrix(pred: pd.DataFrame, question_ids: np.ndarray) -> np.ndarray:
    """``correct`` of one method at one (setting, rate) as ``[S, Q]``: a row per seed (sorted),
    questions in ``question_ids`` order."""
    wide = pred.pivot_table(index="seed", columns="question_id", values="correct",
                            aggfunc="first")  # fmt: skip
    return wide.sort_index()[question_ids].to_numpy(dtype=np.float64)


def _scopes(ref: pd.DataFrame, paper_columns: str) -> dict[str, np.ndarray]:
    """Question selections of the compared metrics: Overall, and the paper's Avg (MUSIC-AVQA:
    the Audio-Visual questions with ``paper_columns: audio_visual``; AVQA: every question)."""
    modality = ref["modality"].to_numpy()
    avqa_style = "benchmark" in ref.columns and (ref["benchmark"] == "avqa").all()
    avg = (modality == "Audio-Visual" if paper_columns == "audio_visual" and not avqa_style
           else np.ones(len(ref), bool))  # fmt: skip
    return {"Overall": np.ones(len(ref), bool), "Avg": avg}


def compare(predictions: pd.DataFrame, a: str, b: str, setting: str, rate: float,
            paper_columns: str, n_boot: int, seed: int) -> dict[str, tuple[float, float, float, int, int]]:  # fmt: skip
    """``a - b`` in points per metric (Overall, Avg) at one (setting, rate), over the seeds both
    were trained with and the same questions: ``{metric: (delta, low, high, n_q, n_seeds)}``
    (95 % bootstrap over seeds and questions, ``metrics.paired_bootstrap``); empty if either
    method was not evaluated there."""
    from .metrics import paired_bootstrap

    at = predictions[(predictions["setting"] == setting) & (predictions["missing_rate"] == rate)]
    pa, pb = at[at["method"] == a], at[at["method"] == b]
    seeds = sorted(set(pa["seed"]) & set(pb["seed"]))
    if not seeds:
        return {}
    pa, pb = pa[pa["seed"].isin(seeds)], pb[pb["seed"].isin(seeds)]
    ref = pa[pa["seed"] == seeds[0]]
    qids = ref["question_id"].to_numpy()
    ma, mb = _correct_matrix(pa, qids), _correct_matrix(pb, qids)
    out = {}
    for metric, sel in _scopes(ref, paper_columns).items():
        if sel.any():
            d, lo, hi = paired_bootstrap(ma[:, sel], mb[:, sel], n_boot, seed)
            out[metric] = (d, lo, hi, int(sel.sum()), len(seeds))
    return out


def comparison_table(
    predictions: pd.DataFrame,
    reference: str,
    methods: Sequence[str],
    paper_columns: str,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Each method minus ``reference`` (percentage points) on the same questions, per missing
    setting and rate, for the paper Avg and the overall accuracy, with 95 % intervals from a
    bootstrap over seeds and questions. ``significant``: the interval excludes 0."""
    rows = []
    runs = predictions[["setting", "missing_rate"]].drop_duplicates().sort_values(
        ["setting", "missing_rate"])  # fmt: skip
    for method in methods:
        if method == reference:
            continue
        for setting, rate in runs.itertuples(index=False):
            if setting == "complete":
                continue
            got = compare(predictions, method, reference, setting, rate, paper_columns, n_boot,
                          seed)  # fmt: skip
            for metric, (d, lo, hi, n, n_seeds) in got.items():
                rows.append({"method": label(method), "setting": setting, "missing_rate": rate,
                             "metric": metric, "delta_vs_" + reference: d, "ci_low": lo,
                             "ci_high": hi, "significant": bool(lo > 0 or hi < 0), "n": n,
                             "n_seeds": n_seeds})  # fmt: skip
    return pd.DataFrame(rows).round(2)


#: The claims the verdict table tests: (claim, paper source, better, worse). A claim holds when
#: ``better - worse`` is above 0 with 95 % confidence (bootstrap over seeds and questions),
#: is reversed when it is below 0 with 95 % confidence, and shows no difference otherwise.
CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("R2ScP beats zero-fill", "Table 1", "r2scp", "zero_fill"),
    ("R2ScP beats mean-fill", "Table 1", "r2scp", "mean_fill"),
    ("R2ScP beats generative imputation", "Sec. 3.1 / Table 1", "r2scp", "generative"),
    ("R2ScP beats router masking", "Table 1 (SimMLM)", "r2scp", "router_mask"),
    ("retrieval beats random real features", "Sec. 3.2 (bracket)", "r2scp", "random_retrieval"),
    ("true features beat R2ScP's recovery", "upper bound (bracket)", "oracle", "r2scp"),
    ("CMR helps", "Table 2", "r2scp", "no_cmr"),
    ("CAP helps", "Table 2", "r2scp", "no_cap"),
    ("CMR + CAP help", "Table 2", "r2scp", "no_cmr_cap"),
    ("stage I pretraining helps", "Table 3", "r2scp", "no_stage1"),
    ("expert mixing training helps", "Table 3", "r2scp", "no_mixing"),
    ("the ranking loss helps", "Table 3", "r2scp", "no_rank_loss"),
    ("grounding heads help", "not in the paper", "r2scp", "no_grounding"),
    ("audio encoder pretraining helps", "not in the paper", "r2scp", "no_audio_pretraining"),
    ("loudness / rhythm tags help", "not in the paper", "r2scp", "no_grounding_attributes"),
    ("who-plays tags help", "not in the paper", "r2scp", "no_grounding_playing"),
    ("expert votes help", "not in the paper", "r2scp", "no_votes"),
)


def verdict(low: float, high: float) -> str:
    """The fixed rule: ``holds`` (interval above 0), ``reversed`` (below 0), else no difference."""
    return "holds" if low > 0 else "reversed" if high < 0 else "no difference at 95%"


def claims_table(predictions: pd.DataFrame, settings: Sequence[str], rate: float,
                 paper_columns: str, n_boot: int, seed: int) -> pd.DataFrame:  # fmt: skip
    """Which of the paper's claims reproduce: one row per (claim, missing setting) at missing
    rate ``rate`` on the paper's Avg, with the difference, its 95 % interval, the number of
    seeds and the verdict (:func:`verdict`); ``not run`` where a method was not evaluated."""
    rows = []
    for claim, source, better, worse in CLAIMS:
        for setting in settings:
            if setting == "complete":
                continue
            got = compare(predictions, better, worse, setting, rate, paper_columns, n_boot, seed)
            base = {"claim": claim, "paper": source, "setting": setting, "missing_rate": rate,
                    "better": label(better), "worse": label(worse)}  # fmt: skip
            if "Avg" not in got:
                rows.append({**base, "delta": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                             "n_seeds": 0, "verdict": "not run"})  # fmt: skip
                continue
            d, lo, hi, _, n_seeds = got["Avg"]
            rows.append({**base, "delta": d, "ci_low": lo, "ci_high": hi, "n_seeds": n_seeds,
                         "verdict": verdict(lo, hi)})  # fmt: skip
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
