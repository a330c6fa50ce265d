"""Nodes of the ``evaluate`` pipeline: protocol, methods, metrics, tracking, report.

Order of work (``pipeline.py``): parameters are checked first (no data input, so Kedro runs the
check in its first group, before the dataset pipeline); the trained model is checked against
the data (answer vocabulary, feature widths); masks are drawn once and every method reads the
same table. Nothing is trained here: every method and ablation is a model the ``variants``
pipeline trained (per seed), answered through ``training.predict``. See ``docs/evaluate.md``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from r2scp_pipeline import avqa
from r2scp_pipeline.data import AVQATensors, build_tensors
from r2scp_pipeline.experiment import check_parameters
from r2scp_pipeline.multiple_choice import benchmark_of, choice_prior, is_multiple_choice
from r2scp_pipeline.splits import membership
from r2scp_pipeline.training import (
    build_cache,
    cache_key,
    load_model,
    predict,
    predict_experts,
    torch_threads,
)
from r2scp_pipeline.variants import recovery_for, seed_key
from r2scp_pipeline.vocabulary import EXPERTS, SETTINGS

from . import report as rep
from .masks import draw_masks, mask_lookup, video_mask
from .metrics import report_for
from .tracking import log_child_runs

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "method", "seed", "setting", "missing_rate", "question_id", "video_id", "missing", "modality",
    "subtype", "answer_idx", "pred_idx", "correct", "alpha_audio", "alpha_visual", "alpha_text",
    "benchmark",
)  # fmt: skip


# ---- 1. checks before any work ------------------------------------------------------------------
def check_evaluate_parameters(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Validate ``params:evaluate`` before anything else runs (no data input: Kedro schedules
    this node in the first group, so a bad missing rate or method name stops the run at once).

    Returns the validated parameters as a plain dict (``config.EvalConfig`` fields).
    """
    cfg = check_parameters(params, seed)
    out = asdict(cfg)
    out.pop("raw")
    out["ablation_methods"] = list(cfg.ablation_methods)
    out["runs"] = [list(r) for r in cfg.runs()]
    logger.info("evaluate: %d methods x %d (setting, rate) runs", len(cfg.methods), len(cfg.runs()))
    return out


def _feature_dim(table: pd.DataFrame, name: str) -> int:
    if len(table) == 0:
        raise ValueError(f"{name} is empty")
    return len(table["feature"].iloc[0])


def check_model_compatibility(
    config: dict[str, Any],
    r2scp_model: dict[str, Any],
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
) -> dict[str, Any]:
    """Stop before any evaluation work if ``r2scp_model`` cannot answer these data.

    Checks the answer vocabulary (the model's ``n_answers`` and, when the checkpoint records
    it, the answer list itself, against ``avqa.ANSWERS`` and the ``answer_idx`` of
    ``qa_pairs``), the feature widths (Da, Dv, Dt) against the feature tables, and that the
    evaluated split has questions. Returns the data's dims and split size.
    """
    try:
        mcfg = r2scp_model["config"]
    except (KeyError, TypeError) as exc:
        raise ValueError("r2scp_model is not an R2ScP checkpoint (no 'config')") from exc
    errors = []
    n_answers = int(mcfg.get("n_answers", -1))
    choices = mcfg.get("answer_format", "classes") == "choices"
    if choices != is_multiple_choice(qa_pairs):
        errors.append(
            "answer format: r2scp_model answers "
            + ("multiple-choice" if choices else "open-ended (42 classes)")
            + " questions but qa_pairs holds "
            + ("multiple-choice" if is_multiple_choice(qa_pairs) else "open-ended")
            + " ones; retrain it on these data (kedro run --pipelines=train)"
        )
    elif choices:
        widths = {len(c) for c in qa_pairs["choices"]}
        if widths != {n_answers}:
            errors.append(f"answer format: r2scp_model scores {n_answers} candidates, the "
                          f"questions have {sorted(widths)}; retrain it")  # fmt: skip
    elif n_answers != len(avqa.ANSWERS):
        errors.append(
            f"answer vocabulary: r2scp_model was trained on {n_answers} answers, the data use "
            f"avqa.ANSWERS ({len(avqa.ANSWERS)}); retrain it (kedro run --pipelines=train)"
        )
    answers = (r2scp_model.get("meta") or {}).get("answers") or mcfg.get("answers")
    if not choices and answers is not None and list(answers) != list(avqa.ANSWERS):
        errors.append(
            "answer vocabulary: r2scp_model records another answer list than "
            "avqa.ANSWERS; retrain it"
        )
    max_idx = int(qa_pairs["answer_idx"].max()) if len(qa_pairs) else -1
    if not choices and 0 < n_answers <= max_idx:
        errors.append(
            f"answer vocabulary: qa_pairs has answer_idx {max_idx} but r2scp_model "
            f"has only {n_answers} answers"
        )
    dims = {
        "d_audio": _feature_dim(audio_features, "audio_features"),
        "d_visual": _feature_dim(visual_features, "visual_features"),
        "d_text": _feature_dim(question_features, "question_features"),
    }
    for key, value in dims.items():
        if int(mcfg.get(key, -1)) != value:
            errors.append(
                f"feature dimension: r2scp_model has {key}={mcfg.get(key)} but the "
                f"{key[2:]} features have {value}; retrain the model on these features "
                "(kedro run --pipelines=train) or evaluate on the features it was trained on"
            )
    n_split = int((qa_pairs["split"] == config["split"]).sum())
    if n_split == 0:
        errors.append(f"qa_pairs has no question in split {config['split']!r} (evaluate.split)")
    if errors:
        raise ValueError(
            "r2scp_model does not fit the evaluated data:\n  - " + "\n  - ".join(errors)
        )
    return {"dims": dims, "n_questions": n_split, "n_answers": n_answers}


