"""Project hooks (registered in ``settings.py``).

:class:`ProjectMlflowStore` keeps the local MLflow store self-contained: its folder exists,
its artifact locations point into this project (also after the project was copied), and the
experiment opens on the runs table in MLflow 3's UI.

:class:`EarlyChecks` checks, before the first node of a ``kedro run``, every parameter group
against its schema (:mod:`r2scp_pipeline.params`: an unknown key or a wrong type names the
dotted key), then the parameters that otherwise fail only deep into the run: the FAISS index
string (else found out after the joint
space was trained and saved) and ``model.n_retrieve`` against the neighbour depth (else after
stage I has trained). It runs before kedro-mlflow opens its run, so a bad value leaves no
half-started MLflow run behind.

:class:`MlflowParamsOnce` is kedro-mlflow's hook (registered in its place) with one change:
a node's parameters are logged in one batch, and a parameter already logged to the run with the
same value is not logged again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from .experiment import check_parameters

logger = logging.getLogger(__name__)


def _node_names(pipeline: Pipeline) -> set[str]:
    return {n.name.rsplit(".", 1)[-1] for n in pipeline.nodes}


def _consumers(pipeline: Pipeline, *inputs: str) -> bool:
    return any(set(inputs) <= set(n.inputs) for n in pipeline.nodes)


def check_factory_params(params: dict[str, Any]) -> None:
    """``build_index.index.factory`` / ``search_params`` build an index of the unified space's
    width (``joint_space.dim``; with ``embeddings.source: table`` the width is the table's and
    is only known when it is read, so then only strings FAISS cannot parse at all fail here)."""
    from r2scp_pipeline.pipelines.build_index.index import check_factory

    bi = params.get("build_index") or {}
    index = bi.get("index") or {}
    factory = index.get("factory", "Flat")
    search_params = str(index.get("search_params") or "")
    if (bi.get("embeddings") or {}).get("source", "learned") == "learned":
        check_factory(factory, int((bi.get("joint_space") or {}).get("dim", 256)), search_params)
        return
    try:  # width unknown: some width must work (PQ needs d divisible by M, ...)
        check_factory(factory, 2**10 * 3 * 5 * 7, "")
    except ValueError:
        check_factory(factory, 2**10, "")


def neighbour_depth(neighbors) -> int:
    """The fewest neighbours any (query, direction, polarity) of a ``neighbors`` table has."""
    if len(neighbors) == 0:
        return 0
    return int(neighbors.groupby(["query_video_id", "direction", "polarity"]).size().min())


def check_n_retrieve(params: dict[str, Any], depth: int, where: str) -> None:
    """``model.n_retrieve`` (and that of every ablation ``evaluate.methods`` trains) is at most
    the neighbour depth."""
    wanted = {"model.n_retrieve": int((params.get("model") or {}).get("n_retrieve", 3))}
    ablations = (params.get("evaluate") or {}).get("ablations") or {}
    try:
        selected = set(check_parameters(params.get("evaluate") or {}, int(params.get("seed", 0)))
                       .methods)  # fmt: skip
    except ValueError:  # incomplete parameters (reported by their own check): every ablation
        selected = set(ablations)
    for name, over in ablations.items():
        if name not in selected:
            continue
        n = ((over or {}).get("model") or {}).get("n_retrieve")
        if n is not None:
            wanted[f"evaluate.ablations.{name}.model.n_retrieve"] = int(n)
    key, n = max(wanted.items(), key=lambda kv: kv[1])
    if n > depth:
        raise ValueError(
            f"{key} = {n} but {where} holds {depth} neighbours per video; lower {key} or "
            f"raise build_index.neighbors.n to >= {n} (and run build_index)"
        )


class EarlyChecks:
    """Parameter checks run before any node: every group's schema (whatever the pipeline),
    then the checks that need more than one pipeline's parameters."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        from r2scp_pipeline.params import validate_parameters

        params = catalog.load("parameters")
        validate_parameters(params)
        names = _node_names(pipeline)
        if not names & {"build_indices", "mix_experts"} and not _consumers(
            pipeline, "neighbors", "params:model"
        ):
            return
        if "build_indices" in names:
            check_factory_params(params)
        if _consumers(pipeline, "neighbors", "params:model"):
            if "neighbors" in pipeline.all_outputs():
                n = int(((params.get("build_index") or {}).get("neighbors") or {}).get("n", 3))
                check_n_retrieve(params, n, "build_index.neighbors.n")
            elif catalog.exists("neighbors"):
                depth = neighbour_depth(catalog.load("neighbors"))
                check_n_retrieve(params, depth, "the neighbors table (catalog entry 'neighbors')")


