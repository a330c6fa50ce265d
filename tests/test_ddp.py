"""DDP training (``r2scp_pipeline.distributed``): 2 CPU processes (gloo, 1 thread each) give
the one-process result within the tolerance of docs/scaling.md, and resume after a kill.

The two ranks are started with ``torch.multiprocessing.spawn`` and the environment torchrun
sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``); they run every case in one start
(process start-up dominates). Dropout is 0 here: with dropout the ranks draw other masks than
one process does, so only the float reduction order differs and parameters can be compared.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from r2scp_pipeline import distributed
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.distributed import DistContext
from r2scp_pipeline.training import (
    TrainingInterrupted,
    load_model,
    model_checkpoint,
    train_stage_one,
    train_stage_two,
)
from tests.conftest import make_project_copy
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "dropout": 0.0, "k_purge": 3,
         "n_retrieve": 2}  # fmt: skip
# 26 training questions per batch: 6 global batches per epoch, the last one short
LOOP = {"epochs": 2, "batch_size": 26, "lr": 3e-3, "patience": 5, "checkpoint_dir": None,
        "threads": 1}  # fmt: skip
#: the tolerance stated in docs/scaling.md ("Distributed training"); the parameter bound is
#: about 1/15 of one AdamW step at this lr (the router's output bias comes closest)
PARAM_ATOL, LOSS_RTOL = 2e-4, 1e-5
WORLD = 2
SRC = Path(__file__).resolve().parents[1] / "src"


def _tensors():
    return build_tensors(**make_synthetic_tables(n_videos=40, seed=3), n_neighbors=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _interrupted_then_resumed(train, loop: dict, ckpt: Path):
    loop = {**loop, "checkpoint_dir": str(ckpt)}
    try:
        train({**loop, "max_epochs_this_run": 1})
        raise AssertionError("max_epochs_this_run did not stop the run")
    except TrainingInterrupted:
        pass
    return train(loop)


def _rank(rank: int, port: int, tmp: str) -> None:
    """One rank: stage I, stage II (from the one-process experts), both killed and resumed."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    ctx = distributed.init()
    assert ctx == DistContext(rank, WORLD)
    try:
        tmp_path = Path(tmp)
        tensors = _tensors()
        experts = torch.load(tmp_path / "single_stage1.pt", weights_only=True)

        def one(loop):
            return train_stage_one(tensors, MODEL, loop, {}, seed=0)

        def two(loop):
            return train_stage_two(experts, tensors, MODEL, loop, {}, seed=0)

        out = {}
        for name, train in (("stage1", one), ("stage2", two)):
            model, summary = train(LOOP)
            res_model, res_summary = _interrupted_then_resumed(train, LOOP, tmp_path / name)
            out[name] = {"state": model.state_dict(), "summary": summary,
                         "resumed_state": res_model.state_dict(),
                         "resumed_summary": res_summary}  # fmt: skip
        torch.save(out, tmp_path / f"rank{rank}.pt")
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process reference and the two ranks' results."""
    tmp = tmp_path_factory.mktemp("ddp")
    tensors = _tensors()
    model1, s1 = train_stage_one(tensors, MODEL, LOOP, {}, seed=0)
    experts = model_checkpoint(model1, {"stage_one": True})
    torch.save(experts, tmp / "single_stage1.pt")
    model2, s2 = train_stage_two(experts, tensors, MODEL, LOOP, {}, seed=0)
    single = {"stage1": {"state": model1.state_dict(), "summary": s1},
              "stage2": {"state": model2.state_dict(), "summary": s2}}  # fmt: skip
    mp.spawn(_rank, args=(_free_port(), str(tmp)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return single, ranks, tmp


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_ddp_two_processes_match_one_process(runs, stage):
    single, ranks, _ = runs
    ref, ddp = single[stage], ranks[0][stage]
    assert ddp["summary"]["best_epoch"] == ref["summary"]["best_epoch"]
    for k, v in ref["state"].items():
        torch.testing.assert_close(ddp["state"][k], v, atol=PARAM_ATOL, rtol=0, msg=k)
    h_ref, h_ddp = ref["summary"]["history"], ddp["summary"]["history"]
    assert list(h_ddp) == list(h_ref)  # the same logs, summed over the ranks
    for k in h_ref:
        np.testing.assert_allclose(h_ddp[k], h_ref[k], rtol=LOSS_RTOL, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_ddp_ranks_hold_identical_models(runs, stage):
    _, ranks, _ = runs
    for k, v in ranks[0][stage]["state"].items():
        assert torch.equal(ranks[1][stage]["state"][k], v), k
    assert ranks[1][stage]["summary"]["history"] == ranks[0][stage]["summary"]["history"]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_ddp_killed_and_resumed_run_ends_like_an_uninterrupted_one(runs, stage):
    _, ranks, tmp = runs
    for r in ranks:
        run = r[stage]
        assert run["resumed_summary"]["resumed_from"] == 1
        assert run["resumed_summary"]["history"] == run["summary"]["history"]
        for k, v in run["state"].items():
            assert torch.equal(run["resumed_state"][k], v), k
    assert sorted(p.name for p in (tmp / stage).iterdir()) == ["last.pt"]


def test_ddp_checkpoint_is_read_by_a_one_process_run(runs):
    """The process count is not part of the configuration hash: a finished DDP run's last.pt is
    returned as is by a plain run of the same configuration."""
    _, ranks, tmp = runs
    loop = {**LOOP, "checkpoint_dir": str(tmp / "stage1")}
    model, summary = train_stage_one(_tensors(), MODEL, loop, {}, seed=0)
    assert summary["resumed_from"] == LOOP["epochs"]
    for k, v in ranks[0]["stage1"]["state"].items():
        assert torch.equal(model.state_dict()[k], v), k


def test_ddp_shards_cover_the_batch_and_weigh_the_mean():
    rows = np.arange(11)
    parts = [DistContext(r, 3).shard(rows) for r in range(3)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), rows)  # contiguous slices
    assert [p[1] for p in parts] == [4, 4, 3]
    assert sum(p[2] for p in parts) == pytest.approx(3)  # DDP divides by the world size
    short = [DistContext(r, 3).shard(np.arange(2)) for r in range(3)]
    assert [(len(p[0]), p[1], p[2]) for p in short] == [(1, 1, 1.5), (1, 1, 1.5), (1, 0, 0.0)]


def test_ddp_every_pipeline_it_runs_has_its_training_nodes():
    import importlib

    names = {
        p: [n.name for n in distributed.training_nodes(
            importlib.import_module(f"r2scp_pipeline.pipelines.{p}").create_pipeline())]
        for p in distributed.PIPELINES
    }  # fmt: skip
    assert names == {"pretrain": ["pretrain_experts"], "mix": ["mix_experts"],
                     "train": ["pretrain_experts", "mix_experts"]}  # fmt: skip


def test_ddp_no_process_group_means_the_one_process_path():
    assert distributed.context() is None
    assert distributed.parse_params("mix.epochs=3,seed=1,pretrain.device=cpu") == {
        "mix": {"epochs": 3}, "seed": 1, "pretrain": {"device": "cpu"}}  # fmt: skip


# ---- the Kedro entry point under torchrun -----------------------------------------------------
def _torchrun(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={WORLD}", "-m", "r2scp_pipeline.distributed", "--env=test", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_ddp_torchrun_runs_the_train_pipeline_and_resumes(tmp_path_factory):
    from tests.pipelines.mix.test_train_run import UPSTREAM

    project = make_project_copy(tmp_path_factory.mktemp("ddp_project"))
    for name, df in make_synthetic_tables(n_videos=30, seed=4).items():
        path = project / UPSTREAM[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path)
    lines = [f"{n}:\n  type: pandas.ParquetDataset\n  filepath: {p}\n" for n, p in UPSTREAM.items()]
    (project / "conf/test/catalog_train_upstream.yml").write_text("\n".join(lines))
    # killed after one stage-I epoch (on both ranks), then the whole train pipeline resumes
    cut = _torchrun(project, "--pipelines=pretrain", "--params", "pretrain.max_epochs_this_run=1")
    assert cut.returncode != 0 and "TrainingInterrupted" in cut.stdout + cut.stderr, (
        cut.stdout[-4000:] + cut.stderr[-4000:])  # what went wrong instead, when it did
    done = _torchrun(project, "--pipelines=train")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = project / "data/test/08_reporting"
    pre = json.loads((reports / "pretrain_history.json").read_text())
    mix = json.loads((reports / "mix_history.json").read_text())
    assert pre["resumed_from"] == 1 and len(pre["history"]["val_score"]) == 2
    assert pre["timing"]["processes"] == mix["timing"]["processes"] == WORLD
    assert len(mix["history"]["val_acc_audio"]) == 2
    assert load_model(torch.load(project / "data/test/06_models/r2scp_model.pt", weights_only=True))
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'data/test/mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["r2scp_pipeline"])
    # rank 0 alone tracks: one run per launch (the cut one failed)
    assert sorted(runs["status"]) == ["FAILED", "FINISHED"]


def test_ddp_benchmark_result_renders(tmp_path):
    """The ``ddp`` block of docs/scaling.md: a placeholder until benchmarks/ddp.py wrote its
    file, then the table (the shape benchmarks/ddp.py writes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_docs", SRC.parent / "scripts/render_docs.py")
    render_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_docs)
    assert "Not measured yet" in render_docs.RENDERERS["ddp"](tmp_path)
    run = {"train_questions": 10, "val_questions": 5, "load_average": [0.1, 0.2],
           "stage_one": {"samples_per_s": 100.0, "best_val_score": 50.0},
           "stage_two": {"samples_per_s": 50.0, "best_val_score": 60.0}}  # fmt: skip
    fast = {**run, "world_size": 2, "stage_one": {"samples_per_s": 170.0, "best_val_score": 50.5},
            "stage_two": {"samples_per_s": 75.0, "best_val_score": 57.0}}  # fmt: skip
    result = {"command": "python benchmarks/ddp.py", "label": "", "videos": 20, "epochs": 1,
              "dropout": None, "train_questions": 10, "val_questions": 5, "accuracy_tolerance": 2.0,
              "target_speedup": 1.6, "machine": {"cpus": 2, "platform": "x", "torch": "2"},
              "runs": [{**run, "world_size": 1}, fast],
              "per_rank_batch": 32,
              "stage_one": {"speedup": 1.7, "speedup_met": True, "accuracy_delta": 0.5,
                            "accuracy_met": True, "bound_without_communication": 1.85},
              "stage_two": {"speedup": 1.5, "speedup_met": False, "accuracy_delta": -3.0,
                            "accuracy_met": False}}  # fmt: skip
    (tmp_path / "docs/results").mkdir(parents=True)
    (tmp_path / "docs/results/ddp.json").write_text(json.dumps(result))
    text = render_docs.RENDERERS["ddp"](tmp_path)
    assert "| stage I (pretrain) | 100.00 | 170.00 | 1.70x (met) | 1.85x | 50.00 | 50.50 | +0.50 (within) |" in text
    assert "| not measured |" in text  # stage two's bound (files written before it was measured)
    assert "1.50x (**missed**)" in text and "-3.00 (**outside**)" in text
