"""The corpus study (paper Table 4): the default run's in-domain memory bank (the training
split) against an external corpus made by the ``corpus`` pipeline, everything else equal.

    python scripts/corpus_study.py              # corpus + `kedro run --env=corpus_study`, then compare
    python scripts/corpus_study.py --skip-run   # only compare the committed result folders

Runs ``kedro run --pipelines=corpus --env=corpus_study`` (the corpus media and features under
data/corpus_study/01_raw/external_corpus/), then ``scripts/reference_run.py --env corpus_study
--out docs/results/corpus_study`` (the whole evaluation with ``build_index.corpus.source:
external``), and writes ``docs/results/corpus_study.json``: per memory bank, R2ScP's overall
accuracy with the audio / the visual stream missing and their mean (Table 4's figure), the
random-retrieval bracket, and the retrieval quality (R+ instrument overlap, test queries). The
in-domain row comes from ``docs/results/default`` (``python scripts/reference_run.py``); both
commits are recorded, so a comparison across commits shows as one. ``scripts/render_docs.py``
puts it in docs/build_index.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("audio_missing", "visual_missing")
METHODS = ("R2ScP", "random retrieval")


def _accuracy(results: pd.DataFrame, method: str) -> dict[str, float | None]:
    """Overall accuracy of ``method`` per missing setting (its highest missing rate) and mean."""
    rows = results[results["method"] == method]
    out: dict[str, float | None] = {}
    for setting in SETTINGS:
        sub = rows[rows["setting"] == setting]
        if not len(sub):
            out[setting] = None
            continue
        top = sub.loc[sub["missing_rate"].astype(float).idxmax()]
        out[setting] = float(top["Overall"])
        out["missing_rate"] = float(top["missing_rate"])
    values = [out[s] for s in SETTINGS if out.get(s) is not None]
    out["mean"] = sum(values) / len(values) if len(values) == len(SETTINGS) else None
    return out


def _quality(quality: pd.DataFrame, split: str = "test") -> dict[str, float]:
    """R+ and random instrument overlap per direction for the ``split`` queries."""
    sub = quality[quality["split"] == split]
    return {f"{d}_{k}": float(g["overlap"].iloc[0])
            for (d, k), g in sub.groupby(["direction", "kind"]) if k in ("pos", "random")}  # fmt: skip


def summarise(folder: Path, label: str) -> dict:
    """One memory bank's row from a reference-run folder (results_table.csv, retrieval_quality.csv,
    run.json); raises FileNotFoundError naming the missing file."""
    for name in ("results_table.csv", "retrieval_quality.csv", "run.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: run scripts/reference_run.py for it")
    run = json.loads((folder / "run.json").read_text())
    results = pd.read_csv(folder / "results_table.csv")
    row = {
        "corpus": label,
        "command": run.get("command"),
        "commit": run.get("commit"),
        "dirty": run.get("dirty"),
        "corpus_source": ((run.get("parameters") or {}).get("build_index") or {})
        .get("corpus", {}).get("source"),
        "accuracy": {m: _accuracy(results, m) for m in METHODS},
        "retrieval_test": _quality(pd.read_csv(folder / "retrieval_quality.csv")),
    }
    report = folder / "corpus_report.json"
    if report.is_file():
        row["external_corpus"] = json.loads(report.read_text())
    return row


def compare(reference: Path, study: Path) -> dict:
    """The study's result: the in-domain row (``reference``) and the external one (``study``)."""
    rows = [summarise(reference, "training split (in-domain)"),
            summarise(study, "external: generated corpus")]  # fmt: skip
    commits = {r["commit"] for r in rows}
    return {"rows": rows, "same_commit": len(commits) == 1,
            "command": "python scripts/corpus_study.py"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-run", action="store_true", help="only compare existing result folders")
    ap.add_argument("--reference", type=Path, default=Path("docs/results/default"))
    ap.add_argument("--study", type=Path, default=Path("docs/results/corpus_study"))
    ap.add_argument("--out", type=Path, default=Path("docs/results/corpus_study.json"))
    args = ap.parse_args(argv)
    study = ROOT / args.study
    if not args.skip_run:
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        steps = [["kedro", "run", "--pipelines=corpus", "--env=corpus_study"],
                 [sys.executable, "scripts/reference_run.py", "--env", "corpus_study",
                  "--out", str(args.study)]]  # fmt: skip
        for cmd in steps:
            code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
            if code:
                print(f"{' '.join(cmd)} failed with exit code {code}", file=sys.stderr)
                return code
        report = ROOT / "data/corpus_study/01_raw/external_corpus/report.json"
        if report.is_file():
            shutil.copy2(report, study / "corpus_report.json")
    result = compare(ROOT / args.reference, study)
    (ROOT / args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"corpus study written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