# ---- 2. masks -----------------------------------------------------------------------------------
def draw_missing_masks(config: dict[str, Any], video_index: pd.DataFrame) -> pd.DataFrame:
    """``missing_masks``: which videos of ``evaluate.split`` miss a modality per (setting, rate).

    Drawn per video with a question in the split (``video_index.in_<split>``), also when the
    video has questions in other splits (official protocol): its other questions are unaffected.

    Drawn once from ``params:seed``; every method reads this one table (``masks.py``).
    """
    split = config["split"]
    present = membership(video_index)
    if split not in present.columns:
        raise ValueError(f"evaluate.split={split!r} is not one of {list(present.columns)}")
    ids = present.index[present[split]].astype(str).tolist()  # shared videos included
    if not ids:
        raise ValueError(
            f"video_index has no video of split {split!r} (evaluate.split): splits present "
            f"{[s for s in present.columns if present[s].any()]}"
        )
    masks = draw_masks(ids, config["settings"], config["missing_rates"], config["seed"])
    logger.info(
        "missing masks: %d videos x %d (setting, rate) pairs",
        len(ids),
        masks.groupby(["setting", "missing_rate"]).ngroups,
    )
    return masks


# ---- 5. evaluation ------------------------------------------------------------------------------
def _eval_tensors(
    config: dict[str, Any],
    n_needed: int,
    qa_pairs,
    audio_features,
    visual_features,
    question_features,
    memory_bank_audio,
    memory_bank_visual,
    neighbors,
) -> AVQATensors:
    return build_tensors(
        qa_pairs,
        audio_features,
        visual_features,
        question_features,
        memory_bank_audio,
        memory_bank_visual,
        neighbors,
        n_neighbors=n_needed,
    )


def _question_meta(qa_pairs: pd.DataFrame, tensors: AVQATensors, split: str) -> pd.DataFrame:
    """``question_id, video_id, modality, subtype, benchmark`` of the split, in ``predict``'s
    row order (``benchmark``: how the results are broken down, ``multiple_choice.benchmark_of``)."""
    rows = tensors.indices(split)
    qa = qa_pairs.reset_index(drop=True).iloc[rows]
    return pd.DataFrame({
        "question_id": qa["question_id"].to_numpy(np.int64),
        "video_id": qa["video_id"].astype(str).to_numpy(),
        "modality": qa["modality"].astype(str).to_numpy(),
        "subtype": qa["subtype"].astype(str).to_numpy(),
        "benchmark": benchmark_of(qa_pairs),
    })  # fmt: skip


