"""Write the figures of README.md and docs/*.md from the committed result files.

Numbers in the documentation are never typed: each figure lives in a block

    <!-- BEGIN GENERATED name -->
    ... (rewritten by this script) ...
    <!-- END GENERATED name -->

whose body is produced by ``RENDERERS[name]`` from files under ``docs/results/`` (written by
the commands that measured them). ``python scripts/render_docs.py`` rewrites every block;
``--check`` only reports blocks that differ from their source (a test runs it).

To add a figure: write its result file from the command that measures it, add a renderer
below (a function ``root -> markdown``), and put the empty block where it should appear.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")
EXPERTS = ("audio", "visual", "text")  # the stage-I experts, as the result files name them
BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED (?P=name) -->)",
    re.S,
)


def load_json(root: Path, name: str) -> dict:
    path = root / RESULTS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the command that writes it (see docs)")
    return json.loads(path.read_text())


def md_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats get two decimals."""

    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


#: name of a block -> function(root) returning its markdown body
RENDERERS: dict[str, Callable[[Path], str]] = {}


def renderer(name: str) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
    def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
        RENDERERS[name] = fn
        return fn

    return register


def render_text(text: str, root: Path, source: str = "") -> str:
    def replace(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise KeyError(f"{source}: no renderer for block {name!r} (scripts/render_docs.py)")
        return m.group(1) + RENDERERS[name](root) + m.group(4)

    return BLOCK.sub(replace, text)


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report stale blocks, write nothing")
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    stale = []
    for doc in documents(args.root):
        text = doc.read_text()
        new = render_text(text, args.root, str(doc))
        if new != text:
            stale.append(doc)
            if not args.check:
                doc.write_text(new)
    verb = "stale" if args.check else "rewritten"
    for doc in stale:
        print(f"{verb}: {doc.relative_to(args.root)}")
    return 1 if (args.check and stale) else 0


# ---- renderers (one per block name) -----------------------------------------------------------
# Each reads docs/results/<file> only; keep them short and put the wording in the documents.


@renderer("features.cost")
def features_cost(root: Path) -> str:
    """docs/results/features_cost.json: encoders on the embedded dataset."""
    return features_stages(root, "features_cost.json")


@renderer("features.mp4_cost")
def features_mp4_cost(root: Path) -> str:
    """docs/results/features_mp4_cost.json: synthetic media, wav/JPEG vs mp4 decoding."""
    return features_stages(root, "features_mp4_cost.json")


def features_stages(root: Path, name: str) -> str:
    """A ``benchmarks/features.py --out`` result file: the command, the machine and its load,
    one table row per stage."""
    r = load_json(root, name)
    rows = []
    for st in r["stages"]:
        nn = ""
        if "nn_instrument" in st:
            nn = f"{st['nn_instrument']:.3f} / {st['nn_instrument_cells']:.3f}"
        rows.append(
            [
                st["stage"],
                st["items"],
                float(st["ms_per_item"]),
                float(st["cpu_ms_per_item"]),
                st["dim"],
                st["maxrss_mib"],
                float(st["load_average"]),
                nn,
            ]
        )
    chance = next((st["chance"] for st in r["stages"] if "chance" in st), None)
    head = (
        f"`{r['command']}`  \n{r['source']}; {r['machine']}, torch {r['torch']}, "
        f"threads {r['threads'] or 'all'}; 1-minute load average {r['load_average_start']:.2f} "
        f"at the start, {r['load_average_end']:.2f} at the end"
        + (f"; chance level of the NN check {chance:.3f}" if chance is not None else "")
        + ".\n\n"
    )
    header = ["stage", "items", "ms/item (wall)", "cpu ms/item", "D", "maxrss MiB", "load"]
    return head + md_table(header + ["NN shares an instrument (pooled / cells)"], rows)


@renderer("real_scale")
def render_real_scale(root: Path) -> str:
    """docs/results/real_scale.json, written by ``python benchmarks/real_scale.py``."""
    r = load_json(root, "real_scale.json")
    d = r["data"]
    lines = [
        f"Command: `{r['command'].strip()}` (scale {r['scale']:g}, protocol `{r['protocol']}`, "
        f"{r['epochs']} epoch(s) per training stage, {r['joint_space_epochs']} joint-space "
        f"epochs, {r['torch_threads']} torch thread(s)). Data written: {d['videos']:,} videos; "
        f"train {d['train']['questions']:,} questions on {d['train']['videos']:,} videos, "
        f"val {d['val']['questions']:,} on {d['val']['videos']:,}, test "
        f"{d['test']['questions']:,} on {d['test']['videos']:,} "
        f"({d['val_and_test_videos']:,} videos in both val and test); features "
        f"{sum(d['feature_bytes'].values()) / 1e9:.2f} GB of `.npy`, written in {d['write_s']} s.",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}; "
        f"{r['machine']['shared']}.",
        "",
    ]
    return "\n".join(lines) + "\n" + _stage_tables(r) + _breakdowns(r)


def _stage_tables(r: dict) -> str:
    """Per-stage time and memory, per-epoch training time and the targets of a real-scale run."""
    rows = [
        [name, s["wall_s"], s["cpu_s"], f"{s['peak_rss_mb']:,.0f}",
         " / ".join(f"{x:.2f}" for x in s["load_before"]),
         " / ".join(f"{x:.2f}" for x in s["load_after"])]
        for name, s in r["stages"].items()
    ]  # fmt: skip
    rows.append(["**total**", r["total_wall_s"], "", "", "", ""])
    header = ["stage (`kedro run`)", "wall s", "CPU s", "peak RSS MB",
              "load avg before (1/5/15 min)", "after"]  # fmt: skip
    out = md_table(header, rows) + "\n"
    srows = []
    for key, label in (("stage_one", "stage I (pretrain)"), ("stage_two", "stage II (mix)")):
        s = r[key]
        srows.append([label, f"{s['train_questions']:,}", s["train_s_per_epoch"],
                      s["train_cpu_s_per_epoch"], s["val_s_per_epoch"], s["samples_per_s"]])  # fmt: skip
    out += md_table(["training", "train questions", "train s / epoch", "CPU s / epoch",
                     "val s / epoch", "samples / s"], srows)  # fmt: skip
    t = r["targets"]
    e, m = t["stage_two_epoch_s"], t["peak_rss_gb"]
    out += (
        f"\nTargets: one stage-II epoch <= {e['target']} s: **{e['measured']} s, "
        f"{'met' if e['met'] else 'missed'}**; peak RSS <= {m['target']} GB: "
        f"**{m['measured']} GB, {'met' if m['met'] else 'missed'}**.\n"
    )
    return out


def _breakdowns(r: dict) -> str:
    """The optional ``--breakdown`` and ``--spatial-videos`` lines of a real-scale run."""
    out = ""
    if "stage_two_breakdown" in r:
        b = r["stage_two_breakdown"]
        out += (
            f"\nWhere stage II's time goes (`--breakdown`, {b['train_questions']:,} training "
            "questions of the same tables, one epoch each, CPU ms per training sample): "
            f"default {b['default']['cpu_ms_per_sample']}, without the ranking loss (no R- "
            f"and X_gt passes) {b['no_rank_loss']['cpu_ms_per_sample']}, without the ranking "
            f"loss and without dropping {b['no_rank_loss_no_drop']['cpu_ms_per_sample']}; "
            f"times {r['stage_two']['train_questions']:,} questions: "
            f"{b['default']['cpu_ms_per_sample'] * r['stage_two']['train_questions'] / 1000:.0f}"
            f" / {b['no_rank_loss']['cpu_ms_per_sample'] * r['stage_two']['train_questions'] / 1000:.0f}"
            " CPU s per epoch.\n"
        )
    if "spatial" in r:
        sp = r["spatial"]
        out += (
            f"\nSpatial ResNet-18 maps `[60, 512, 14, 14]` float32: {sp['videos']} videos, "
            f"{sp['bytes_per_video'] / 1e6:.1f} MB each, read by the `features` pipeline's "
            f"precomputed loader in {sp['seconds_per_video']} s per video (files just written, "
            "so read from the page cache); for "
            f"{FULL_VIDEOS:,} videos that is {sp['full_scale_gb']} GB and about "
            f"{sp['full_scale_minutes']} min.\n"
        )
    return out


FULL_VIDEOS = 9288  # MUSIC-AVQA's videos (benchmarks/real_scale.py FULL)


@renderer("real_scale_avqa")
def render_real_scale_avqa(root: Path) -> str:
    """docs/results/real_scale_avqa.json, from ``benchmarks/real_scale.py --benchmark avqa``."""
    r = load_json(root, "real_scale_avqa.json")
    d = r["data"]
    train, test = d["train_qa.json"], d["val_qa.json"]
    lines = [
        f"Command: `{r['command'].strip()}` (scale {r['scale']:g} of AVQA's size, "
        f"{r['epochs']} epoch(s) per training stage, {r['joint_space_epochs']} joint-space "
        f"epochs, {r['torch_threads']} torch thread(s)). Data written: {d['videos']:,} videos; "
        f"train_qa.json {train['questions']:,} questions on {train['videos']:,} videos, "
        f"val_qa.json (the test split) {test['questions']:,} on {test['videos']:,}; four "
        f"candidates per question; features {sum(d['feature_bytes'].values()) / 1e9:.2f} GB "
        f"of `.npy`, written in {d['write_s']} s.",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}; "
        f"{r['machine']['shared']}.",
        "",
    ]
    return "\n".join(lines) + "\n" + _stage_tables(r) + _breakdowns(r)


# ---- the reference run (scripts/reference_run.py -> docs/results/default/) --------------------
def _csv(root: Path, run: str, name: str):
    import pandas as pd

    path = root / RESULTS / run / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python scripts/reference_run.py")
    return pd.read_csv(path)


def _peak_rss_mb(r: dict) -> float:
    """A reference run's peak memory: of the whole process tree (``kedro run`` and the worker
    processes it started, summed) where ``run.json`` has it, else of the largest process. The
    tree is sampled every half second and can miss a short peak that the largest process's
    own maximum (``ru_maxrss``) records, so the larger of the two is the peak."""
    return max(float(r.get("peak_tree_rss_mb", 0.0)), float(r["peak_rss_mb"]))


def _runner(r: dict) -> str:
    """The runner of a reference run: ``run.json``'s ``runner``, else the command's
    ``--runner=`` (older files), else Kedro's default."""
    if r.get("runner"):
        return r["runner"]
    named = [a.split("=", 1)[1] for a in r["command"].split() if a.startswith("--runner=")]
    return named[0] if named else "SequentialRunner"


def _run_line(root: Path, run: str) -> str:
    r = load_json(root, f"{run}/run.json")
    load = r.get("load_average_before", [None])[0]
    runner = f", runner `{_runner(r)}`"
    pss = (f"; PSS, a page that processes share counted once, "
           f"{r['peak_tree_pss_mb'] / 1024:.2f} GB" if "peak_tree_pss_mb" in r else "")
    memory = (
        f"peak RSS {_peak_rss_mb(r) / 1024:.2f} GB summed over its processes (largest one "
        f"{r['peak_rss_mb'] / 1024:.2f} GB{pss})"
        if "peak_tree_rss_mb" in r
        else f"peak RSS {r['peak_rss_mb'] / 1024:.2f} GB"
    )
    return (
        f"Reference run `{r['command']}` (env `{r['env']}`, seed {r['seed']}{runner}) at commit "
        f"`{r['commit'][:10]}`{' (uncommitted changes)' if r['dirty'] else ''}; "
        f"{r['machine']['cpus']} CPUs ({r['machine']['cpu_model']}), 1-minute load average "
        f"{load:.1f} at the start; wall {r['wall_seconds'] / 60:.1f} min, {memory}. "
        f"Files: `docs/results/{run}/`.\n\n"
    )


