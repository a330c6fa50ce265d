"""Data-parallel training (stage I and stage II) with PyTorch DistributedDataParallel.

    torchrun --nproc-per-node=2 -m r2scp_pipeline.distributed --pipelines=train
    torchrun --nproc-per-node=2 -m r2scp_pipeline.distributed --pipelines=mix --env=test \\
        --params="mix.epochs=3,seed=1"

Each process (rank) holds a whole copy of the model. Every epoch all ranks draw the same batch
order (the epoch seed); each takes one contiguous slice of every global batch of
``batch_size`` rows (:meth:`DistContext.shard`), so the effective batch size, the number of
optimizer steps and the learning-rate schedule are those of a one-process run. DDP averages
the gradients; each rank's loss is weighted by its share of the batch, so the averaged gradient
is the gradient of the global batch's mean loss (exactly, up to the order of float sums, for
mean losses: see ``docs/scaling.md`` for the tolerance). Rank 0 alone evaluates on val (the
scores are broadcast, so every rank takes the same early-stopping decision), writes the
per-epoch checkpoint (``last.pt``, the others wait at a barrier) and runs everything else of
the Kedro pipeline: catalog saves, MLflow, plots. Resume is as in one process: every rank reads
``last.pt`` (so ``checkpoint_dir`` must be a folder all ranks see), and a checkpoint written
with N processes resumes with M.

Backends: gloo on CPU; on a CUDA machine ``cpu:gloo,cuda:nccl`` and each rank uses the GPU
``LOCAL_RANK`` (``device: auto`` or ``cuda``).

The Kedro side (:func:`main`): rank 0 runs the named pipeline with a normal ``KedroSession``;
every other rank loads the same inputs from the catalog and runs only the training nodes
(:data:`TRAINING_NODES`), discarding their outputs. ``pretrain``, ``mix`` and ``train`` can run
this way; their upstream pipelines run first with a plain ``kedro run``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

logger = logging.getLogger(__name__)

#: node names (without namespace) that train with ``training.fit``: every rank runs them
TRAINING_NODES = ("pretrain_experts", "mix_experts")
#: pipelines whose every input exists before the run (their upstream ran with ``kedro run``)
PIPELINES = ("pretrain", "mix", "train")


# ---- process group ---------------------------------------------------------------------------
def init() -> DistContext | None:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); ``None`` outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    if not tdist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            backend = "cpu:gloo,cuda:nccl"
        else:
            backend = "gloo"
        tdist.init_process_group(backend=backend)
    return context()


def teardown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def context() -> DistContext | None:
    """The running process group as a :class:`DistContext`; ``None`` when there is none or it
    has one process (then training takes the plain one-process path)."""
    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() < 2:
        return None
    return DistContext(tdist.get_rank(), tdist.get_world_size())


# ---- what training.fit calls -------------------------------------------------------------------
class _Step(torch.nn.Module):
    """``step(rows, state)`` as a module whose parameters are exactly the trained ones, so that
    DistributedDataParallel sees the forward (it must, to reduce the gradients) and ignores the
    model's other parameters (stage I trains only the experts)."""

    def __init__(self, params: list[torch.nn.Parameter], step: Callable) -> None:
        super().__init__()
        self.trained = torch.nn.ParameterList(params)
        self.step = step

    def forward(self, rows: np.ndarray, state: Any):
        return self.step(rows, state)


