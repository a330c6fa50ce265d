"""Nested MLflow runs: one child per (method, seed, setting, missing rate) under the run.

kedro-mlflow opens a run for every ``kedro run`` (``conf/base/mlflow.yml``, ``nested: True``)
and keeps it active while nodes execute; that run is the parent. Each child carries the
accuracies as metrics, ``method``/``setting``/``missing_rate`` as params *and* tags, so the
MLflow UI's compare view lines the missing-rate runs up side by side and groups seeds (filter e.g.
``tags.method = 'r2scp' and tags.setting = 'audio_missing'``). This cannot be a catalog entry:
a dataset logs into the one active run, not into children.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import mlflow
import pandas as pd

logger = logging.getLogger(__name__)


def _metric_name(section: str, metric: str) -> str:
    prefix = {"paper": "paper", "loads": "load"}.get(section, "acc")
    return f"{prefix}/{metric.replace('-', '_')}"


def log_child_runs(
    results: pd.DataFrame, tags: dict[str, str] | None = None, max_runs: int | None = None
) -> list[str]:
    """Log one nested MLflow run per (method, seed, setting, missing_rate) of ``results``.

    Does nothing (returns ``[]``, logs a warning) when no MLflow run is active, e.g. with
    tracking disabled for this pipeline. Returns the child run ids, in ``results`` order.
    """
    parent = mlflow.active_run()
    if parent is None:
        logger.warning("no active MLflow run: the per-(method, setting, rate) runs are not logged")
        return []
    ids: list[str] = []
    groups: Iterable = results.groupby(["method", "seed", "setting", "missing_rate"], sort=False)
    for i, ((method, seed, setting, rate), d) in enumerate(groups):
        if max_runs is not None and i >= max_runs:
            break
        run_tags = {
            "method": str(method),
            "seed": str(int(seed)),
            "setting": str(setting),
            "missing_rate": f"{rate:g}",
            "parent_run_id": parent.info.run_id,
            **(tags or {}),
        }
        with mlflow.start_run(
            run_name=f"{method} | seed {int(seed)} | {setting} | {rate:g}", nested=True,
            tags=run_tags,
        ) as child:
            mlflow.log_params({"method": method, "seed": int(seed), "setting": setting,
                               "missing_rate": float(rate)})  # fmt: skip
            mlflow.log_metrics(
                {
                    _metric_name(s, m): float(v)
                    for s, m, v in zip(d["section"], d["metric"], d["value"], strict=True)
                }
            )
            ids.append(child.info.run_id)
    logger.info("logged %d nested MLflow runs under run %s", len(ids), parent.info.run_id)
    return ids