def _r2scp_row(table, setting: str, method: str = "R2ScP"):
    rows = table[(table["method"] == method) & (table["setting"] == setting)]
    return rows.iloc[0] if len(rows) else None


#: the reference run before the latest change of the base model, kept to show what it changed
PREVIOUS_RUN = "default_previous"


def _previous_run_label(root: Path) -> str | None:
    """``previous run (`<commit>`)`` when ``docs/results/default_previous`` is kept, else None."""
    if not (root / RESULTS / PREVIOUS_RUN / "run.json").exists():
        return None
    return f"previous run (`{load_json(root, f'{PREVIOUS_RUN}/run.json')['commit'][:10]}`)"


def _target_values(root: Path, run: str) -> list[tuple[str, str, float, bool]]:
    """(what, target, measured, reached) of every base-model target in reference run ``run``."""
    r = load_json(root, f"{run}/run.json")
    table = _csv(root, run, "results_table.csv")
    needs = _csv(root, run, "modality_needs.csv")
    mix = load_json(root, f"{run}/mix_history.json")
    pre = load_json(root, f"{run}/pretrain_history.json")
    complete = _r2scp_row(table, "complete")
    types = needs[needs["level"] == "type"].set_index(["modality", "subtype"])["r2scp_complete"]
    rows = []
    for what, col in (("complete, overall", "Overall"), ("complete, Audio questions", "Audio"),
                      ("complete, Visual questions", "Visual")):  # fmt: skip
        v = float(complete[col])
        rows.append((what, ">= 75", v, v >= 75))
    for (mod, sub), target in ((("Visual", "Location"), 70), (("Audio-Visual", "Location"), 70),
                               (("Audio-Visual", "Temporal"), 50)):  # fmt: skip
        v = float(types.get((mod, sub), float("nan")))
        rows.append((f"complete, {mod} {sub}", f">= {target}", v, v >= target))
    for setting in ("audio_missing", "visual_missing"):
        zero = _r2scp_row(table, setting, "zero-fill")
        cost = float(complete["Overall"]) - float(zero["Overall"])
        rows.append((f"zero-fill cost, {setting.replace('_', ' ')} at rate "
                     f"{zero['missing_rate']:g} (points, overall)", ">= 8", cost, cost >= 8))  # fmt: skip
    gap = 100 * float(mix["best"]["train_acc_none"]) - float(complete["Overall"])
    rows.append(("train minus test, complete (points)", "<= 15", gap, gap <= 15))
    wall = r["wall_seconds"] / 60
    rows.append(("default `kedro run` wall time (min)", "<= 20", wall, wall <= 20))
    rss = _peak_rss_mb(r) / 1024
    rows.append(("peak RSS (GB, all processes of the run)", "<= 4", rss, rss <= 4))
    # CPU seconds, not wall: stage I may train its experts in several processes at once
    # (pretrain.expert_processes); in one single-threaded process the two are about equal
    ratio = pre["timing"]["train_samples_per_cpu_s"] / mix["timing"]["train_samples_per_cpu_s"]
    rows.append(("stage II CPU time per sample / stage I's", "<= 2", ratio, ratio <= 2))
    return rows


@renderer("default.targets")
def default_targets(root: Path) -> str:
    """The base model's targets (issue: a base model that sees where and hears what), next to
    the previous reference run's (``PREVIOUS_RUN``) when it is kept."""
    run = "default"
    now = _target_values(root, run)
    mix = load_json(root, f"{run}/mix_history.json")
    header = ["what", "target", "measured", "reached"]
    prev, prev_label = None, _previous_run_label(root)
    if prev_label is not None:
        prev = _target_values(root, PREVIOUS_RUN)
        header.append(prev_label)
    rows = []
    for i, (what, target, v, ok) in enumerate(now):
        row = [what, target, "-" if v != v else f"{v:.1f}", "yes" if ok else "**no**"]
        if prev is not None:
            row.append(f"{prev[i][2]:.1f}")
        rows.append(row)
    train = 100 * float(mix["best"]["train_acc_none"])
    n = mix["best"].get("train_acc_questions")
    drawn = f"a seeded draw of {n} training questions" if n else "every training question"
    note = f"\nTrain accuracy (complete, selected stage-II model): {train:.1f} % on {drawn}.\n"
    return _run_line(root, run) + md_table(header, rows) + note


#: the target rows about speed and memory: they compare no model (the nocue and processor
#: blocks leave them out)
SPEED_TARGETS = ("default `kedro run`", "peak RSS", "stage II CPU time")


#: a reference run of the same training code and configuration as ``OTHER_CPU_PAIR_RUN`` on
#: another processor: how far float rounding alone moves a run's figures
OTHER_CPU_RUN = "default_other_cpu"
#: the run of ``OTHER_CPU_RUN``'s training code on this project's other processor
OTHER_CPU_PAIR_RUN = "default_other_cpu_pair"


@renderer("default.other_cpu")
def default_other_cpu(root: Path) -> str:
    """The base-model targets of ``OTHER_CPU_PAIR_RUN`` next to those of ``OTHER_CPU_RUN``
    (the same training code on another processor), and whether their stage-I histories agree."""
    names = (OTHER_CPU_RUN, OTHER_CPU_PAIR_RUN)
    for n in names:
        if not (root / RESULTS / n / "run.json").exists():
            return f"Not kept: `docs/results/{n}/` holds no run.\n"
    runs = {n: load_json(root, f"{n}/run.json") for n in names}
    cpus = {n: _cpu_of(root, n) for n in names}
    if cpus[names[0]] == cpus[names[1]]:
        raise ValueError(f"{OTHER_CPU_RUN} ran on the same processor as {OTHER_CPU_PAIR_RUN}")
    values = {n: _target_values(root, n) for n in names}
    header = ["what", *(f"{cpus[n]} (`{runs[n]['commit'][:10]}`)" for n in names), "difference"]
    rows = []
    for i, (what, _, v, _) in enumerate(values[names[0]]):
        if what.startswith(SPEED_TARGETS):
            continue  # speed differs between processors anyway
        w = values[names[1]][i][2]
        rows.append([what, f"{v:.1f}", f"{w:.1f}", f"{w - v:+.1f}"])
    hist = [load_json(root, f"{n}/pretrain_history.json")["history"] for n in names]
    same = "the same" if hist[0] == hist[1] else "**not** the same"
    seeds = sorted({runs[n]["seed"] for n in names})
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]} and {seeds[1]}"
    return (f"`docs/results/{names[0]}/` and `docs/results/{names[1]}/`: `kedro run`, {seed}, "
            f"each on a fresh install; stage I's per-epoch histories are {same}.\n\n"
            + md_table(header, rows))  # fmt: skip


#: the reference run of the default configuration on the project's DaskRunner (worker
#: processes), kept to show what it costs and saves against the default SequentialRunner
DASK_RUN = "default_dask"
#: report tables compared between the runs (the JSON histories also hold wall times)
COMPARED_TABLES = ("results_table.csv", "ablation_table.csv", "comparison_table.csv",
                   "modality_needs.csv", "answer_prior.csv", "retrieval_quality.csv",
                   "claims_verdicts.csv")  # fmt: skip


#: the sequential reference run of the DaskRunner run's configuration, kept for that pair
#: after newer default runs replaced it
SEQUENTIAL_PAIR_RUN = "default_sequential"


def _tables_that_differ(root: Path, run: str, base: str) -> list[str]:
    """The ``COMPARED_TABLES`` of reference run ``run`` that are not byte for byte ``base``'s."""
    return [name for name in COMPARED_TABLES
            if (root / RESULTS / run / name).read_bytes() != (root / RESULTS / base / name).read_bytes()]  # fmt: skip


def _same_configuration_run(root: Path, other: dict) -> tuple[str, dict] | None:
    """The kept sequential reference run (``default``, else ``PREVIOUS_RUN``, else
    ``SEQUENTIAL_PAIR_RUN``) whose configuration (environment and every parameter) is
    ``other``'s, with its ``run.json``; None when there is none."""
    for name in ("default", PREVIOUS_RUN, SEQUENTIAL_PAIR_RUN):
        if (root / RESULTS / name / "run.json").exists():
            r = load_json(root, f"{name}/run.json")
            if (r["env"], r["parameters"]) == (other["env"], other["parameters"]):
                return name, r
    return None


@renderer("default.runners")
def default_runners(root: Path) -> str:
    """The DaskRunner reference run (``DASK_RUN``) next to the kept sequential reference run of
    the same configuration (the default run, or the previous one when the default changed
    since): wall time, memory of all processes, node time added up (not recorded on the
    DaskRunner: "-"), and whether every report table is byte for byte the same."""
    dask = load_json(root, f"{DASK_RUN}/run.json")
    found = _same_configuration_run(root, dask)
    if found is None:
        return (f"`docs/results/{DASK_RUN}/` (commit `{dask['commit'][:10]}`) has a configuration "
                "that no kept sequential reference run has: nothing to compare.\n")  # fmt: skip
    base, base_run = found
    rows = []
    for run, r in ((base, base_run), (DASK_RUN, dask)):
        nodes = load_json(root, f"{run}/node_times.json")["total_seconds"] or None
        if run == base:
            same = "-"
        else:
            differ = _tables_that_differ(root, run, base)
            same = (f"all {len(COMPARED_TABLES)} identical" if not differ
                    else "differ: " + ", ".join(differ))  # fmt: skip
        dirty = " (uncommitted changes)" if r["dirty"] else ""
        rows.append([f"`{_runner(r)}`", f"`docs/results/{run}/`", f"`{r['commit'][:10]}`{dirty}",
                     f"{r['wall_seconds'] / 60:.1f}", "-" if nodes is None else f"{nodes / 60:.1f}",
                     f"{_peak_rss_mb(r) / 1024:.2f}", f"{r['peak_rss_mb'] / 1024:.2f}", same])  # fmt: skip
    header = ["runner", "files", "commit", "wall (min)", "node time added up (min)",
              "peak RSS, all processes (GB)", "largest process (GB)",
              "report tables vs the first row"]  # fmt: skip
    note = ("" if base == "default" else
            " The default configuration has changed since these two runs (the first row is the "
            "previous reference run); the current default has no DaskRunner reference run.")  # fmt: skip
    return (
        "`python scripts/reference_run.py [--runner r2scp_pipeline.runner.DaskRunner --out "
        f"docs/results/{DASK_RUN}]` on {dask['machine']['cpus']} CPUs, the same configuration "
        f"on both runners.{note}\n\n" + md_table(header, rows)
    )


