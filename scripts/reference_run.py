"""Run the whole project once, measured, and keep what it produced as a reference run.

    python scripts/reference_run.py                     # kedro run (base env) -> docs/results/default/
    python scripts/reference_run.py --env full --out docs/results/full
    python scripts/reference_run.py --skip-run          # only collect an existing run's outputs

Writes ``<out>/run.json`` (commit, command, environment, parameters, seed, machine, load
average, wall time, peak RSS) and copies the run's report files next to it. README.md and
docs/*.md show these files through ``scripts/render_docs.py``: no figure is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: report files copied from <data root>/08_reporting (absent ones are listed in run.json)
REPORTS = (
    "results_table.csv", "ablation_table.csv", "comparison_table.csv", "modality_needs.csv",
    "answer_prior.csv", "retrieval_quality.csv", "pretrain_history.json", "mix_history.json",
    "claims_verdicts.csv", "accuracy_vs_missing_rate.png", "node_times.json",
)  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _parameters(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(conf_source=str(ROOT / "conf"), base_env="base", default_run_env=env)
    return json.loads(json.dumps(loader["parameters"], default=str))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "kedro", "faiss", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[name] = "absent"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="base", help="kedro environment (default: base)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/default"))
    ap.add_argument("--data-root", type=Path, default=None,
                    help="where the env writes data (default: data, or data/<env> for other envs)")
    ap.add_argument("--skip-run", action="store_true", help="collect an existing run's outputs")
    args = ap.parse_args(argv)
    out = ROOT / args.out
    data_root = ROOT / (args.data_root or (Path("data") if args.env == "base" else Path("data") / args.env))
    command = ["kedro", "run"] + ([] if args.env == "base" else [f"--env={args.env}"])
    run: dict = {
        "command": " ".join(command),
        "env": args.env,
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(),
                    "platform": platform.platform()},
        "versions": _versions(),
    }  # fmt: skip
    if not args.skip_run:
        run["load_average_before"] = list(os.getloadavg())
        start = time.perf_counter()
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        run["wall_seconds"] = round(time.perf_counter() - start, 1)
        run["load_average_after"] = list(os.getloadavg())
        # ru_maxrss of the children: the largest single process (kedro runs in one), in KiB
        run["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if code:
            print(f"kedro run failed with exit code {code}; nothing collected", file=sys.stderr)
            return code
    parameters = _parameters(args.env)
    run["seed"] = parameters.get("seed")
    run["parameters"] = parameters
    reports = data_root / "08_reporting"
    out.mkdir(parents=True, exist_ok=True)
    run["files"], run["absent"] = [], []
    for name in REPORTS:
        src = reports / name
        if src.exists():
            shutil.copy2(src, out / name)
            run["files"].append(name)
        else:
            run["absent"].append(name)
    (out / "run.json").write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
    print(f"reference run written to {out.relative_to(ROOT)}: {len(run['files'])} files"
          + (f", wall {run['wall_seconds']} s, peak RSS {run['peak_rss_mb']} MB" if "wall_seconds" in run else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
