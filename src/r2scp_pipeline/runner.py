"""``DaskRunner``: a Kedro runner that runs each node as a task on a ``dask.distributed`` cluster.

Kedro's deployment guide ("Dask") describes this route: a custom ``AbstractRunner`` submits one
task per node, and Dask starts a node once the tasks of the nodes it depends on have finished.
This one follows that design for Kedro 1.7:

- **Where it runs.** ``kedro run --runner=r2scp_pipeline.runner.DaskRunner`` connects to the
  scheduler at ``--runner-params=address=tcp://HOST:8786`` (or ``$DASK_SCHEDULER_ADDRESS``);
  without one it starts a ``LocalCluster`` of ``n_workers`` processes with
  ``threads_per_worker`` threads each (defaults 2 and 1). Workers import this project, so start
  them from the project root with the project on their ``PYTHONPATH`` (docs/scaling.md).
- **Data between nodes.** Catalog entries (parquet, ...) are loaded and saved by the worker
  running the node, so remote workers need the same paths (a shared file system or object
  store). Datasets that live only in memory (``MemoryDataset``: unregistered node outputs such
  as ``audio_shard_0``) stay on the worker that made them: the worker scatters the value to
  itself and publishes the future under the dataset's name; a consumer fetches it from there.
  Parameters travel with the task. A ``CachedDataset`` (``audio_features``, ...) travels as
  the dataset it wraps (:func:`_for_worker`), so each node reads the file itself.
- **Whole runs.** The chain of every pipeline runs here with the numbers of a sequential run
  (docs/scaling.md, "The whole chain on worker processes"); workers are not daemonic, so a node
  may start processes of its own (:data:`WORKER_CONFIG`). Node hooks' ``after_node_run`` does
  not run in the ``kedro run`` process, so ``node_times`` stays empty.
- **Workers' memory allocator.** Dask's nanny starts every worker with
  ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``) so that freed
  memory goes back to the operating system. Setting it also turns off glibc's adaptive mmap
  threshold: every allocation over 128 KiB, i.e. almost every activation tensor, becomes a
  fresh ``mmap`` whose pages fault in on first touch, and the encoders ran more than twice as
  slowly in a worker as in a plain process (docs/scaling.md). Clusters started here leave the variable
  unset (:data:`WORKER_CONFIG`); ``deploy/dask/distributed.yaml`` does the same for
  ``dask worker`` on a cluster.
- **Hooks.** Pipeline hooks (``before_pipeline_run``: the parameter checks, kedro-mlflow's run)
  run in the ``kedro run`` process as usual. Node hooks run there too, before the node is
  submitted, with the node's parameter inputs only (what kedro-mlflow logs); the worker runs the
  node itself without hooks. An MLflow run active in the ``kedro run`` process is re-opened on
  the worker (same tracking URI and run id), so MLflow datasets log into the run of the
  ``kedro run``.
"""

from __future__ import annotations

import logging
from collections import Counter
from itertools import chain
from typing import Any

from kedro.framework.hooks.manager import _NullPluginManager
from kedro.io import AbstractDataset, CachedDataset, DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

logger = logging.getLogger(__name__)