@renderer("default.reproducibility")
def default_reproducibility(root: Path) -> str:
    """Stage I and the R2ScP stage II of the default configuration's reference run on the
    evidence run's processor (``default`` when none is kept there) against seed 42 of the
    two-seed evidence run (the same seed and configuration, another environment, maybe another
    runner or commit): are their per-epoch histories equal, value for value?"""
    base = _default_run_on_cpu_of(root, "seeds")  # float rounding differs between processors
    runs = {"default": load_json(root, f"{base}/run.json"), "seeds": load_json(root, "seeds/run.json")}
    folder = {"default": base, "seeds": "seeds"}

    def describe(name: str) -> str:
        r = runs[name]
        threads = {st: r["parameters"][st].get("threads") for st in ("pretrain", "mix")}
        return (f"`docs/results/{folder[name]}/` (commit `{r['commit'][:10]}`, runner "
                f"`{_runner(r)}`, torch threads per node: stage I "
                f"{threads['pretrain'] or 'one per core'}, stage II {threads['mix'] or 'one per core'})")  # fmt: skip

    rows = []
    for name, label in (("pretrain_history.json", "stage I (all experts)"),
                        ("mix_history.json", "stage II (R2ScP)")):  # fmt: skip
        a, b = load_json(root, f"{base}/{name}"), load_json(root, f"seeds/{name}")
        same = a["history"] == b["history"] and a["best_epoch"] == b["best_epoch"]
        rows.append([label, a["epochs_run"], b["epochs_run"], "yes" if same else "**no**"])
    notes = []
    if runs["default"]["commit"] != runs["seeds"]["commit"]:
        notes.append("The two runs are of different commits: where the training code changed "
                     "between them, their histories need not agree, and a **no** says nothing "
                     "about reproducibility.")  # fmt: skip
    changed = [k for k in ("dataset", "features", "pretrain", "mix")
               if runs["default"]["parameters"].get(k) != runs["seeds"]["parameters"].get(k)]
    if changed:
        notes.append("Their configurations differ too (the "
                     f"{', '.join(f'`{k}`' for k in changed)} parameters): the default changed "
                     "after the evidence run, which is of the earlier default.")  # fmt: skip
    cpus = [_cpu_of(root, folder[n]) for n in ("default", "seeds")]
    if cpus[0] != cpus[1]:
        notes.append(f"They ran on different processors ({cpus[0]}; {cpus[1]}): floating-point "
                     "sums may round otherwise there, so the histories need not agree either; "
                     "the same numbers are promised on one machine.")  # fmt: skip
    note = "".join(f"\n{n}\n" for n in notes)
    return (
        f"{describe('default')} against seed {runs['seeds']['seed']} of {describe('seeds')}:\n\n"
        + md_table(["model", "epochs (default run)", "epochs (seeds run)",
                    "every per-epoch loss, accuracy and load equal"], rows)
        + note
    )  # fmt: skip


@renderer("default.router_loads")
def default_router_loads(root: Path) -> str:
    """Mean router weight alpha_m (eq. 11) per expert on val, for each val setting, of the
    selected stage-II model (``mix_history.json``), this run and the previous one."""
    runs = [("default", "this run")]
    if (label := _previous_run_label(root)) is not None:
        runs.append((PREVIOUS_RUN, label))
    names = {"none": "complete", "audio": "audio missing", "visual": "visual missing"}
    rows = []
    for run, label in runs:
        best = load_json(root, f"{run}/mix_history.json")["best"]
        for setting, name in names.items():
            loads = [best.get(f"val_load_{setting}_{m}") for m in EXPERTS]
            if any(v is None for v in loads):
                continue
            acc = best.get(f"val_acc_{setting}")
            rows.append([label, name, *[float(v) for v in loads],
                         "-" if acc is None else 100 * float(acc)])  # fmt: skip
    return md_table(["run", "val setting", "alpha audio", "alpha visual", "alpha text",
                     "val accuracy"], rows)  # fmt: skip


def best_expert_per_type(needs) -> tuple[float, float]:
    """(overall % of the stage-I expert that is best alone on each question type, the full
    model's overall %): what a router that picked one expert per type would score."""
    types = needs[needs["level"] == "type"]
    best = types[["audio_expert", "visual_expert", "text_expert"]].max(axis=1)
    n = types["n"].astype(float)
    overall = float(needs.loc[needs["level"] == "all", "r2scp_complete"].iloc[0])
    return float((best * n).sum() / n.sum()), overall


@renderer("default.modality_needs")
def default_modality_needs(root: Path) -> str:
    """Per question type: each stage-I expert alone, the prior, the full model, zero-fill."""
    needs = _csv(root, "default", "modality_needs.csv")
    return _modality_needs_table(needs) + _best_expert_line(needs)


def _best_expert_line(needs) -> str:
    best, overall = best_expert_per_type(needs)
    return (f"\nThe expert that answers a question type best alone, picked per type: {best:.1f} % "
            f"overall; the full model: {overall:.1f} %.\n")


def _modality_needs_table(needs) -> str:
    keep = needs[needs["level"] != "template"]
    cols = [c for c in ("n", "prior", "audio_expert", "visual_expert", "text_expert",
                        "r2scp_complete", "zero_fill_audio_missing", "zero_fill_visual_missing")
            if c in keep.columns]  # fmt: skip
    rows = [[f"{m} {s}".strip(), *[int(x[c]) if c == "n" else float(x[c]) for c in cols]]
            for _, x in keep.fillna("").iterrows()
            for m, s in [(x["modality"], x["subtype"])]]  # fmt: skip
    return md_table(["question type", *cols], rows)


def _seed_table(table, keep_sd: tuple[str, ...]) -> str:
    """A seed-mean table: the means, the ``keep_sd`` spreads and ``n_seeds`` (every ``_sd``
    column stays in the CSV)."""
    cols = [c for c in table.columns if not c.endswith("_sd") or c in keep_sd]
    rows = [[("-" if str(v) == "nan" else v) for v in rec]
            for rec in table[cols].itertuples(index=False)]  # fmt: skip
    return md_table(cols, rows)


def run_results(root: Path, run: str) -> str:
    """The Table-1-style results table of reference run ``run`` (mean over its seeds)."""
    return _seed_table(_csv(root, run, "results_table.csv"), ("Avg_sd", "Overall_sd"))


def run_claims(root: Path, run: str) -> str:
    """Which of the paper's claims reproduce: the generated verdict table of ``run``."""
    claims = _csv(root, run, "claims_verdicts.csv")
    cols = ["claim", "paper", "setting", "better", "worse", "delta", "ci_low", "ci_high",
            "n_seeds", "verdict"]  # fmt: skip
    rows = [[("-" if str(v) == "nan" else v) for v in rec]
            for rec in claims[cols].itertuples(index=False)]  # fmt: skip
    rate = float(claims["missing_rate"].iloc[0])
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in
                      ("holds", "reversed", "no difference at 95%", "not run"))  # fmt: skip
    return (_run_line(root, run) + f"Avg at missing rate {rate:g}, points, 95 % interval over "
            f"seeds and questions (`claims_verdicts.csv`). Verdicts: {tally}.\n\n"
            + md_table(cols, rows))  # fmt: skip


def run_ablations(root: Path, run: str) -> str:
    """The ablation table of reference run ``run``."""
    return _seed_table(_csv(root, run, "ablation_table.csv"), ("Avg A/V missing_sd",))


for _run in ("default", "seeds"):  # docs/results/<run>/ (scripts/reference_run.py --out)
    for _what, _fn in (("results", run_results), ("claims", run_claims),
                       ("ablations", run_ablations)):  # fmt: skip
        renderer(f"{_run}.{_what}")(lambda root, fn=_fn, run=_run: fn(root, run))


@renderer("default.answer_prior")
def default_answer_prior(root: Path) -> str:
    """The answer prior (most frequent training answer per template) on the test split."""
    prior = _csv(root, "default", "answer_prior.csv")
    keep = prior[prior["level"].isin(["overall", "modality", "paper"])]
    cols = [str(g) for g in keep["group"]]
    n = int(keep.loc[keep["level"] == "overall", "n_questions"].iloc[0])
    return (f"Test split, {n} questions (`answer_prior.csv`):\n\n"
            + md_table(cols, [[float(v) for v in keep["accuracy_pct"]]]))  # fmt: skip


@renderer("default.retrieval")
def default_retrieval(root: Path) -> str:
    """Retrieval quality: share of neighbour pairs whose instrument sets overlap."""
    q = _csv(root, "default", "retrieval_quality.csv")
    names = {"v2a": "visual -> audio (v2a)", "a2v": "audio -> visual (a2v)"}
    rows = []
    for (split, direction), g in q.groupby(["split", "direction"], sort=False):
        by = g.set_index("kind")["overlap"]
        rows.append([split, names.get(direction, direction), float(by.get("pos", float("nan"))),
                     float(by.get("random", float("nan"))), float(by.get("neg", float("nan")))])  # fmt: skip
    return md_table(["queries", "direction", "top-n (R+)", "random corpus videos", "bottom-n (R-)"], rows)


@renderer("audio_probe")
def audio_probe(root: Path) -> str:
    """benchmarks/audio_probe.py: can probes recover the sounding instruments from audio?"""
    r = load_json(root, "audio_probe.json")
    rows = [[name.replace("|", "\\|"), v["recall"], v["precision"], v["exact_set"]]
            for name, v in r["probes"].items()]
    return (
        f"`{r['command'].strip()}`: {r['videos']['train']} training / {r['videos']['test']} test "
        f"videos, audio features {r['features']} per video, "
        f"{r['labels_per_video']} sounding instruments per video on average; load average "
        f"{r['machine']['load_average'][0]:.1f}.\n\n"
        + md_table(["probe (trained on the labels)", "recall", "precision", "exact set"],
                   [[n, float(a), float(b), float(c)] for n, a, b, c in rows])
    )


@renderer("visual_probe")
def visual_probe(root: Path) -> str:
    """benchmarks/visual_probe.py: do a grid cell's features say which instruments stand in it,
    per EfficientNet-Lite0 input size?"""
    r = load_json(root, "visual_probe.json")
    rows = [[f"{size} px", f"{v['feature_map']}x{v['feature_map']}", v["cpu_ms_per_frame"],
             float(v["precision"]), float(v["recall"]), float(v["f1"]), float(v["exact_set"])]
            for size, v in r["sizes"].items()]  # fmt: skip
    grid = "x".join(str(g) for g in r["grid"])
    return (
        f"`{r['command'].strip()}`: {r['videos']['train']} training / {r['videos']['test']} test "
        f"videos, {grid} grid, {r['frames_per_video']} frames per video averaged per cell, "
        f"{r['labels_per_cell']} instruments per cell on average; torch {r['torch']}, one "
        f"thread, load average {r['machine']['load_average'][0]:.1f}.\n\n"
        + md_table(["input size", "feature map", "cpu ms / frame", "precision", "recall", "F1",
                    "exact set"], rows)  # fmt: skip
    )


@renderer("visual_cue")
def visual_cue(root: Path) -> str:
    """benchmarks/visual_cue.py: the stage-I experts on the test frames as written and drawn
    again without the generator's visual cue (the glow / hop of a sounding instrument)."""
    r = load_json(root, "visual_cue.json")
    plain = {row["type"]: row for row in r["without_cue"]}
    rows = []
    for row in r["with_cue"]:
        other = plain[row["type"]]
        if (other["audio"], other["text"]) != (row["audio"], row["text"]):
            raise ValueError(f"visual_cue.json: the audio / text experts moved on {row['type']}")
        rows.append([row["type"], row["n"], float(row["visual"]), float(other["visual"]),
                     float(other["visual"]) - float(row["visual"]), float(row["audio"])])  # fmt: skip
    return (
        f"`{r['command'].strip()}`: {r['questions']} {r['split']} questions about {r['videos']} "
        f"videos; the cue changed {100 * r['tokens_changed']:.0f} % of their visual tokens "
        f"(cells x seconds). The audio and text experts read no frame: their accuracies are the "
        f"same on both (the audio expert's in the last column).\n\n"
        + md_table(["question type", "n", "visual expert, frames as written",
                    "visual expert, without the cue", "change", "audio expert"], rows)  # fmt: skip
    )


def _run_pretrains_audio(root: Path) -> bool:
    """Does the default reference run pretrain its audio encoder (``pretrain.audio_encoder``)?"""
    run = load_json(root, "default/run.json")
    return int(((run["parameters"]["pretrain"].get("audio_encoder")) or {}).get("videos", 0)) > 0


def _same_seeds(root: Path, files) -> tuple[list[str], list[dict]]:
    """The benchmarks/stage1_seeds.py files ``[(name, label), ...]`` and their common seeds;
    files of other seeds are refused (one table compares them seed by seed)."""
    loaded = [load_json(root, name) for name, _ in files]
    seeds = list(loaded[0]["seeds"])
    for (name, _), r in zip(files, loaded, strict=True):
        if list(r["seeds"]) != seeds:
            raise ValueError(f"{name}: seeds {list(r['seeds'])}, the other file's {seeds}: "
                             "one table needs the same seeds in both")  # fmt: skip
    return seeds, loaded