def _mlflow_conf(context: KedroContext) -> dict[str, Any]:
    loader = context.config_loader
    if "mlflow" not in loader.config_patterns:  # kedro-mlflow adds the same patterns later
        loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
    try:
        return dict(loader["mlflow"] or {})
    except Exception:  # no mlflow.yml: kedro-mlflow's defaults, nothing to do here
        return {}


class ProjectMlflowStore:
    """The local MLflow store stays with the project; see :mod:`r2scp_pipeline.mlflow_store`."""

    def __init__(self) -> None:
        self._experiment: str | None = None

    @hook_impl(tryfirst=True)  # before kedro-mlflow opens the store and creates the experiment
    def after_context_created(self, context: KedroContext) -> None:
        from r2scp_pipeline.mlflow_store import relocate_artifacts, sqlite_path

        conf = _mlflow_conf(context)
        uri = (conf.get("server") or {}).get("mlflow_tracking_uri")
        experiment = (conf.get("tracking") or {}).get("experiment") or {}
        self._experiment = experiment.get("name")
        db = sqlite_path(uri, Path(context.project_path))
        if db is None:
            return
        db.parent.mkdir(parents=True, exist_ok=True)  # e.g. data/test/ of --env=test
        if self._experiment:
            kwargs = experiment.get("create_experiment_kwargs") or {}
            relocate_artifacts(
                db, self._experiment, Path(context.project_path), kwargs.get("artifact_location")
            )

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Experiments created before ``mlflow.yml`` set the kind tag get it now."""
        from r2scp_pipeline.mlflow_store import EXPERIMENT_KIND

        if not self._experiment:
            return
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(self._experiment)
        key, value = EXPERIMENT_KIND
        if exp is not None and key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, value)


class MlflowParamsOnce(MlflowHook):
    """kedro-mlflow's hook, logging each node's parameters once per run and in one batch.

    kedro-mlflow logs the (flattened) parameter inputs of every node, one SQL transaction per
    key, before the node runs. Every variant node of a default run reads the same parameter
    groups, so most of those calls re-log a key that the run already has, and the seconds go
    into the store instead of the nodes. Here the keys a node would log are collected, the ones
    the run already holds with the same value are dropped, and the rest go to the store in one
    ``mlflow.log_params`` call. What ends up in the run is unchanged: a key logged again with a
    different value still fails as MLflow makes it. Long values keep kedro-mlflow's
    ``long_params_strategy``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, Any] | None = None
        self._logged: dict[str, str] = {}
        self._logged_run: str | None = None

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any], is_async: bool) -> None:
        self._pending = batch = {}  # filled by _log_param below
        try:
            super().before_node_run(node, catalog, inputs, is_async)
        finally:
            self._pending = None
        if self._logged_run != self.run_id:  # a new kedro run in the same process
            self._logged, self._logged_run = {}, self.run_id
        new = {k: v for k, v in batch.items() if self._logged.get(k) != v}
        if new:
            mlflow.log_params(new)
            self._logged.update(new)

    def _log_param(self, name: str, value: Any) -> None:
        text = str(value)
        if self._pending is None or len(text) > MAX_PARAM_VAL_LENGTH:
            return super()._log_param(name, value)  # tag / truncate / fail, as configured
        self._pending[name] = text
        return None


class NodeTimes:
    """Wall seconds of every node of a run, saved to the catalog entry ``node_times`` (when the
    catalog has one; ``data/08_reporting/node_times.json`` in base) at the end of the run, with
    the slowest nodes logged: where the time of a ``kedro run`` goes, without a profiler."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._seconds: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._start, self._seconds = {}, {}

    @hook_impl
    def before_node_run(self, node) -> None:
        self._start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        if node.name in self._start:
            self._seconds[node.name] = round(time.perf_counter() - self._start.pop(node.name), 2)

    @hook_impl
    def after_pipeline_run(self, catalog: DataCatalog) -> None:
        slowest = sorted(self._seconds.items(), key=lambda kv: -kv[1])
        total = sum(self._seconds.values())
        logger.info("node times (s, slowest first; %.0f s in all): %s", total,
                    ", ".join(f"{k} {v:.0f}" for k, v in slowest[:8]))  # fmt: skip
        if "node_times" in catalog:
            catalog.save("node_times", {"total_seconds": round(total, 1), "nodes": dict(slowest)})