#: Dask configuration for the workers this project starts: no ``MALLOC_TRIM_THRESHOLD_`` (a
#: ``None`` value removes a variable from the nanny's pre-spawn environment; module docstring),
#: and non-daemonic worker processes: a daemonic process may not start children, and the
#: embedded generator's ``num_workers`` processes are children of the worker running it.
WORKER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.daemon": False,
}


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, **kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` of worker processes started with :data:`WORKER_CONFIG`
    (the dashboard off unless ``dashboard_address`` is given)."""
    import dask
    from distributed import LocalCluster

    kwargs.setdefault("dashboard_address", None)
    with dask.config.set(WORKER_CONFIG):  # the nannies read it when they are created
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, **kwargs
        )


class _DaskDataset(AbstractDataset):
    """A node output kept in the cluster's memory: published on the scheduler under the
    dataset's name as a future, held by the worker that computed it."""

    def __init__(self, name: str) -> None:
        self._name = name

    @staticmethod
    def _client():
        from distributed import get_client

        return get_client()  # the worker's client inside a task, else the current client

    def _load(self) -> Any:
        value = self._client().get_dataset(self._name)
        return value.result() if hasattr(value, "result") else value

    def _save(self, data: Any) -> None:
        from distributed import get_worker

        client = self._client()
        try:  # on a worker: keep the value there; the published future keeps it alive
            here = [get_worker().address]
        except ValueError:  # in the kedro run process
            here = None
        # in a list: scatter would send a dict's (or a list's) items as futures of their own
        [future] = client.scatter([data], workers=here, direct=here is not None, hash=False)
        client.publish_dataset(future, name=self._name, override=True)

    def _exists(self) -> bool:
        return self._name in self._client().list_datasets()

    def _release(self) -> None:
        client = self._client()
        if self._name in client.list_datasets():
            client.unpublish_dataset(self._name)

    def _describe(self) -> dict[str, Any]:
        return {"name": self._name}


def _for_worker(dataset: AbstractDataset) -> AbstractDataset:
    """What a worker gets for ``dataset``: a ``CachedDataset`` is sent as the dataset it wraps.

    The cache cannot travel: an empty ``MemoryDataset`` marks "no data" with a sentinel object
    whose identity a pickled copy loses, so the worker's copy would "load" that bare sentinel
    (``object of type 'object' has no len()`` in the node reading it). The worker reads the
    wrapped dataset (the parquet file) instead; each node reads it once.
    """
    return dataset._dataset if isinstance(dataset, CachedDataset) else dataset


def _run_task(
    node: Node,
    catalog: DataCatalog,
    is_async: bool,
    run_id: str | None,
    mlflow_run: tuple[str, str] | None,
    *dependencies: Any,
) -> Node:
    """Run ``node`` on a worker (``dependencies``: upstream tasks, only waited for)."""
    task = Task(
        node=node,
        catalog=catalog,
        is_async=is_async,
        hook_manager=_NullPluginManager(),
        run_id=run_id,
    )
    if mlflow_run is None:
        return task.execute()
    import mlflow

    tracking_uri, mlflow_run_id = mlflow_run
    mlflow.set_tracking_uri(tracking_uri)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == mlflow_run_id:
        return task.execute()
    with mlflow.start_run(run_id=mlflow_run_id):
        node = task.execute()
    # leaving the block marked the run FINISHED; the kedro run's process ends it (or marks it
    # FAILED) when the whole pipeline is done
    mlflow.MlflowClient().update_run(mlflow_run_id, status="RUNNING")
    return node


class DaskRunner(AbstractRunner):
    """Runs a pipeline's nodes as tasks on a ``dask.distributed`` cluster (module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        client: Any = None,
        is_async: bool = False,
    ) -> None:
        """``client``: an open ``distributed.Client`` to use (tests, notebooks); otherwise one
        is opened on the first run: to ``address`` (or ``$DASK_SCHEDULER_ADDRESS``), else to a
        new :func:`local_cluster` ``(n_workers, threads_per_worker)`` closed with the runner."""
        super().__init__(is_async=is_async)
        self._address = address
        self._n_workers = int(n_workers)
        self._threads = int(threads_per_worker)
        self._client = client
        self._owned: list[Any] = []  # client / cluster this runner opened and must close

    def _get_executor(self, max_workers: int) -> None:
        return None  # Dask schedules; AbstractRunner's executor loop is not used

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        import dask
        from distributed import Client

        address = self._address or dask.config.get("scheduler-address", None)
        if address:
            self._client = Client(address)
        else:
            cluster = local_cluster(self._n_workers, self._threads)
            self._owned.append(cluster)
            self._client = Client(cluster)
        self._owned.insert(0, self._client)
        logger.info("DaskRunner: %s", self._client)
        return self._client

    def close(self) -> None:
        """Close the client and cluster this runner opened (not one passed in)."""
        if self._owned:
            for thing in self._owned:
                thing.close()
            self._owned.clear()
            self._client = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutting down
            pass

    @staticmethod
    def _mlflow_run() -> tuple[str, str] | None:
        try:
            import mlflow
        except ImportError:  # pragma: no cover - mlflow is a dependency
            return None
        run = mlflow.active_run()
        return None if run is None else (mlflow.get_tracking_uri(), run.info.run_id)

    def _run(
        self,
        pipeline: Pipeline,
        catalog: Any,
        hook_manager: Any = None,
        run_id: str | None = None,
    ) -> None:
        from distributed import as_completed

        client = self._connect()
        hook_manager = hook_manager or _NullPluginManager()
        # node outputs kept in memory live on the cluster instead of this process
        produced = set(chain.from_iterable(n.outputs for n in pipeline.nodes))
        catalog_log = logging.getLogger("kedro.io.data_catalog")
        level = catalog_log.level
        catalog_log.setLevel(logging.ERROR)  # not one "Replacing dataset" warning per output
        try:
            for name in sorted(produced):
                if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset):
                    catalog[name] = _DaskDataset(name)
        finally:
            catalog_log.setLevel(level)

        mlflow_run = self._mlflow_run()
        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        futures: dict[Node, Any] = {}
        for node in pipeline.nodes:  # topological order: upstream futures exist already
            names = node.inputs + node.outputs
            node_catalog = DataCatalog(
                datasets={
                    n: _for_worker(catalog.get(n, fallback_to_runtime_pattern=True)) for n in names
                }
            )
            params = {
                n: catalog.load(n)
                for n in node.inputs
                if n.startswith("params:") or n == "parameters"
            }
            hook_manager.hook.before_node_run(
                node=node, catalog=catalog, inputs=params, is_async=self._is_async, run_id=run_id
            )
            upstream = [futures[d] for d in pipeline.node_dependencies[node]]
            futures[node] = client.submit(
                _run_task,
                node,
                node_catalog,
                self._is_async,
                run_id,
                mlflow_run,
                *upstream,
                key=f"kedro-node-{node.name}-{run_id or ''}-{id(futures)}",
                pure=False,
            )

        done = 0
        try:
            for future in as_completed(list(futures.values())):
                node = future.result()  # re-raises a node's exception here
                done += 1
                self._logger.info("Completed node: %s", node.name)
                self._logger.info("Completed %d out of %d tasks", done, len(futures))
                for name in node.inputs:
                    load_counts[name] -= 1
                    if load_counts[name] < 1 and name not in pipeline.inputs():
                        catalog.release(name)
                for name in node.outputs:
                    if load_counts[name] < 1 and name not in pipeline.outputs():
                        catalog.release(name)
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