#: further stage-I seed files the table shows when they are kept: (file, label)
STAGE1_SEEDS_OPTIONAL = (
    ("stage1_seeds_no_audio_pretraining.json", "with the cue, without audio encoder pretraining"),
    ("stage1_seeds_before_readout.json", "with the cue, before the single-query readout"),
)


@renderer("stage1_seeds")
def stage1_seeds(root: Path) -> str:
    """benchmarks/stage1_seeds.py: each stage-I expert's best val and test accuracy per seed,
    on the default run's data and on the data drawn without the visual cue."""
    rows, lines = [], []
    files = [("stage1_seeds.json", "with the cue (default)"),
             ("stage1_seeds_nocue.json", "without the cue (nocue)")]  # fmt: skip
    for name, label in STAGE1_SEEDS_OPTIONAL:  # kept when measured
        if (root / RESULTS / name).exists():
            files.append((name, label))
    seeds, loaded = _same_seeds(root, files)
    for (_, label), r in zip(files, loaded, strict=True):
        same = {True: "yes", False: "**no**", None: "not compared"}[r["run_history_reproduced"]]
        if r.get("audio_pretraining_videos") == 0 and _run_pretrains_audio(root):
            same = "not compared (the run pretrained its audio encoder, these seeds did not)"
        code = ""
        if r.get("commit"):  # recorded since the file of the code before the readout change
            changed = ", ".join(r.get("dirty_files") or []) or "none"
            code = f" (package at commit `{r['commit'][:10]}`, files changed there: {changed})"
        lines.append(f"- {label}: `{r['command'].strip()}`{code}; seed {r['run_seed']} repeats "
                     f"the stage I of the run whose data it read, epoch for epoch: {same}; load "
                     f"average {r['machine']['load_average'][0]:.1f}.")  # fmt: skip
        for m in EXPERTS:
            val, test = r["spread"][f"val_{m}"], r["spread"][f"test_{m}"]
            rows.append([label, m, " / ".join(f"{100 * r['seeds'][s][f'val_{m}']:.1f}" for s in seeds),
                         f"{100 * val['mean']:.1f} ({100 * val['sd']:.1f})",
                         " / ".join(f"{100 * r['seeds'][s][f'test_{m}']:.1f}" for s in seeds),
                         f"{100 * test['mean']:.1f} ({100 * test['sd']:.1f})"])  # fmt: skip
    header = ["data", "expert", f"best val, seeds {', '.join(seeds)}", "val mean (sd)",
              "test, same seeds", "test mean (sd)"]  # fmt: skip
    return "\n".join(lines) + "\n\n" + md_table(header, rows)


def _seed_cell(r: dict, key: str, seeds: list[str], scale: float = 100, digits: int = 1) -> str:
    """``"a / b / c; mean (sd)"``: ``key`` of each seed of a seeds benchmark's result ``r``
    (its ``seeds`` and ``spread``), times ``scale``."""
    per = " / ".join(f"{scale * r['seeds'][s][key]:.{digits}f}" for s in seeds)
    sd = r["spread"][key]
    return f"{per}; {scale * sd['mean']:.1f} ({scale * sd['sd']:.1f})"


#: the two benchmarks/stage1_seeds.py files of the loudness / rhythm tags: (file, label)
ATTRIBUTE_FILES = (("stage1_seeds_no_attributes.json", "presence only"),
                   ("stage1_seeds_attributes.json", "presence, loudness, rhythm"))  # fmt: skip
#: the question types the tags are for, and Audio Counting (their test accuracy gets a column)
ATTRIBUTE_TYPES = ("Audio Comparative", "Audio Counting", "Audio-Visual Comparative")
#: the two files of the visual head's who-plays tags, and the types they are for
PLAYING_FILES = (("stage1_seeds_no_playing.json", "presence only"),
                 ("stage1_seeds_playing.json", "presence, who plays"))  # fmt: skip
PLAYING_TYPES = ("Audio-Visual Location", "Audio-Visual Temporal", "Audio-Visual Counting",
                 "Audio-Visual Comparative", "Audio Counting")  # fmt: skip


def _switch_command(files, switch: str) -> str:
    """The benchmark command that measures a pretrain ``switch`` off and on (``files``)."""
    stem = files[1][0].removesuffix(".json").replace("stage1_seeds_", "stage1_seeds_[no_]")
    return (f"python benchmarks/stage1_seeds.py --data DATA --pretrain {switch}=false|true "
            f"--out docs/results/{stem}.json")  # fmt: skip


def _tag_comparison(root: Path, files, types, command: str, what: str) -> str:
    """Two benchmarks/stage1_seeds.py files (``files``, e.g. a pretrain switch off and on, on
    one run's data; ``command`` makes them): each expert's best val and test accuracy and its
    test accuracy on ``types``, per seed and mean (sd); ``what`` heads the first column."""
    if not all((root / RESULTS / name).exists() for name, _ in files):
        return f"Not measured yet: `{command}`.\n"
    lines, rows = [], []
    columns = [("best val", "val_{m}"), ("test", "test_{m}")]
    columns += [(f"test, {t}", f"test_{{m}}/{t}") for t in types]
    seeds, loaded = _same_seeds(root, files)
    for (name, label), r in zip(files, loaded, strict=True):
        changed = ", ".join(r.get("dirty_files") or []) or "none"
        lines.append(f"- {label}: `{r['command'].strip()}` (package at commit "
                     f"`{str(r['commit'])[:10]}`, files changed there: {changed}; load average "
                     f"{r['machine']['load_average'][0]:.1f})")  # fmt: skip
        for m in EXPERTS:
            cells = []
            for _, pattern in columns:
                key = pattern.format(m=m)
                if key not in r["spread"]:
                    raise ValueError(f"docs/results/{name}: no {key!r}; run "
                                     "benchmarks/stage1_seeds.py again")  # fmt: skip
                cells.append(_seed_cell(r, key, seeds))
            rows.append([label, m, *cells])
    header = [what, "expert",
              *(f"{c}, seeds {', '.join(seeds)}; mean (sd)" if i == 0 else c
                for i, (c, _) in enumerate(columns))]  # fmt: skip
    return "\n".join(lines) + "\n\n" + md_table(header, rows)


@renderer("stage1_attributes")
def stage1_attributes(root: Path) -> str:
    """The audio head's loudness / rhythm tags off and on (``grounding_attributes``), per
    expert, on the comparative questions."""
    return _tag_comparison(root, ATTRIBUTE_FILES, ATTRIBUTE_TYPES,
                           _switch_command(ATTRIBUTE_FILES, "grounding_attributes"),
                           "audio grounding tags")  # fmt: skip


@renderer("stage1_playing")
def stage1_playing(root: Path) -> str:
    """The visual head's who-plays tags off and on (``grounding_playing``), per expert, on the
    audio-visual questions."""
    return _tag_comparison(root, PLAYING_FILES, PLAYING_TYPES,
                           _switch_command(PLAYING_FILES, "grounding_playing"),
                           "visual grounding tags")  # fmt: skip


TEXT_ONCE_FILES = (("stage1_seeds_playing.json", "every row"),
                   ("stage1_seeds_text_once.json", "each distinct text once"))  # fmt: skip


@renderer("stage1_processes")
def stage1_processes(root: Path) -> str:
    """benchmarks/stage1_processes.py: stage I in one process and with its experts on worker
    processes (``pretrain.expert_processes``) on one run's data: wall and CPU time, the tree's
    peak memory (RSS and PSS), per process group its training seconds, and whether weights,
    best epochs and val history equal the first row's."""
    name = "stage1_processes.json"
    missing = _not_measured(root, name, "python benchmarks/stage1_processes.py --data DATA "
                                        f"--processes 1 2 --out docs/results/{name}")  # fmt: skip
    if missing:
        return missing
    r = load_json(root, name)
    changed = ", ".join(r.get("dirty_files") or []) or "none"
    yes = {True: "yes", False: "**no**"}
    rows = []
    for run in r["runs"]:
        groups = run["timing"].get("groups") or {"+".join(EXPERTS): run["timing"]}
        same = ("-" if "same_weights" not in run else
                " / ".join(yes[run[k]] for k in ("same_weights", "same_best", "same_history")))  # fmt: skip
        rows.append([run["expert_processes"], " / ".join(groups),
                     f"{run['wall_s'] / 60:.1f}", f"{run['cpu_s'] / 60:.1f}",
                     f"{run['audio_encoder_s'] / 60:.1f}" if run["audio_encoder_s"] else "-",
                     " / ".join(f"{g['train_seconds'] / 60:.1f}" for g in groups.values()),
                     f"{run['peak_tree_rss_gb']:.2f}", f"{run['peak_tree_pss_gb']:.2f}",
                     run["epochs_run"], same])  # fmt: skip
    head = (f"`{r['command'].strip()}` (package at commit `{str(r['commit'])[:10]}`, files changed "
            f"there: {changed}; {r['machine']['cpus']} CPUs, {r['machine']['cpu']}; load average "
            f"{r['machine']['load_average'][0]:.1f} at the end): {r['videos']:,} videos, "
            f"{r['train_questions']:,} training questions, seed {r['seed']}"
            + (f", {', '.join(f'`pretrain.{k}: {v}`' for k, v in r['pretrain_overrides'].items())}"
               if r.get("pretrain_overrides") else "") + ".\n\n")  # fmt: skip
    return head + md_table(
        ["expert processes", "experts per process", "wall (min)", "CPU, all processes (min)",
         "audio encoder pretraining (min)", "stage-I training per process (min)",
         "peak RSS, all processes (GB)", "peak PSS, all processes (GB)", "epochs",
         "same weights / best epochs / val history as the first row"], rows)  # fmt: skip


@renderer("stage1_text_once")
def stage1_text_once(root: Path) -> str:
    """Stage I with the text expert encoding every question row, then each distinct text of a
    batch once (the same data, seeds and parameters): each expert's scores, its best epochs
    and the benchmark's wall time."""
    command = ("python benchmarks/stage1_seeds.py --data DATA --seeds 42 43 44 "
               "--out docs/results/stage1_seeds_text_once.json")  # fmt: skip
    text = _tag_comparison(root, TEXT_ONCE_FILES, (), command, "the text expert encodes")
    if text.startswith("Not measured"):
        return text
    seeds, loaded = _same_seeds(root, TEXT_ONCE_FILES)
    rows = [[label, *(_seed_cell(r, f"epoch_{m}", seeds, scale=1, digits=0) for m in EXPERTS),
             f"{r['seconds'] / 60:.1f}"]
            for (_, label), r in zip(TEXT_ONCE_FILES, loaded, strict=True)]  # fmt: skip
    header = ["the text expert encodes", *(f"best epoch, {m}" for m in EXPERTS),
              "benchmark wall time (min, all seeds)"]  # fmt: skip
    return text + "\n" + md_table(header, rows)


#: (column, key of benchmarks/stage2_seeds.py, percent) of the stage-II seed table
STAGE2_COLUMNS = (("best val score", "val_score", True), ("test, complete", "test_none", True),
                  ("test, audio missing", "test_audio", True),
                  ("test, visual missing", "test_visual", True),
                  ("train (memorisation check)", "train_none", True), ("epochs", "epochs", False),
                  ("samples/s", "samples_per_s", False))  # fmt: skip


@renderer("stage2_batching")
def stage2_batching(root: Path) -> str:
    """benchmarks/stage2_seeds.py on the default run's data and experts: R2ScP's stage II per
    seed with stage-II batches by video (as configured) and with a uniform shuffle."""
    return _stage2_seeds(root, "stage2_batching.json",
                         "--variant uniform_batches mix.batch_by_video=false")  # fmt: skip


