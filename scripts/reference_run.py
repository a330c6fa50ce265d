"""Run the whole project once, measured, and keep what it produced as a reference run.

    python scripts/reference_run.py                     # kedro run (base env) -> docs/results/default/
    python scripts/reference_run.py --env full --out docs/results/full
    python scripts/reference_run.py --env full --pipelines dataset,features,build_index,pretrain,mix
    python scripts/reference_run.py --env full --pipelines variants,evaluate --continue-run \\
        --config docs/run_configs/full_default_methods.yml --out docs/results/full_default_methods
    python scripts/reference_run.py --skip-run          # only collect an existing run's outputs
    python scripts/reference_run.py --runner r2scp_pipeline.runner.DaskRunner  # another runner

Writes ``<out>/run.json`` (commit, command, runner, environment, parameters, seed, machine,
load average, wall time, peak RSS: of the largest single process, and of the whole process
tree, the sum over ``kedro run`` and every process it started, sampled every half second) and
copies the run's report files next to it. README.md and docs/*.md show these files through
``scripts/render_docs.py``: no figure is typed by hand.

It refuses to start when ``<data root>/06_models`` holds checkpoints or models of an earlier
run: with ``resume: true`` the stages would return them instead of training (use a fresh clone).
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
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: report files copied from <data root>/08_reporting (absent ones are listed in run.json)
REPORTS = (
    "results_table.csv", "ablation_table.csv", "comparison_table.csv", "modality_needs.csv",
    "answer_prior.csv", "retrieval_quality.csv", "pretrain_history.json", "mix_history.json",
    "claims_verdicts.csv", "accuracy_vs_missing_rate.png", "node_times.json",
)  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def parameters(env: str, conf: Path = ROOT / "conf", runtime_params: dict | None = None) -> dict:
    """The parameters ``kedro run [--env=env]`` runs with: the project's own config-loader
    settings (``settings.CONFIG_LOADER_ARGS``: environments deep-merged over base, conf/local
    when no env is named), so an environment that overrides one nested key keeps the rest;
    ``runtime_params`` (a run config's ``run.params``) merged over them as Kedro merges them."""
    from kedro.config import OmegaConfigLoader

    from r2scp_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(conf), env=None if env == "base" else env,
                               runtime_params=runtime_params, **CONFIG_LOADER_ARGS)  # fmt: skip
    return json.loads(json.dumps(loader["parameters"], default=str))


def _cpu_model() -> str:
    from r2scp_pipeline.provenance import cpu_model  # the project's src on sys.path (as above)

    return cpu_model()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "kedro", "faiss", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[name] = "absent"
    return out