def _prediction_frame(meta, p, method, seed, setting, rate) -> pd.DataFrame:
    if not np.array_equal(meta["question_id"].to_numpy(), p.question_id):
        raise RuntimeError("predictions are not in qa_pairs order")  # a bug, never data
    return pd.DataFrame({
        "method": method, "seed": np.int64(seed), "setting": setting,
        "missing_rate": np.float64(rate),
        "question_id": p.question_id, "video_id": meta["video_id"].to_numpy(),
        "missing": p.missing > 0, "modality": meta["modality"].to_numpy(),
        "subtype": meta["subtype"].to_numpy(), "answer_idx": p.answer, "pred_idx": p.pred,
        "correct": p.pred == p.answer,
        **{f"alpha_{m}": p.expert_weights[:, i].astype(np.float32) for i, m in enumerate(EXPERTS)},
        "benchmark": meta["benchmark"].to_numpy(),
    })  # fmt: skip


def results_from_predictions(predictions: pd.DataFrame, paper_columns: str) -> pd.DataFrame:
    """Long ``evaluation_results`` table (``report.RESULT_COLUMNS``, one row per method, seed,
    setting, rate and metric) from the predictions: the official accuracies, the paper's
    columns, accuracy on the masked / intact videos' questions (section ``subset``), and the
    mean router weights (section ``loads``). Multiple-choice predictions (column ``benchmark``
    = ``avqa``) get AVQA's breakdown (``metrics.choice_accuracy_report``)."""
    rows = []
    keys = ["method", "seed", "setting", "missing_rate"]
    benchmark = _benchmark(predictions)
    for (method, seed, setting, rate), d in predictions.groupby(keys, sort=False):
        head = (method, int(seed), setting, rate)
        r = report_for(
            benchmark,
            d["modality"].to_numpy(),
            d["subtype"].to_numpy(),
            d["correct"].to_numpy(),
            paper_columns,
        )
        for section in ("types", "modalities", "overall", "paper"):
            for metric, value in r[section].items():
                rows.append((*head, section, metric, value, r["counts"][metric]))
        for name, sel in (("masked_videos", d["missing"]), ("intact_videos", ~d["missing"])):
            if sel.any():
                acc = 100.0 * float(d.loc[sel, "correct"].mean())
                rows.append((*head, "subset", name, acc, int(sel.sum())))
        for m in EXPERTS:
            rows.append((*head, "loads", m, float(d[f"alpha_{m}"].mean()), len(d)))
    out = pd.DataFrame(rows, columns=list(rep.RESULT_COLUMNS))
    out["missing_rate"] = out["missing_rate"].astype(np.float64)
    out["n"] = out["n"].astype(np.int64)
    if not np.isfinite(out["value"].to_numpy()).all():
        raise FloatingPointError("an evaluation metric is NaN/inf")
    return out


def _trained(variant_models: dict[str, dict[str, Any]], method: str, seed: int) -> dict[str, Any]:
    """The checkpoint of ``method`` at ``seed``, or a ``ValueError`` saying what to re-run."""
    art = variant_models.get(method)
    rerun = f"kedro run --pipelines=variants --namespaces={method}"
    if art is None:
        raise ValueError(f"no trained variant {method!r} was given to evaluate_methods")
    if not art.get("selected") or seed_key(seed) not in art.get("models", {}):
        raise ValueError(
            f"variant {method!r} has no model for seed {seed} (trained seeds: "
            f"{sorted(art.get('models', {}))}): it was trained with other evaluate.methods / "
            f"evaluate.seeds; re-run `{rerun}` with these parameters"
        )
    return art["models"][seed_key(seed)]


def _benchmark(predictions: pd.DataFrame) -> str:
    """The benchmark of an ``evaluation_predictions`` table (tables written before the column
    existed are MUSIC-AVQA's)."""
    if "benchmark" not in predictions.columns or predictions.empty:
        return "music_avqa"
    return str(predictions["benchmark"].iloc[0])