#: question types whose complete test accuracy the binding-hop table adds (choice 19 is for them)
BINDING_TYPES = ("Audio-Visual Location", "Audio-Visual Temporal")


@renderer("stage2_binding")
def stage2_binding(root: Path) -> str:
    """benchmarks/stage2_seeds.py on the default run's data and experts: R2ScP's stage II per
    seed without binding hops (as configured) and with one (choice 19), with the complete test
    accuracy of the audio-visual Location and Temporal questions."""
    return _stage2_seeds(root, "stage2_binding.json", "--variant binding model.binding_hops=1",
                         BINDING_TYPES)  # fmt: skip


@renderer("stage2_draw")
def stage2_draw(root: Path) -> str:
    """benchmarks/stage2_seeds.py on the default run's data and experts: R2ScP's stage II per
    seed drawing questions (as configured) and drawing whole videos (``mix.draw: videos``)."""
    return _stage2_seeds(root, "stage2_draw.json", "--variant video_draws mix.draw=videos")


#: benchmarks/stage2_seeds.py files of ``mix.patience: 2`` against the configured patience, on a
#: default run's data (``RERUN``'s) and on the more-videos run's (``MORE_VIDEOS_RUN``'s)
PATIENCE_FILES = (("stage2_patience.json", "the default configuration's data"),
                  ("stage2_patience_more_videos.json", "the more-videos data"))  # fmt: skip
#: the figures that say whether two stage-II runs selected the same model
SELECTED = ("val_score", "test_none", "test_audio", "test_visual", "train_none")


@renderer("stage2_patience")
def stage2_patience(root: Path) -> str:
    """benchmarks/stage2_seeds.py with ``mix.patience: 2`` (variant ``patience2``) against the
    configured patience on two runs' data: each table, and per file on how many seeds the
    shorter patience selected the same model (every ``SELECTED`` figure equal) and how many
    epochs it ran fewer."""
    parts = []
    for name, what in PATIENCE_FILES:
        table = _stage2_seeds(root, name, "--variant patience2 mix.patience=2")
        parts.append(f"On {what}: " + table)
        if not (root / RESULTS / name).exists():
            continue
        variants = load_json(root, name)["variants"]
        base, short = variants["configured"]["seeds"], variants["patience2"]["seeds"]
        same = sum(all(base[s][k] == short[s][k] for k in SELECTED) for s in base)
        fewer = sum(base[s]["epochs"] - short[s]["epochs"] for s in base)
        parts.append(f"`patience2` selected the same model as configured (the same {', '.join(SELECTED)}) "
                     f"on {same} of {len(base)} seeds, in {fewer} epochs fewer over the seeds.\n")  # fmt: skip
    return "\n".join(parts)


#: the default configuration with ``mix.patience: 2`` (a run config), a whole run on the machine
#: of ``RERUN``
PATIENCE_RUN, PATIENCE_CONFIG = "default_patience2", Path("docs/run_configs/patience2.yml")


def _patience_changes(root: Path) -> str:
    """Which methods' rows of ``results_table.csv`` differ between ``RERUN`` and
    ``PATIENCE_RUN`` (they selected another stage-II model), and how many claim verdicts."""
    tables = [_csv(root, run, "results_table.csv") for run in (RERUN, PATIENCE_RUN)]
    if list(tables[0]["method"]) != list(tables[1]["method"]):
        return " (the results tables list other methods)"
    differ = (tables[0].fillna(-1) != tables[1].fillna(-1)).any(axis=1)
    methods = list(dict.fromkeys(tables[0].loc[differ, "method"]))
    verdicts = [_csv(root, run, "claims_verdicts.csv")["verdict"] for run in (RERUN, PATIENCE_RUN)]
    changed = int((verdicts[0] != verdicts[1]).sum())
    return (f" (the methods whose accuracy rows differ: {', '.join(methods) or 'none'}; claim "
            f"verdicts that differ: {changed} of {len(verdicts[0])})")


@renderer("default.patience")
def default_patience(root: Path) -> str:
    """The whole default run with ``PATIENCE_CONFIG`` next to ``RERUN``: wall time, the minutes
    of every stage-II training node in each, and whether every report table is the same."""
    command = f"python scripts/reference_run.py --config {PATIENCE_CONFIG} --out docs/results/{PATIENCE_RUN}"
    missing = _not_measured(root, f"{PATIENCE_RUN}/run.json", command)
    if missing:
        return missing
    _whole_run_with(root, PATIENCE_RUN, PATIENCE_CONFIG)
    nodes = {run: load_json(root, f"{run}/node_times.json")["nodes"] for run in (RERUN, PATIENCE_RUN)}
    stage2 = ["mix_experts", *(f"{name}.train_variant" for name in _variant_times(root, RERUN))]
    rows = [[n, *(f"{nodes[run][n] / 60:.2f}" for run in nodes)] for n in stage2]
    rows.append(["these nodes, all", *(f"{sum(nodes[run][n] for n in stage2) / 60:.1f}" for run in nodes)])
    runs = {run: load_json(root, f"{run}/run.json") for run in nodes}
    rows.append(["the whole run (wall)", *(f"{runs[run]['wall_seconds'] / 60:.1f}" for run in nodes)])
    differ = _tables_that_differ(root, PATIENCE_RUN, RERUN)
    same = (f"all {len(COMPARED_TABLES)} report tables are byte for byte `{RERUN}`'s" if not differ
            else f"report tables that differ from `{RERUN}`'s: " + ", ".join(differ)
            + _patience_changes(root))  # fmt: skip
    rerun_commit = runs[RERUN]["commit"][:10]
    return (_run_line(root, PATIENCE_RUN) + f"Its run config `{PATIENCE_CONFIG}`; {same}. Minutes "
            f"of the stage-II trainings (R2ScP's `mix_experts` and each variant's), next to "
            f"`{RERUN}` (`docs/results/{RERUN}/`, commit `{rerun_commit}`):\n\n"
            + md_table(["node", f"`{RERUN}`", f"`{PATIENCE_RUN}`"], rows))  # fmt: skip


def _stage2_seeds(root: Path, name: str, variant: str, types: tuple[str, ...] = ()) -> str:
    """The table of one benchmarks/stage2_seeds.py file: per variant, each STAGE2_COLUMNS
    figure per seed with its mean (sd), then the complete test accuracy of ``types``."""
    if not (root / RESULTS / name).exists():
        return (f"Not measured yet: `python benchmarks/stage2_seeds.py --data DATA {variant} "
                f"--out docs/results/{name}`.\n")  # fmt: skip
    r = load_json(root, name)
    same = {True: "yes", False: "**no**", None: "not compared"}[r["run_history_reproduced"]]
    changed = ", ".join(r.get("dirty_files") or []) or "none"
    seeds = list(next(iter(r["variants"].values()))["seeds"])
    columns = STAGE2_COLUMNS[:1] + tuple((f"test, complete, {t}", f"test_none/{t}", True)
                                         for t in types) + STAGE2_COLUMNS[1:]  # fmt: skip
    rows = []
    for variant_name, v in r["variants"].items():
        over = ", ".join(f"`{b}.{k}: {json.dumps(x)}`" for b, kv in v["overrides"].items()
                         for k, x in kv.items()) or "none"  # fmt: skip
        cells = []
        for _, key, pct in columns:
            if key not in v["spread"]:
                raise ValueError(f"docs/results/{name}: variant {variant_name} has no {key!r}; "
                                 f"run benchmarks/stage2_seeds.py again")  # fmt: skip
            cells.append(_seed_cell(v, key, seeds, *((100, 1) if pct else (1, 0))))
        rows.append([variant_name, over, *cells])
    header = ["variant", "changed parameters", *(f"{c}, seeds {', '.join(seeds)}; mean (sd)"
                                                  if i == 0 else c
                                                  for i, (c, _, _) in enumerate(columns))]  # fmt: skip
    return (f"`{r['command'].strip()}` (package at commit `{str(r['commit'])[:10]}`, files changed "
            f"there: {changed}; {r['machine']['cpus']} CPUs, {r['machine']['cpu_model']}; load "
            f"average {r['machine']['load_average'][0]:.1f}); {r['train_questions']:,} training "
            f"questions, {r['test_questions']:,} test questions; seed {r['run_seed']} as "
            f"configured repeats the stage II of the run whose data it read, epoch for epoch: "
            f"{same}.\n\n" + md_table(header, rows))  # fmt: skip


#: the reference run of the default configuration on MiniMusic-AVQA drawn without the visual
#: cue (``scripts/reference_run.py --env nocue``)
NOCUE_RUN = "nocue"


def _default_run_on_cpu_of(root: Path, run: str) -> str:
    """The kept default-configuration reference run on ``run``'s processor (``default``, else
    ``PREVIOUS_RUN``, else ``OTHER_CPU_PAIR_RUN``, else ``OTHER_CPU_RUN``); ``default`` when
    none ran there."""
    cpu = _cpu_of(root, run)
    for name in ("default", PREVIOUS_RUN, OTHER_CPU_PAIR_RUN, OTHER_CPU_RUN):
        if (root / RESULTS / name / "run.json").exists() and _cpu_of(root, name) == cpu:
            return name
    return "default"


def _cpu_of(root: Path, run: str) -> str:
    """The processor model a kept reference run ran on ("unknown" when not recorded)."""
    return load_json(root, f"{run}/run.json").get("machine", {}).get("cpu_model", "unknown")