class TreeMemory:
    """Peak of the summed resident memory of a process and all its descendants, sampled every
    ``interval`` seconds on a background thread (Dask workers are grandchildren of ``kedro run``:
    ``RUSAGE_CHILDREN`` gives only the largest single one). ``peak_bytes`` sums RSS, which
    counts a page that several processes share (libraries, tensors sent to worker processes
    through shared memory) once per process; ``peak_pss_bytes`` sums PSS, which splits such a
    page between them (its peak, sampled alongside)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.peak_bytes = self.peak_pss_bytes = 0
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = pss = 0
            try:
                for proc in [self._root, *self._root.children(recursive=True)]:
                    try:
                        info = proc.memory_full_info()
                    except psutil.Error:  # ended between listing and reading
                        continue
                    total, pss = total + info.rss, pss + info.pss
            except psutil.Error:  # the root has ended
                return
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_config_params(path: Path) -> dict:
    """The ``run.params`` of a ``kedro run --config`` file (what it overrides), ``{}`` if none."""
    import yaml

    config = yaml.safe_load(Path(path).read_text()) or {}
    return dict((config.get("run") or {}).get("params") or {})


def earlier_models(data_root: Path) -> list[Path]:
    """Files an earlier run left under ``<data_root>/06_models`` (checkpoints, models): with
    ``resume: true`` the stages would return those instead of training, and the wall time and
    the results would not be a run's from scratch."""
    models = data_root / "06_models"
    return sorted(p for p in models.rglob("*") if p.is_file() and p.name != ".gitkeep")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="base", help="kedro environment (default: base)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/default"))
    ap.add_argument("--data-root", type=Path, default=None,
                    help="where the env writes data (default: data, or data/<env> for other envs)")
    ap.add_argument("--skip-run", action="store_true", help="collect an existing run's outputs")
    ap.add_argument("--runner", default=None, help="kedro run --runner (default: kedro's)")
    ap.add_argument("--runner-params", default=None, help="kedro run --runner-params")
    ap.add_argument("--pipelines", default=None,
                    help="kedro run --pipelines, e.g. dataset,features (default: all of them)")
    ap.add_argument("--config", type=Path, default=None,
                    help="kedro run --config FILE: a run config whose run.params override the "
                         "environment's (recorded in run.json's parameters)")
    ap.add_argument("--continue-run", action="store_true",
                    help="run in a data root that holds an earlier run's models, as this run's "
                         "inputs (e.g. --pipelines variants,evaluate after --pipelines ...,mix)")
    args = ap.parse_args(argv)
    out = ROOT / args.out
    data_root = ROOT / (args.data_root or (Path("data") if args.env == "base" else Path("data") / args.env))
    left = [] if args.skip_run or args.continue_run else earlier_models(data_root)
    if left:
        print(f"{data_root / '06_models'} holds {len(left)} files of an earlier run (e.g. "
              f"{left[0]}): the stages would resume from them. Remove them or use a fresh "
              "clone for a reference run.", file=sys.stderr)  # fmt: skip
        return 2
    command = ["kedro", "run"] + ([] if args.env == "base" else [f"--env={args.env}"])
    command += [f"--runner={args.runner}"] if args.runner else []
    command += [f"--runner-params={args.runner_params}"] if args.runner_params else []
    command += [f"--pipelines={args.pipelines}"] if args.pipelines else []
    command += [f"--config={args.config}"] if args.config else []
    runtime = run_config_params(args.config) if args.config else None
    run: dict = {
        "command": " ".join(command),
        "pipelines": args.pipelines or "__default__",
        "continues_earlier_run": args.continue_run,
        "run_config_params": runtime,
        "runner": args.runner or "SequentialRunner",  # kedro run's default
        "env": args.env,
        "commit": _git("rev-parse", "HEAD"),
        # what differs from the commit (tracked files only): a reader can judge the change
        "dirty_files": _git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(),
                    "platform": platform.platform()},
        "versions": _versions(),
    }  # fmt: skip
    run["dirty"] = bool(run["dirty_files"])
    if not args.skip_run:
        run["load_average_before"] = list(os.getloadavg())
        start = time.perf_counter()
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        with subprocess.Popen(command, cwd=ROOT, env=env) as proc, TreeMemory(proc.pid) as tree:
            code = proc.wait()
        run["wall_seconds"] = round(time.perf_counter() - start, 1)
        run["load_average_after"] = list(os.getloadavg())
        # ru_maxrss of the children: the largest single process (kedro runs in one), in KiB
        run["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        run["peak_tree_rss_mb"] = round(tree.peak_bytes / 2**20, 1)
        run["peak_tree_pss_mb"] = round(tree.peak_pss_bytes / 2**20, 1)
        if code:
            print(f"kedro run failed with exit code {code}; nothing collected", file=sys.stderr)
            return code
    params = parameters(args.env, runtime_params=runtime)
    run["seed"] = params.get("seed")
    run["parameters"] = params
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
    print(f"reference run written to {out}: {len(run['files'])} files"
          + (f", wall {run['wall_seconds']} s, peak RSS {run['peak_rss_mb']} MB"
             f" (process tree {run['peak_tree_rss_mb']} MB)" if "wall_seconds" in run else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