@dataclass(frozen=True)
class DistContext:
    """One rank of a data-parallel run, as ``training.fit`` sees it."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, params: list[torch.nn.Parameter], step: Callable) -> Callable:
        """``step`` behind DistributedDataParallel: ``backward()`` on its loss averages the
        gradients of ``params`` over the ranks. Rank 0's values of ``params`` are broadcast
        once here (they are equal already when every rank seeded alike and read one
        checkpoint). Parameters a batch leaves unused (ablations, a batch without dropped
        samples) are allowed."""
        device = params[0].device
        return torch.nn.parallel.DistributedDataParallel(
            _Step(params, step),
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, int, float]:
        """This rank's contiguous slice of a global batch (a video's questions stay together),
        the number of real rows in it and the weight of its loss: ``world_size * n_rank / n``,
        so that DDP's gradient average is the gradient of the batch mean. A rank left without
        rows (a last batch smaller than the world) runs one row with weight 0."""
        mine = np.array_split(rows, self.world_size)[self.rank]
        if len(mine) == 0:
            return rows[:1], 0, 0.0
        return mine, len(mine), self.world_size * len(mine) / len(rows)

    def sum_logs(self, sums: dict[str, float]) -> dict[str, float]:
        """Per-key sums over the ranks (a key a rank never logged counts 0 there); the same
        dict, in the same key order, on every rank."""
        gathered: list[dict[str, float] | None] = [None] * self.world_size
        tdist.all_gather_object(gathered, sums)
        out: dict[str, float] = {}
        for part in gathered:
            for k, v in (part or {}).items():
                out[k] = out.get(k, 0.0) + v
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        tdist.barrier()


# ---- the Kedro entry point -------------------------------------------------------------------
def parse_params(text: str | None) -> dict[str, Any]:
    """``"a.b=1,c=x"`` -> ``{"a": {"b": 1}, "c": "x"}``, typed as ``kedro run --params``."""
    from omegaconf import OmegaConf

    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    bad = [s for s in items if "=" not in s or not s.split("=", 1)[0].strip()]
    if bad:
        raise SystemExit(f"--params: {bad[0]!r} is not key=value")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items))


def training_nodes(pipeline) -> list:
    """The nodes of ``pipeline`` every rank runs, in topological order (none would leave rank 0
    waiting for the others at its first collective: an error)."""
    nodes = [n for n in pipeline.nodes if n.name.rsplit(".", 1)[-1] in TRAINING_NODES]
    if not nodes:
        raise RuntimeError(f"no training node ({', '.join(TRAINING_NODES)}) in the pipeline")
    return nodes


def run_pipeline(pipeline: str, env: str | None, params: dict[str, Any],
                 project_path: Path) -> None:  # fmt: skip
    """Rank 0: ``kedro run --pipeline=<pipeline>``; other ranks: the pipeline's training nodes
    on the same inputs. Rank 0 creates its context first (kedro-mlflow sets up the store)."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    if pipeline not in PIPELINES:
        raise SystemExit(f"--pipelines must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
    bootstrap_project(project_path)
    rank = tdist.get_rank() if tdist.is_initialized() else 0
    if rank > 0:
        for name in ("kedro", "r2scp_pipeline", "kedro_mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
    kwargs = {"project_path": project_path, "env": env, "runtime_params": params}
    if rank == 0:
        with KedroSession.create(**kwargs) as session:
            session.load_context()
            if tdist.is_initialized():
                tdist.barrier()
            session.run(pipeline_names=[pipeline])
        return
    tdist.barrier()
    with KedroSession.create(**kwargs) as session:
        catalog = session.load_context().catalog
        nodes = training_nodes(pipelines[pipeline])
        produced: dict[str, Any] = {}
        for node in nodes:  # topological order: stage I's experts feed stage II in `train`
            inputs = {i: produced[i] if i in produced else catalog.load(i) for i in node.inputs}
            produced.update(node.run(inputs))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node=N -m r2scp_pipeline.distributed",
        description="Run the pretrain, mix or train pipeline with data-parallel training "
        "(one process per rank; see docs/scaling.md).",
    )
    ap.add_argument("--pipelines", "--pipeline", dest="pipeline", required=True, choices=PIPELINES,
                    help="one of them (train = pretrain + mix)")  # fmt: skip
    ap.add_argument("--env", "-e", default=None, help="Kedro configuration environment")
    ap.add_argument("--params", default=None, help='as kedro run: "mix.epochs=3,seed=1"')
    ap.add_argument("--project-path", type=Path, default=Path.cwd())
    args = ap.parse_args(argv)
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    init()
    try:
        run_pipeline(args.pipeline, args.env, parse_params(args.params), args.project_path)
    finally:
        teardown()


if __name__ == "__main__":
    main()