def _model_target_pairs(root: Path, runs, speed: bool = False) -> tuple[list[list[str]], str]:
    """The targets that compare models (with ``speed`` also :data:`SPEED_TARGETS`: both runs
    are whole default runs) of two reference runs ``runs = ((run, label), (run, label))`` as
    table rows (what, target, first, second, change), and each run's mean router weights with
    both modalities on val, in words."""
    (a_run, _), (b_run, _) = runs
    rows = [[what, target, f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"]
            for (what, target, a, _), (_, _, b, _) in zip(_target_values(root, a_run),
                                                          _target_values(root, b_run), strict=True)
            if speed or not what.startswith(SPEED_TARGETS)]  # fmt: skip
    loads = []
    for run, label in runs:
        best = load_json(root, f"{run}/mix_history.json")["best"]
        loads.append(f"{label} {float(best['val_load_none_audio']):.2f} audio / "
                     f"{float(best['val_load_none_visual']):.2f} visual")  # fmt: skip
    return rows, "; ".join(loads)


def _param_changes(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``key: a -> b`` for every leaf parameter that differs between two runs' parameters."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _param_changes(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"`{prefix}{key}`: {x} -> {y}")
    return out


@renderer("default.same_data")
def default_same_data(root: Path) -> str:
    """The default run next to ``MORE_VIDEOS_RUN``: the same dataset and features (checked:
    the same dataset and features parameters, the same test answer prior and retrieval
    quality files), other training (the parameters that differ are listed): how far one
    run's figures move with its training draws and stage-II stopping on the same questions."""
    runs = ("default", MORE_VIDEOS_RUN)
    records = [load_json(root, f"{run}/run.json") for run in runs]
    params = [r["parameters"] for r in records]
    same = all(params[0][k] == params[1][k] for k in ("dataset", "features")) and all(
        (root / RESULTS / runs[0] / f).read_bytes() == (root / RESULTS / runs[1] / f).read_bytes()
        for f in ("answer_prior.csv", "retrieval_quality.csv"))  # fmt: skip
    if not same:
        return (f"`docs/results/{MORE_VIDEOS_RUN}/` is not of the default run's data (its dataset "
                "or features parameters, answer prior or retrieval quality differ): no "
                "same-data comparison.\n")  # fmt: skip
    commits = [r["commit"][:10] for r in records]
    rows, loads = _model_target_pairs(root, ((MORE_VIDEOS_RUN, f"`{MORE_VIDEOS_RUN}`"),
                                             ("default", "`default`")))  # fmt: skip
    changes = _param_changes(params[1], params[0])
    return (f"`docs/results/{MORE_VIDEOS_RUN}/` (commit `{commits[1]}`) and `docs/results/default/` "
            f"(commit `{commits[0]}`): the same dataset, features and memory bank (the same test "
            f"questions, answer prior and retrieval quality); the parameters that differ: "
            f"{'; '.join(changes) or 'none'}.\n\n"
            + md_table(["what", "target", f"`{MORE_VIDEOS_RUN}`", "`default`", "change"], rows)
            + f"\nMean router weight with both modalities on val: {loads}.\n")  # fmt: skip


@renderer("nocue.targets")
def nocue_targets(root: Path) -> str:
    """The base-model figures of the default configuration against the same configuration on
    data drawn without the visual cue (the accuracy and modality-cost rows of the targets),
    both on one processor: the kept default run on the nocue run's processor."""
    base = _default_run_on_cpu_of(root, NOCUE_RUN)
    rows, loads = _model_target_pairs(root, ((base, "with the cue"),
                                             (NOCUE_RUN, "without the cue")))  # fmt: skip
    needs = _csv(root, NOCUE_RUN, "modality_needs.csv")
    r = load_json(root, f"{base}/run.json")
    same = _cpu_of(root, NOCUE_RUN) == _cpu_of(root, base)
    where = "the same processor" if same else "**another processor**"
    return (
        _run_line(root, NOCUE_RUN)
        + f"With the cue: `docs/results/{base}/` (commit `{r['commit'][:10]}`, {where}).\n\n"
        + md_table(["what", "target", "default configuration (with the cue)", "without the cue",
                    "change"], rows)  # fmt: skip
        + f"\nMean router weight with both modalities on val: {loads}.\n\n"
        + "Per question type, without the cue:\n\n" + _modality_needs_table(needs)
        + _best_expert_line(needs)
    )


#: the kept measured part of ``kedro run --env=full`` (``reference_run.py --pipelines``)
FULL_RUN = "full"
#: the nodes of the measured part that train: stage I (seed ``params:seed``) and R2ScP's stage II
STAGE_NODES = {"stage I": "pretrain_experts", "stage II": "mix_experts"}


def grid_trainings(params: dict) -> dict[str, int]:
    """What the ``variants`` pipeline of a configuration (``params``: every parameter) trains
    beyond the ``pretrain`` and ``mix`` pipelines: ``stage I`` (the shared stage I of every seed
    but ``params:seed``, and each seed of a variant that changes stage I) and ``stage II``
    (each seed of each selected variant: R2ScP at ``params:seed`` is the mix pipeline's model,
    and ``model.mixing: false`` trains no stage II), as ``pipelines/variants`` does."""
    from r2scp_pipeline.experiment import check_parameters
    from r2scp_pipeline.variants import variant_spec

    cfg = check_parameters(params["evaluate"], params["seed"])
    seeds = len(cfg.seeds)
    count = {"stage I": seeds - int(params["seed"] in cfg.seeds), "stage II": 0}
    for name in cfg.methods:
        spec = variant_spec(name, cfg.ablations)
        trains_one = spec.params("pretrain", params["pretrain"]).get("stage_one", True)
        count["stage I"] += seeds * (spec.changes_stage_one and trains_one)
        if spec.params("model", params["model"]).get("mixing", True):
            count["stage II"] += seeds - int(name == "r2scp" and params["seed"] in cfg.seeds)
    return count


def _variant_seconds(root: Path, run: str, stages_run: str | None = None) -> tuple[float, float]:
    """(the ``variants`` pipeline's trainings in reference run ``run`` as :func:`grid_trainings`
    projects them from stage I and R2ScP's stage II of ``stages_run`` (default: ``run``), as
    they took: the sum of ``run``'s :func:`_variant_times`), in seconds."""
    params = load_json(root, f"{run}/run.json")["parameters"]
    stages = load_json(root, f"{stages_run or run}/node_times.json")["nodes"]
    grid = grid_trainings(params)
    projected = sum(grid[stage] * stages[node] for stage, node in STAGE_NODES.items())
    return projected, sum(_variant_times(root, run).values())


def _val_comparison(root: Path, runs: tuple[str, ...]) -> str:
    """Stage I and stage II of reference runs ``runs`` on their val splits: each expert's
    best val accuracy, R2ScP's val accuracy per setting, its train accuracy, epochs and
    training rates (``pretrain_history.json``, ``mix_history.json``)."""
    pre = [load_json(root, f"{run}/pretrain_history.json") for run in runs]
    mix = [load_json(root, f"{run}/mix_history.json") for run in runs]
    rows = [["training questions (stage I)", *(p["num_train_questions"] for p in pre)]]
    rows += [[f"stage I, {e} expert: best val accuracy %",
              *(f"{100 * p['best'][f'val_acc_{e}']:.1f}" for p in pre)] for e in EXPERTS]  # fmt: skip
    for key, what in (("none", "complete"), ("audio", "audio missing"),
                      ("visual", "visual missing")):  # fmt: skip
        rows.append([f"stage II, {what}: val accuracy %",
                     *(f"{100 * m['best'][f'val_acc_{key}']:.1f}" for m in mix)])  # fmt: skip
    rows.append(["stage II, complete: train accuracy %",
                 *(f"{100 * m['best']['train_acc_none']:.1f}" for m in mix)])  # fmt: skip
    rows.append(["stage II, complete: train minus val (points)",
                 *(f"{100 * (m['best']['train_acc_none'] - m['best']['val_acc_none']):.1f}"
                   for m in mix)])  # fmt: skip
    for name, hist in (("stage I", pre), ("stage II", mix)):
        rows.append([f"{name}: epochs run (best epoch, from 0)",
                     *(f"{h['epochs_run']} ({_best_epochs(h)})" for h in hist)])  # fmt: skip
        rows.append([f"{name}: training samples / s",
                     *(f"{h['timing']['train_samples_per_s']:.0f}" for h in hist)])  # fmt: skip
    return md_table(["what", *(f"`{run}`" for run in runs)], rows)


def _best_epochs(history: dict) -> str:
    """A history's best epoch: one number (stage II) or one per expert (stage I)."""
    best = history["best_epoch"]
    if isinstance(best, dict):
        return " / ".join(f"{e} {best[e]}" for e in EXPERTS if e in best)
    return str(best)


@renderer("full.time")
def full_time(root: Path) -> str:
    """The measured part of ``kedro run --env=full`` (``FULL_RUN``), its slowest nodes, its
    models on val, and the rest of the environment projected from measured parts (a table:
    what, how many, each, basis), checked on the variants of ``FULL_METHODS_RUN``."""
    command = ("python scripts/reference_run.py --env full --pipelines "
               "dataset,features,build_index,pretrain,mix --out docs/results/full")  # fmt: skip
    missing = _not_measured(root, f"{FULL_RUN}/run.json", command)
    if missing:
        return missing
    r = load_json(root, f"{FULL_RUN}/run.json")
    nodes = load_json(root, f"{FULL_RUN}/node_times.json")["nodes"]
    slowest = sorted(nodes.items(), key=lambda kv: -kv[1])[:8]
    rows, total = _full_projection(root, r["parameters"], nodes)
    head = ["part (not measured)", "how many", "each (min)", "all (h)", "each as measured by"]
    text = (
        _run_line(root, FULL_RUN)
        + "Its slowest nodes:\n\n"
        + md_table(["node", "minutes"], [[name, f"{sec / 60:.1f}"] for name, sec in slowest])
        + "\nIts models on val, next to the default run's (each configuration's own val split):"
        "\n\n" + _val_comparison(root, ("default", FULL_RUN))
        + f"\nThe rest of the environment ({len(r['parameters']['evaluate']['seeds'])} seeds, "
        "every variant), projected from measured parts:\n\n" + md_table(head, rows)
        + f"\nWith this run's {r['wall_seconds'] / 60:.0f} min, the whole environment would "
        f"take about **{(total + r['wall_seconds']) / 3600:.1f} h** on this machine. A "
        "projection, not a measurement"
    )
    if not (root / RESULTS / FULL_METHODS_RUN / "run.json").exists():
        return text + ".\n"
    projected, took = _variant_seconds(root, FULL_METHODS_RUN, FULL_RUN)
    stage2 = nodes[STAGE_NODES["stage II"]]
    ratios = [sec / stage2 for name, sec in _variant_times(root, FULL_METHODS_RUN).items()]
    return text + (
        f": on this data the default methods' stage-II trainings took from {min(ratios):.1f} "
        f"to {max(ratios):.1f} times R2ScP's, {took / 60:.1f} min in all where the table's "
        f"rule gives {projected / 60:.1f} min (`docs/results/{FULL_METHODS_RUN}`).\n"
    )


#: the default configuration's code run again on a fresh machine (``scripts/reference_run.py``)
RERUN = "default_rerun"
#: the default configuration on 1.4 times the videos with fewer stage-I epochs (a run config),
#: the whole run in one fresh clone
MORE_VIDEOS_RUN, MORE_VIDEOS_CONFIG = "more_videos", Path("docs/run_configs/more_videos.yml")
MORE_VIDEOS_COMMAND = (
    f"python scripts/reference_run.py --config {MORE_VIDEOS_CONFIG} --out docs/results/{MORE_VIDEOS_RUN}"
)


def _whole_run_with(root: Path, run: str, config: Path) -> dict:
    """``run``'s run.json, checked: a whole default run (every pipeline, env base, not a
    continuation) with the run config ``config`` as committed."""
    r = load_json(root, f"{run}/run.json")
    params = yaml.safe_load((root / config).read_text())["run"]["params"]
    if r["run_config_params"] != params:
        raise ValueError(f"docs/results/{run}/run.json ran with run config params "
                         f"{r['run_config_params']}, not those of {config}")  # fmt: skip
    if r["pipelines"] != "__default__" or r["continues_earlier_run"] or r["env"] != "base":
        raise ValueError(f"docs/results/{run}/run.json is not a whole default run "
                         f"(pipelines {r['pipelines']}, env {r['env']}, continues an earlier run: "
                         f"{r['continues_earlier_run']})")  # fmt: skip
    return r


@renderer("default.more_videos")
def default_more_videos(root: Path) -> str:
    """The default configuration (``RERUN``) against the same on 1.4 times the videos with
    fewer stage-I epochs (``MORE_VIDEOS_RUN``, run config ``MORE_VIDEOS_CONFIG``), each a whole
    run: their models on val, every target on each run's test split, and the slowest nodes."""
    missing = _not_measured(root, f"{MORE_VIDEOS_RUN}/run.json", MORE_VIDEOS_COMMAND)
    if missing:
        return missing
    more = _whole_run_with(root, MORE_VIDEOS_RUN, MORE_VIDEOS_CONFIG)
    nodes = {run: load_json(root, f"{run}/node_times.json")["nodes"] for run in (RERUN, MORE_VIDEOS_RUN)}
    slow = sorted(nodes[MORE_VIDEOS_RUN], key=lambda n: -nodes[MORE_VIDEOS_RUN][n])[:8]
    time_rows = [[n, *(f"{nodes[run].get(n, float('nan')) / 60:.1f}" for run in nodes)]
                 for n in slow]  # fmt: skip
    time_rows.append(["all nodes", *(f"{sum(nodes[run].values()) / 60:.1f}" for run in nodes)])
    rows, loads = _model_target_pairs(root, ((RERUN, "1x videos"), (MORE_VIDEOS_RUN, "1.4x videos")),
                                      speed=True)  # fmt: skip
    return (
        _run_line(root, RERUN)
        + "On more videos, in another fresh clone: "
        + _run_line(root, MORE_VIDEOS_RUN).removeprefix("Reference run ")
        + f"Its run config `{MORE_VIDEOS_CONFIG}` (run.params "
        f"`{json.dumps(more['run_config_params'])}`).\n\n"
        + "Their models on val (each run's own val split):\n\n"
        + _val_comparison(root, (RERUN, MORE_VIDEOS_RUN))
        + "\nThe targets, each run on its own test split:\n\n"
        + md_table(["what", "target", f"`{RERUN}`", f"`{MORE_VIDEOS_RUN}`", "change"], rows)
        + f"\nMean router weight with both modalities on val: {loads}.\n"
        + "\nMinutes of the slowest nodes on more videos, then of all nodes (`node_times.json`):\n\n"
        + md_table(["node", f"`{RERUN}`", f"`{MORE_VIDEOS_RUN}`"], time_rows)
    )


@renderer("default.more_videos.claims")
def default_more_videos_claims(root: Path) -> str:
    """The claim verdicts of ``MORE_VIDEOS_RUN`` (one seed, the default methods)."""
    missing = _not_measured(root, f"{MORE_VIDEOS_RUN}/run.json", MORE_VIDEOS_COMMAND)
    if missing:
        return missing
    _whole_run_with(root, MORE_VIDEOS_RUN, MORE_VIDEOS_CONFIG)
    return run_claims(root, MORE_VIDEOS_RUN)


def _variant_times(root: Path, run: str) -> dict[str, float]:
    """Seconds of each ``train_variant`` node of reference run ``run`` that trained a model
    (R2ScP at ``params:seed`` reuses the mix pipeline's; unselected variants train none)."""
    from r2scp_pipeline.experiment import check_parameters

    params = load_json(root, f"{run}/run.json")["parameters"]
    nodes = load_json(root, f"{run}/node_times.json")["nodes"]
    cfg = check_parameters(params["evaluate"], params["seed"])
    reused = len(cfg.seeds) == 1 and params["seed"] in cfg.seeds
    return {name: nodes[f"{name}.train_variant"] for name in cfg.methods
            if not (name == "r2scp" and reused)}  # fmt: skip


def _full_projection(root: Path, params: dict, nodes: dict) -> tuple[list[list], float]:
    """The parts of a configuration (``params``) beyond its measured first part (``nodes``:
    its node times): rows (what, how many, minutes each, hours in all, basis) and the total
    seconds. Trainings at the first part's stage I and R2ScP stage II; the generative imputers
    and the evaluation per model at ``FULL_METHODS_RUN``'s, when kept."""
    from r2scp_pipeline.experiment import check_parameters

    cfg = check_parameters(params["evaluate"], params["seed"])
    grid = grid_trainings(params)
    parts = [
        ("stage I: every other seed's shared experts, and each seed of a variant that retrains "
         "them", grid["stage I"], nodes[STAGE_NODES["stage I"]],
         f"`{STAGE_NODES['stage I']}` above (seed {params['seed']})"),
        ("stage II: each seed of each variant (R2ScP's at this seed is the one above)",
         grid["stage II"], nodes[STAGE_NODES["stage II"]], f"`{STAGE_NODES['stage II']}` above"),
    ]  # fmt: skip
    if (root / RESULTS / FULL_METHODS_RUN / "run.json").exists():
        other = load_json(root, f"{FULL_METHODS_RUN}/run.json")["parameters"]
        done = load_json(root, f"{FULL_METHODS_RUN}/node_times.json")["nodes"]
        seen = check_parameters(other["evaluate"], other["seed"])
        models = len(seen.methods) * len(seen.seeds)
        parts += [
            ("generative imputers, one per seed", len(cfg.seeds),
             done["train_generative_imputers"] / len(seen.seeds),
             f"`{FULL_METHODS_RUN}` ({len(seen.seeds)} seed{'s' * (len(seen.seeds) > 1)})"),
            ("evaluation of each model at every setting and missing rate",
             len(cfg.methods) * len(cfg.seeds), done["evaluate_methods"] / models,
             f"`{FULL_METHODS_RUN}` ({models} models)"),
        ]  # fmt: skip
    rows = [[what, n, f"{each / 60:.1f}", f"{n * each / 3600:.1f}", basis]
            for what, n, each, basis in parts]  # fmt: skip
    return rows, sum(n * each for _, n, each, _ in parts)


#: the default configuration's methods and seed trained and evaluated on the full environment's
#: data (``docs/run_configs/full_default_methods.yml``), after ``FULL_RUN`` in its data root
FULL_METHODS_RUN = "full_default_methods"


@renderer("full.default_methods")
def full_default_methods(root: Path) -> str:
    """The default configuration's model-comparing targets on the full environment's data
    (``FULL_METHODS_RUN``) next to the default run's, per question type, and its claims."""
    command = ("python scripts/reference_run.py --env full --pipelines variants,evaluate "
               "--continue-run --config docs/run_configs/full_default_methods.yml "
               "--out docs/results/full_default_methods")  # fmt: skip
    missing = _not_measured(root, f"{FULL_METHODS_RUN}/run.json", command)
    if missing:
        return missing
    base = _default_run_on_cpu_of(root, FULL_METHODS_RUN)
    rows, loads = _model_target_pairs(root, ((base, "default data"),
                                             (FULL_METHODS_RUN, "full data")))  # fmt: skip
    needs = _csv(root, FULL_METHODS_RUN, "modality_needs.csv")
    videos = [load_json(root, f"{run}/run.json")["parameters"]["dataset"]["embedded"]["num_videos"]
              for run in (base, FULL_METHODS_RUN)]  # fmt: skip
    return (
        _run_line(root, FULL_METHODS_RUN)
        + f"Default data: `docs/results/{base}/`; each on its own test split.\n\n"
        + md_table(["what", "target", f"default data ({videos[0]:,} videos)",
                    f"full data ({videos[1]:,} videos)", "change"], rows)
        + f"\nMean router weight with both modalities on val: {loads}.\n\n"
        + "Per question type, on the full data:\n\n" + _modality_needs_table(needs)
        + _best_expert_line(needs)
    )


@renderer("full.default_methods.claims")
def full_default_methods_claims(root: Path) -> str:
    """The claim verdicts of ``FULL_METHODS_RUN`` (one seed, the default methods)."""
    return run_claims(root, FULL_METHODS_RUN)


@renderer("expert_generalisation")
def expert_generalisation(root: Path) -> str:
    """benchmarks/expert_generalisation.py: the stage-I experts on training vs unseen videos."""
    r = load_json(root, "expert_generalisation.json")
    splits = list(r["answers"])
    answers = [[name, *[float(r["answers"][s][name]) for s in splits]]
               for name in ("audio", "visual", "text", "average of the three")]  # fmt: skip
    ground = [[f"{m}: {metric.replace('_', ' ')}",
               *[float(r["grounding"][s][m][metric]) for s in splits]]
              for m in ("audio", "visual") for metric in ("precision", "recall", "exact_set")]  # fmt: skip
    counts = ", ".join(f"{s} {r['answers'][s]['questions']} questions / "
                       f"{r['grounding'][s]['videos']} videos" for s in splits)  # fmt: skip
    return (
        f"`{r['command'].strip()}` ({counts}; load average "
        f"{r['machine']['load_average'][0]:.1f}).\n\n"
        + md_table(["expert answering alone (accuracy %)", *splits], answers) + "\n"
        + md_table(["grounding heads (per audio second / visual cell)", *splits], ground)
    )


@renderer("training_threads")
def training_threads(root: Path) -> str:
    """docs/results/training_threads*.json, written by ``python benchmarks/training.py
    --project P --threads 1 2 [--busy 1] --out ...``: one row per thread count and load."""
    files = sorted((root / RESULTS).glob("training_threads*.json"))
    if not files:
        return ("Not measured yet: run `python benchmarks/training.py --project . --threads 1 2 "
                "--out docs/results/training_threads.json` on an otherwise idle machine.\n")  # fmt: skip
    rows, commands = [], []
    for f in files:
        r = load_json(root, f.name)
        commands.append(f"`{r['command'].strip()}` ({r['data']}, {r['train_questions']:,} training "
                        f"questions, {r['epochs']} epochs per stage, d_model {r['d_model']}; "
                        f"{r['machine']['cpus']} CPUs, torch {r['machine']['torch']})")  # fmt: skip
        for run in r["runs"]:
            up = run.get("speedup_vs_first")
            same = run.get("same_scores_as_first")
            rows.append([
                run["threads"], r["busy"], float(run["stage_one"]["train_samples_per_s"]),
                float(run["stage_two"]["train_samples_per_s"]),
                float(run["stage_two_per_sample_vs_stage_one"]),
                "-" if up is None else f"{up['stage_one']:.2f}x / {up['stage_two']:.2f}x",
                "-" if same is None else " / ".join("yes" if same[st] else "no"
                                                    for st in ("stage_one", "stage_two")),
                " -> ".join(f"{x:.2f}" for x in run["load_average"]),
            ])  # fmt: skip
    return (
        "; ".join(commands) + ".\n\n"
        + md_table(["torch threads", "other busy processes", "stage I samples/s",
                    "stage II samples/s", "stage II / stage I per sample",
                    "speed-up vs the file's first row (I / II)",
                    "same best val score as the first row (I / II)", "load average"], rows)
    )  # fmt: skip


def _speed_pair(root: Path, stem: str, column: str) -> str:
    """docs/results/<stem>_{before,after}.json: ``benchmarks/training.py`` run on one machine
    from the commit before a change and from the one that has it (``column`` names the rows)."""
    names = (f"{stem}_before.json", f"{stem}_after.json")
    missing = [n for n in names if not (root / RESULTS / n).exists()]
    if missing:
        return (f"Not measured yet: `python benchmarks/training.py --project P --epochs 2 --out "
                f"docs/results/<file>` from each commit writes {', '.join(missing)}.\n")  # fmt: skip
    rows, commands = [], []
    runs = [load_json(root, n) for n in names]
    for label, r in zip(("before", "after"), runs, strict=True):
        if r["data"] != runs[0]["data"] or r["epochs"] != runs[0]["epochs"]:
            raise ValueError(f"{stem}: the two measurements read other data or epochs")
        run = r["runs"][0]
        changed = ", ".join(r.get("dirty_files") or []) or "none"
        commands.append(f"{label}: `{r['command'].strip()}` at commit `{str(r['commit'])[:10]}` "
                        f"(files changed in that checkout: {changed}; 1-minute load average "
                        f"{run['load_average'][0]:.1f})")  # fmt: skip
        rows.append([label, f"`{str(r['commit'])[:10]}`", run["threads"],
                     float(run["stage_one"]["train_samples_per_s"]),
                     float(run["stage_two"]["train_samples_per_s"]),
                     float(run["stage_two_per_sample_vs_stage_one"])])  # fmt: skip
    speed = {st: runs[1]["runs"][0][st]["train_samples_per_s"]
             / runs[0]["runs"][0][st]["train_samples_per_s"] for st in ("stage_one", "stage_two")}  # fmt: skip
    r = runs[0]
    cpu = f" ({r['machine']['cpu_model']})" if r["machine"].get("cpu_model") else ""
    return (
        f"{r['data']}, {r['train_questions']:,} training questions, {r['epochs']} epochs per "
        f"stage; {r['machine']['cpus']} CPUs{cpu}, torch {r['machine']['torch']}. "
        + "; ".join(commands) + ".\n\n"
        + md_table([column, "commit", "torch threads", "stage I samples/s", "stage II samples/s",
                    "stage II / stage I per sample"], rows)
        + f"\nAfter / before: stage I {speed['stage_one']:.2f}x, stage II {speed['stage_two']:.2f}x "
        "as many samples per second.\n"
    )  # fmt: skip


@renderer("readout_speed")
def readout_speed(root: Path) -> str:
    """The single-query readout: ``training_readout_{before,after}.json``."""
    return _speed_pair(root, "training_readout", "readout")


@renderer("cap_votes_speed")
def cap_votes_speed(root: Path) -> str:
    """CAP's MLP on the k kept tokens and the cached expert votes:
    ``training_cap_votes_{before,after}.json``."""
    return _speed_pair(root, "training_cap_votes", "code")


@renderer("video_batch_speed")
def video_batch_speed(root: Path) -> str:
    """Stage-II batches by video with CAP's SA once per video, the MCA read on the k kept
    tokens: ``training_video_batch_{before,after}.json``."""
    return _speed_pair(root, "training_video_batch", "code")


@renderer("ddp")
def ddp(root: Path) -> str:
    """docs/results/ddp*.json, written by ``python benchmarks/ddp.py [--batch-size B --out ...]``:
    1 process against N, one table per global batch size."""
    files = sorted((root / RESULTS).glob("ddp*.json"),
                   key=lambda f: (f.name != "ddp.json", f.name))  # fmt: skip
    if not files:
        return ("Not measured yet: run `python benchmarks/ddp.py` on an otherwise idle machine, "
                "then `python scripts/render_docs.py`.\n")  # fmt: skip
    return "\n".join(_ddp_table(load_json(root, f.name)) for f in files)


def _ddp_table(r: dict) -> str:
    one, many = r["runs"]
    n = many["world_size"]
    label = f" ({r['label']})" if r.get("label") else ""
    loads = " and ".join(
        f"{a:.2f} / {b:.2f}" for a, b in (one["load_average"], many["load_average"])
    )
    batch = r.get("batch_size")
    head = (
        f"`{r['command']}`{label}: global batch "
        f"{'of conf/base' if batch is None else batch} in both stages, {r['videos']:,} "
        f"synthetic videos, {r['train_questions']:,} training and {r['val_questions']:,} val "
        f"questions, {r['epochs']} epoch(s) per stage, dropout "
        f"{'of conf/base' if r['dropout'] is None else r['dropout']}; {r['machine']['cpus']} CPUs, "
        f"torch {r['machine']['torch']}; 1-minute load average before / after: {loads} "
        f"(1 process, then {n}).\n\n"
    )
    rows = []
    for stage, label in (("stage_one", "stage I (pretrain)"), ("stage_two", "stage II (mix)")):
        s = r[stage]
        bound = s.get("bound_without_communication")
        rows.append([label, float(one[stage]["samples_per_s"]), float(many[stage]["samples_per_s"]),
                     f"{s['speedup']:.2f}x ({'met' if s['speedup_met'] else '**missed**'})",
                     "not measured" if bound is None else f"{bound:.2f}x",
                     float(one[stage]["best_val_score"]), float(many[stage]["best_val_score"]),
                     f"{s['accuracy_delta']:+.2f} ({'within' if s['accuracy_met'] else '**outside**'})"])  # fmt: skip
    header = ["training", "samples/s, 1 x 1 thread", f"samples/s, {n} x 1 thread",
              f"speedup (target >= {r['target_speedup']})",
              f"bound without communication (1 process at batch {r.get('per_rank_batch', '?')}, x {n})",
              "best val score, 1 process",
              f"best val score, {n} processes", f"difference (tolerance {r['accuracy_tolerance']})"]  # fmt: skip
    return head + md_table(header, rows)


def _not_measured(root: Path, name: str, command: str) -> str | None:
    """The body of a block whose result file is not committed yet, else None."""
    if (root / RESULTS / name).exists():
        return None
    return f"Not measured yet: `{command}` writes `docs/results/{name}`.\n"


def _run_head(r: dict, extra: str = "") -> str:
    return f"`{r['command'].strip()}`; {r['machine']}{extra}."


@renderer("corpus_study")
def corpus_study(root: Path) -> str:
    """scripts/corpus_study.py: in-domain memory bank vs the generated external corpus."""
    missing = _not_measured(root, "corpus_study.json", "python scripts/corpus_study.py")
    if missing:
        return missing
    r = load_json(root, "corpus_study.json")

    def acc(row: dict, method: str, key: str) -> object:
        v = row["accuracy"][method].get(key)
        return "-" if v is None else float(v)

    rows = []
    for row in r["rows"]:
        q = row["retrieval_test"]
        rows.append([row["corpus"], acc(row, "R2ScP", "audio_missing"),
                     acc(row, "R2ScP", "visual_missing"), acc(row, "R2ScP", "mean"),
                     acc(row, "random retrieval", "mean"),
                     f"{q.get('a2v_pos', float('nan')):.2f} / {q.get('a2v_random', float('nan')):.2f}",
                     f"{q.get('v2a_pos', float('nan')):.2f} / {q.get('v2a_random', float('nan')):.2f}"])  # fmt: skip
    runs = "; ".join(f"`{row['command']}` at {str(row['commit'])[:7]}" for row in r["rows"])
    warn = "" if r["same_commit"] else " **The two runs come from different commits.**"
    head = f"`{r['command']}`: {runs}.{warn}\n\n"
    return head + md_table(
        ["memory bank", "R2ScP, audio missing", "R2ScP, visual missing", "R2ScP, mean (Table 4)",
         "random retrieval, mean", "R+ / random overlap a2v (test)",
         "R+ / random overlap v2a (test)"],
        rows,
    )


@renderer("retrieval")
def retrieval(root: Path) -> str:
    """benchmarks/retrieval.py --out: FAISS Flat / IVF / HNSW vs torch on clustered keys."""
    missing = _not_measured(
        root, "retrieval.json", "python benchmarks/retrieval.py --out docs/results/retrieval.json"
    )
    if missing:
        return missing
    r = load_json(root, "retrieval.json")
    out = (
        _run_head(
            r,
            f", faiss {r['faiss']}, torch {r['torch']}, {r['threads']} threads; {r['keys']}, "
            f"d = {r['dim']}, {r['queries']} queries; {r['total_s']:.0f} s in all, peak RSS of the "
            f"process {r['peak_rss_mb']:,} MB",
        )
        + "\n"
    )
    for size in r["sizes"]:
        torch_qps = next(x["qps"] for x in size["rows"] if x["method"] == "torch brute force")
        out += (
            f"\nN = {size['n']:,} keys ({size['keys_mb']:,} MB), load average "
            f"{size['load_average_start']:.1f} -> {size['load_average_end']:.1f}:\n\n"
        )
        rows = [
            [x["method"], f"{x['build_s']:.1f} s", f"{x['qps']:,.0f} q/s", f"+{x['mem_mb']:,.0f} MB",
             f"+{x['peak_mb']:,.0f} MB", f"{x['recall3']:.3f}", f"{x['qps'] / torch_qps:.1f}x"]
            for x in size["rows"]
        ]  # fmt: skip
        header = ["method", "build", "throughput", "index memory", "peak above start",
                  "recall@3", "vs torch"]  # fmt: skip
        out += md_table(header, rows)
    return out


@renderer("dask_features")
def dask_features(root: Path) -> str:
    """docs/results/dask_features*.json, written by ``python benchmarks/dask_features.py
    [--malloc-trim] --out ...``: feature extraction on a Dask LocalCluster, one table per file."""
    files = sorted((root / RESULTS).glob("dask_features*.json"),
                   key=lambda f: (f.name != "dask_features.json", f.name))  # fmt: skip
    if not files:
        return ("Not measured yet: run `python benchmarks/dask_features.py --out "
                "docs/results/dask_features.json` on an otherwise idle machine, then "
                "`python scripts/render_docs.py`.\n")  # fmt: skip
    return "\n".join(_dask_table(load_json(root, f.name)) for f in files)


def _dask_table(r: dict) -> str:
    trim = r.get("malloc_trim_threshold", "not recorded")
    trim = "unset" if trim is None else trim
    head = _run_head(
        r,
        f"; {r['videos']} synthetic videos, {r['shards']} shards per modality, "
        f"{r['input_size']} px; workers' `MALLOC_TRIM_THRESHOLD_`: {trim}; one process with the "
        f"plain nodes: {r['sequential_s']:.1f} s; 1-minute load average "
        f"{r['load_average_start']:.2f} at the start, {r['load_average_end']:.2f} at the end",
    )
    rows = [
        [f"{x['workers']} x {x['threads_per_worker']} thread", f"{x['wall_s']:.1f}",
         f"{x['videos_per_s']:.2f}", f"{x['speedup']:.2f}", f"{x['audio_max_abs_diff']:.1e}",
         f"{x['visual_max_abs_diff']:.1e}", "yes" if x["equal"] else "**no**"]
        for x in r["runs"]
    ]  # fmt: skip
    header = ["workers", "wall s", "videos/s", "speedup vs 1 worker",
              "audio: max abs diff", "visual: max abs diff", "equal to sequential"]  # fmt: skip
    return head + "\n\n" + md_table(header, rows)


@renderer("large_index")
def large_index(root: Path) -> str:
    """benchmarks/large_index.py --out: 1M / 10M keys, compressed indices, mmap, vs torch."""
    missing = _not_measured(
        root,
        "large_index.json",
        "python benchmarks/large_index.py --out docs/results/large_index.json",
    )
    if missing:
        return missing
    r = load_json(root, "large_index.json")
    target = r["target_recall3"]
    out = (
        _run_head(
            r,
            f", faiss {r['faiss']}, torch {r['torch']}, {r['threads']} threads, {r['queries']} "
            f"queries; {r['total_s']:.0f} s in all, peak RSS of the process {r['peak_rss_mb']:,.0f} MB",
        )
        + "\n"
    )
    for size in r["sizes"]:
        reach = size["probe_reach"]
        out += (
            f"\n**N = {size['n']:,} keys**, d = {size['d']}, nlist = {size['nlist']}; keys: "
            f"{size['keys']}. Exact top-3 found in the query's nearest inverted list: "
            f"{reach['probe1']:.3f} (4 lists {reach['probe4']:.3f}, 16 lists "
            f"{reach['probe16']:.3f}); mean cosine of the nearest neighbour "
            f"{size['exact_nn_cosine_mean']:.3f}. Exact torch search: "
            f"{size['torch_exact_qps']:.1f} q/s over all keys. Peak RSS of the build "
            f"{size['peak_rss_build_mb']:,.0f} MB; load average {size['load_average_start']:.1f} "
            f"-> {size['load_average_end']:.1f}.\n\n"
        )
        rows = []
        for ix in size["indices"]:
            best = ix["best"]
            if best is None:
                top = max(ix["sweep"], key=lambda x: x["recall3"])
                setting = f"none reaches {target} (best recall@3 {top['recall3']:.3f})"
                qps = recall3 = ratio = "-"
            else:
                setting = f"nprobe={best['nprobe']}" + (
                    f", k_factor={best['k_factor']}" if "k_factor" in best else ""
                )
                qps, recall3, ratio = (f"{best['qps']:,.0f}", f"{best['recall3']:.3f}",
                                       f"**{best['x_torch']:.0f}x**")  # fmt: skip
            rows.append([f"`{ix['factory']}`", f"{ix['build_s']:.0f} s ({ix['train_s']:.0f} s train)",
                         f"{ix['file_mb']:,.0f} MB", f"+{ix['rss_after_load_mb']:,.0f} MB",
                         f"{ix['peak_rss_search_mb']:,.0f} MB", setting, qps, recall3, ratio])  # fmt: skip
        header = ["index", "build", "file", "RSS after mmap load", "peak RSS searching",
                  f"fastest setting with recall@3 >= {target}", "q/s", "recall@3",
                  "vs exact torch"]  # fmt: skip
        out += md_table(header, rows)
    return out


if __name__ == "__main__":
    sys.exit(main())