def evaluate_methods(
    config: dict[str, Any],
    compatibility: dict[str, Any],
    missing_masks: pd.DataFrame,
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    memory_bank_audio: pd.DataFrame,
    memory_bank_visual: pd.DataFrame,
    neighbors: pd.DataFrame,
    generative_imputers: dict[str, Any],
    **variant_models: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every method (a trained variant) at every seed on every (setting, missing rate)
    with the stored masks, each with its own recovery (``recovery.py``).

    ``variant_models``: ``<variant>.variant_models`` of every variant (keyword = variant name);
    only those in ``evaluate.methods`` are read. Returns ``evaluation_predictions`` (one row
    per method x seed x run x question: prediction, whether its video was masked, router
    weights) and ``evaluation_results`` (the long metric table the report, MLflow and the
    notebook read).
    """
    del compatibility
    ckpts = {(m, s): _trained(variant_models, m, s) for m in config["methods"]
             for s in config["seeds"]}  # fmt: skip
    n_needed = max(int(c["config"]["n_retrieve"]) for c in ckpts.values())
    tensors = build_tensors(
        qa_pairs, audio_features, visual_features, question_features,
        memory_bank_audio, memory_bank_visual, neighbors, n_neighbors=n_needed,
    )  # fmt: skip
    split, bs = config["split"], config["batch_size"]
    meta = _question_meta(qa_pairs, tensors, split)
    masks = {(setting, rate): video_mask(tensors, mask_lookup(missing_masks, setting, rate), split)
             for setting, rate in config["runs"]}  # fmt: skip
    start, frames = time.perf_counter(), []
    caches: dict[str, Any] = {}  # one per frozen stage I: most variants share their experts
    with torch_threads(config.get("threads")):
        for (method, seed), ckpt in ckpts.items():
            recovery = recovery_for(variant_models[method]["recovery"], seed, generative_imputers)
            model = load_model(ckpt, "cpu")
            key = cache_key(model)
            if key not in caches:
                caches[key] = build_cache(model, tensors)
            cache = caches[key]
            for setting, rate in config["runs"]:
                missing = SETTINGS[setting] or "none"
                vmask = masks[(setting, rate)] if missing != "none" else None
                p = predict(model, tensors, split, missing, vmask, mask_level="video",
                            recovery=recovery, cache=cache, batch_size=bs)  # fmt: skip
                frames.append(_prediction_frame(meta, p, method, seed, setting, rate))
                logger.info("evaluate %-16s seed %d %-14s rate %.2f: accuracy %.2f%%", method,
                            seed, setting, rate, 100 * p.accuracy)  # fmt: skip
    predictions = pd.concat(frames, ignore_index=True)
    logger.info("evaluated %d methods x %d seeds x %d runs in %.1f s", len(config["methods"]),
                len(config["seeds"]), len(config["runs"]), time.perf_counter() - start)  # fmt: skip
    return predictions, results_from_predictions(predictions, config["paper_columns"])


# ---- 6. sweep -----------------------------------------------------------------------------------
def sweep_n_k(
    config: dict[str, Any],
    compatibility: dict[str, Any],
    r2scp_model: dict[str, Any],
    missing_masks: pd.DataFrame,
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
    memory_bank_audio: pd.DataFrame,
    memory_bank_visual: pd.DataFrame,
    neighbors: pd.DataFrame,
) -> tuple[pd.DataFrame, Figure]:
    """The paper's Fig. 4 at inference time: R2ScP's Avg accuracy when n (retrieved candidates,
    eq. 4) varies with k at the model's value, and when k (purification budget, eqs. 5/7)
    varies with n at the model's value. Empty table when ``evaluate.sweep.enabled`` is false.
    """
    del compatibility
    sw = config["sweep"]
    cols = ["setting", "vary", "n", "k", "value"]
    if not sw.get("enabled"):
        empty = pd.DataFrame(
            {c: pd.Series(dtype="float64" if c == "value" else "object") for c in cols}
        )
        return empty, rep.sweep_figure(empty)
    with torch_threads(config.get("threads")):
        table = _sweep(
            config,
            sw,
            r2scp_model,
            missing_masks,
            qa_pairs,
            audio_features,
            visual_features,
            question_features,
            memory_bank_audio,
            memory_bank_visual,
            neighbors,
        )
    return table, rep.sweep_figure(table)


def _sweep(
    config,
    sw,
    r2scp_model,
    missing_masks,
    qa_pairs,
    audio_features,
    visual_features,
    question_features,
    memory_bank_audio,
    memory_bank_visual,
    neighbors,
) -> pd.DataFrame:
    cols = ["setting", "vary", "n", "k", "value"]
    model = load_model(r2scp_model, "cpu")
    ranks = int(neighbors.groupby(["query_video_id", "direction", "polarity"]).size().min())
    if max(sw["n"]) > ranks:
        raise ValueError(
            f"evaluate.sweep.n goes up to {max(sw['n'])} but the neighbors table "
            f"holds {ranks} per video: set build_index.neighbors.n >= {max(sw['n'])} "
            "and re-run build_index"
        )
    tensors = _eval_tensors(
        config,
        max(sw["n"]),
        qa_pairs,
        audio_features,
        visual_features,
        question_features,
        memory_bank_audio,
        memory_bank_visual,
        neighbors,
    )
    if max(sw["k"]) > tensors.num_segments:
        raise ValueError(
            f"evaluate.sweep.k goes up to {max(sw['k'])} but videos have "
            f"{tensors.num_segments} segments"
        )
    meta = _question_meta(qa_pairs, tensors, config["split"])
    cache = build_cache(model, tensors)
    rate = float(sw.get("missing_rate", 1.0))
    rows = []
    for setting in sw.get("settings", ["audio_missing", "visual_missing"]):
        missing = SETTINGS[setting]
        vmask = video_mask(tensors, mask_lookup(missing_masks, setting, rate), config["split"])
        grid = [("n", n, model.cfg.k_purge) for n in sw["n"]] + [
            ("k", model.cfg.n_retrieve, k) for k in sw["k"]
        ]
        for vary, n, k in grid:
            p = predict(
                model,
                tensors,
                config["split"],
                missing,
                vmask,
                mask_level="video",
                cache=cache,
                n_retrieve=n,
                k_purge=k,
                batch_size=config["batch_size"],
            )
            r = report_for(
                str(meta["benchmark"].iloc[0]), meta["modality"], meta["subtype"],
                p.pred == p.answer, config["paper_columns"],
            )  # fmt: skip
            rows.append((setting, vary, n, k, r["paper"].get("Avg", r["overall"]["Overall"])))
    return pd.DataFrame(rows, columns=cols)


# ---- 7. tracking and report -------------------------------------------------------------------
def log_evaluation_runs(
    config: dict[str, Any], evaluation_results: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """One nested MLflow run per (method, seed, setting, missing rate) under the ``kedro run``'s
    run (``tracking.py``); returns the seed-mean headline metrics for the parent run
    (``<method>/<setting>/rate_<r>/{Avg,Overall}``)."""
    log_child_runs(evaluation_results, tags={"split": config["split"]})
    mean = rep.seed_mean(evaluation_results)
    head = mean[((mean["section"] == "paper") & (mean["metric"] == "Avg"))
                | (mean["section"] == "overall")]  # fmt: skip
    return {
        f"{r.method}/{r.setting}/rate_{r.missing_rate:g}/{r.metric}": {
            "step": 0,
            "value": float(r.value),
        }
        for r in head.itertuples()
    }


def build_reports(
    config: dict[str, Any],
    evaluation_results: pd.DataFrame,
    evaluation_predictions: pd.DataFrame,
    split_protocol: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, str, pd.DataFrame, str, pd.DataFrame, str, pd.DataFrame, str, Figure,
           Figure]:  # fmt: skip
    """Table-1-style results, Table-2/3-style ablations (both: mean over seeds, ``<col>_sd``,
    ``n_seeds``), every method against R2ScP and the paper's claims with 95 % intervals over
    seeds and questions (markdown + CSV each), accuracy vs missing rate (Fig. 5) and the
    evaluated expert loads. Every table names the dataset's split protocol (``split_protocol``
    report of the dataset pipeline; column ``protocol`` of the CSV tables)."""
    protocol = str((split_protocol or {}).get("protocol", "unrecorded"))
    protocol_note = f" Split protocol: {protocol}" + (
        f" ({split_protocol['description']})."
        if split_protocol and split_protocol.get("description")
        else "."
    )
    seeds = sorted({int(x) for x in evaluation_results["seed"]})
    seed_note = (f" Mean over {len(seeds)} seeds {seeds} (each method trained per seed); "
                 "`_sd`: standard deviation across seeds." if len(seeds) > 1 else
                 f" One seed ({seeds[0]}): no spread across seeds.")  # fmt: skip
    rate = float(config["report"]["table_missing_rate"])
    settings = list(config["settings"])
    per_seed = [evaluation_results[evaluation_results["seed"] == s] for s in seeds]
    base = [m for m in config["methods"] if m not in config["ablation_methods"]]
    benchmark = _benchmark(evaluation_predictions)
    if benchmark == "avqa":
        table = rep.over_seeds(
            [rep.choice_results_table(r, base, settings, rate) for r in per_seed],
            ["method", "setting", "missing_rate"],
        )
        note = (
            f"AVQA-style multiple choice. Missing settings at missing rate {rate:g} (fraction "
            f"of {config['split']} videos whose modality is dropped); one column per AVQA "
            "question type and per question relation, Overall = accuracy over all questions; "
            "paper AVQA: the paper's Table 1 AVQA column for R2ScP (its numbers, not ours). "
            "Average: mean of the setting rows. Every method is a model trained with its own "
            "fill." + seed_note + protocol_note
        )
    else:
        table = rep.over_seeds([rep.results_table(r, base, settings, rate) for r in per_seed],
                               ["method", "setting", "missing_rate"])  # fmt: skip
        pooled = (
            "the five Audio-Visual sub-types; Avg = Audio-Visual accuracy (micro)"
            if config["paper_columns"] == "audio_visual"
            else "sub-types pooled over all modalities; Avg = overall accuracy (micro)"
        )
        note = (
            f"Missing settings at missing rate {rate:g} (fraction of {config['split']} videos "
            f"whose modality is dropped); paper columns: {pooled}; Audio / Visual / "
            "Audio-Visual / Overall: the official MUSIC-AVQA accuracies. Average: mean of the "
            "setting rows. Every method is a model trained with its own fill." + seed_note
            + protocol_note
        )
    shown = [c for c in table.columns
             if not c.endswith("_sd") or c in ("Avg_sd", "Overall_sd")]  # fmt: skip
    table_md = rep.to_markdown(table[shown], "Results (cf. paper Table 1)", note)
    abl_methods = (["r2scp"] if "r2scp" in config["methods"] else []) + list(
        config["ablation_methods"]
    )
    desc = {n: s.get("description", "") for n, s in config["ablations"].items()}
    desc["r2scp"] = "full model"
    abl = rep.over_seeds(
        [rep.ablation_table(r, abl_methods, settings, rate, desc, benchmark) for r in per_seed],
        ["method", "change"],
    )
    abl = abl[[c for c in abl.columns if not c.startswith("paper") or not c.endswith("_sd")]]
    paper_of = "AVQA (Table 2 only)" if benchmark == "avqa" else "Music-AVQA"
    abl_md = rep.to_markdown(
        abl[[c for c in abl.columns if not c.endswith("_sd") or c == "Avg A/V missing_sd"]],
        "Ablations (cf. paper Tables 2 and 3)",
        f"Avg per setting at missing rate {rate:g}; 'Avg A/V missing' = mean of the two missing "
        f"settings (Table 3's metric); 'paper ...' = the paper's {paper_of} numbers. Each "
        "ablation is R2ScP retrained without exactly what 'change' names." + seed_note
        + protocol_note,
    )
    n_boot = int(config["report"].get("bootstrap", 2000))
    if "r2scp" in config["methods"]:
        comp = rep.comparison_table(evaluation_predictions, "r2scp", list(config["methods"]),
                                    config["paper_columns"], n_boot, config["seed"])  # fmt: skip
    else:
        comp = pd.DataFrame(columns=["method", "setting", "missing_rate", "metric"])
    at_rate = comp[comp["missing_rate"] == rate] if len(comp) else comp
    comp_md = rep.to_markdown(
        at_rate,
        "Each method minus R2ScP (percentage points, same questions)",
        f"Missing rate {rate:g}; 95% interval from a bootstrap over seeds and {config['split']} "
        "questions; significant = the interval excludes 0. All rates: comparison_table.csv."
        + protocol_note,
    )
    claims = rep.claims_table(evaluation_predictions, settings, rate, config["paper_columns"],
                              n_boot, config["seed"])  # fmt: skip
    claims_md = rep.to_markdown(
        claims,
        "Which of the paper's claims reproduce here",
        f"Avg at missing rate {rate:g}; delta = better - worse in points with its 95% interval "
        "(bootstrap over seeds and questions). Fixed rule: 'holds' if the interval is above 0, "
        "'reversed' if below 0, else 'no difference at 95%'; 'not run' if a method was not "
        "evaluated (evaluate.methods)." + protocol_note,
    )
    table, abl, comp, claims = (t.assign(protocol=protocol) for t in (table, abl, comp, claims))
    mean = rep.seed_mean(evaluation_results)
    section, metric = config["report"]["plot_metric"]
    fig_rate = rep.accuracy_vs_rate_figure(
        mean, list(config["methods"]), (section, metric), config["ablation_methods"]
    )
    fig_loads = rep.expert_loads_figure(None, mean[mean["section"] == "loads"])
    return (table, table_md, abl, abl_md, comp, comp_md, claims, claims_md, fig_rate,
            fig_loads)  # fmt: skip


__all__ = [
    "build_reports", "check_evaluate_parameters", "check_model_compatibility",
    "draw_missing_masks", "evaluate_methods", "log_evaluation_runs", "results_from_predictions",
    "sweep_n_k",
]  # fmt: skip


# ---- which modality each question needs (stage-I experts alone) -------------------------------
def modality_needs_report(
    config: dict[str, Any],
    compatibility: dict[str, Any],
    stage1_experts: dict[str, Any],
    evaluation_predictions: pd.DataFrame,
    qa_pairs: pd.DataFrame,
    audio_features: pd.DataFrame,
    visual_features: pd.DataFrame,
    question_features: pd.DataFrame,
) -> tuple[pd.DataFrame, str]:
    """Accuracy per question type and per template of each stage-I expert *alone* (audio,
    visual, text: eq. 10 heads), of the answer prior (most frequent training answer of the
    template), of the complete R2ScP model and of zero-fill at the highest missing rate.

    Where the audio expert beats the prior and the visual expert does not, the question needs
    audio; the zero-fill columns show what losing a modality costs (the headroom recovery can
    win back). Returns the table (``modality_needs``) and its markdown.
    """
    del compatibility  # ordering only: the model was checked against these features
    split = config["split"]
    tensors = build_tensors(qa_pairs, audio_features, visual_features, question_features)
    with torch_threads(config.get("threads")):
        experts = predict_experts(load_model(stage1_experts, "cpu"), tensors, split)
    meta = _question_meta(qa_pairs, tensors, split)
    qa = qa_pairs.reset_index(drop=True)
    meta["template"] = qa["template"].astype(str).to_numpy()[tensors.indices(split)]
    answer = tensors.answer[tensors.indices(split)].numpy()
    train = qa[qa["split"] == "train"]
    if is_multiple_choice(qa):  # AVQA: no templates; the candidate prior per question type
        prior_ok = choice_prior(train, qa.iloc[tensors.indices(split)]) == answer
        meta["template"] = ""  # one row per type, no template rows
    else:
        prior = train.groupby("template")["answer_idx"].agg(lambda a: a.value_counts().idxmax())
        prior_ok = meta["template"].map(prior).fillna(-1).to_numpy() == answer
    columns = {
        "prior": prior_ok,
        **{f"{m}_expert": experts[m] == answer for m in EXPERTS},
    }
    preds = evaluation_predictions
    preds = preds[preds["seed"] == preds["seed"].min()]  # one trained model per method
    for label, method, setting in (
        ("r2scp_complete", "r2scp", "complete"),
        ("zero_fill_audio_missing", "zero_fill", "audio_missing"),
        ("zero_fill_visual_missing", "zero_fill", "visual_missing"),
    ):
        sel = preds[(preds["method"] == method) & (preds["setting"] == setting)]
        if sel.empty:
            continue
        sel = sel[sel["missing_rate"] == sel["missing_rate"].max()]
        by_q = sel.set_index("question_id")["correct"]
        columns[label] = meta["question_id"].map(by_q).to_numpy(dtype=bool)
    table = rep.modality_needs_table(meta, columns)
    if is_multiple_choice(qa):
        table = table[table["level"] != "template"].reset_index(drop=True)
    md = rep.to_markdown(
        table[table["level"] != "template"].drop(columns=["level", "template"]),
        "Which modality each question type needs (accuracy %, " + split + " split)",
        "audio/visual/text_expert: the stage-I expert alone (eq. 10); prior: "
        + ("the candidate most often right for the question type in training"
           if is_multiple_choice(qa) else "most frequent training answer of the template")
        + "; r2scp_complete: the full model with both modalities; "
        "zero_fill_*: the missing modality replaced by zeros at the highest missing rate.",
    )
    return table, md
