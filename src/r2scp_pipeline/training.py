"""Training (stage I: eq. 10; stage II: eqs. 11-15) and inference for R2ScP, plain PyTorch.

* :func:`train_stage_one` / :func:`train_stage_two`: the two stages of section 3.4, each a
  :func:`fit` loop (AdamW, warm-up + cosine schedule, early stopping on val accuracy, a
  checkpoint per epoch, resume after a kill with identical results).
* :func:`predict`: the one inference entry point the evaluation uses (fills, router masking,
  inference-time n / k), see ``docs/model.md``.
* :func:`model_checkpoint` / :func:`load_model`: ``TorchCheckpointDataset`` payloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__, avqa
from .audio_pretraining import set_fingerprint, train_audio_encoder
from .data import AVQATensors, exclude_missing_from_bank, train_missing_masks
from .datasets.torch_checkpoint_dataset import atomic_torch_save
from .distributed import DistContext
from .distributed import context as dist_context
from .grounding import ATTRIBUTES
from .model import Encodings, R2ScP, R2ScPConfig, sentence_vector
from .recovery import Recovery, Retrieval, Source
from .recovery import build as build_recovery
from .vocabulary import EXPERTS, MISSING_CODES, MODALITIES, OTHER, Missing

logger = logging.getLogger(__name__)

#: parameters that change how a run executes but not its numbers (left out of the config hash)
RUNTIME_KEYS = (
    "device",
    "checkpoint_dir",
    "resume",
    "max_epochs_this_run",
    "eval_batch_size",
    "threads",
    "progress_desc",
    "expert_processes",
)
STAGE_IDS = {"pretrain": 1, "mix": 2}


class TrainingInterrupted(RuntimeError):
    """Raised after ``max_epochs_this_run`` epochs: simulates a kill; the next run resumes."""


# ---- small utilities -------------------------------------------------------------------------
def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise ``torch.device(name)``."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and the global numpy RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def epoch_seed(seed: int, stage: str, epoch: int) -> int:
    """Seed of one epoch: data order, dropped modalities and dropout all derive from it, so an
    epoch replays identically after a resume."""
    return int(np.random.SeedSequence([seed, STAGE_IDS[stage], epoch]).generate_state(1)[0])


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch CPU threads, restoring the previous setting afterwards.

    Warns when several threads start on a machine that is already busy (1-minute load average
    above the thread count): torch's threads then wait for each other at every operation and
    run far slower than one (docs/model.md, "Threads").
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    warn_if_busy(torch.get_num_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warn_if_busy(threads: int, load: float | None = None) -> bool:
    """Log a warning (and return True) when ``threads`` > 1 start while the 1-minute load
    average (``load``, default the machine's) exceeds ``threads + 0.5``: runnable work beyond
    what this run's own threads account for."""
    if threads <= 1:
        return False
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform
            return False
    if load <= threads + 0.5:
        return False
    logger.warning(
        "%d torch threads on a busy machine (1-minute load average %.1f): the threads wait for "
        "each other and may run several times slower than one; on a shared machine run with "
        "--params=pretrain.threads=1,mix.threads=1,evaluate.threads=1 (docs/model.md, Threads)",
        threads, load,
    )  # fmt: skip
    return True


#: bump when a change to the model or the loops makes old checkpoints unsafe to resume
CHECKPOINT_FORMAT = 1


def config_hash(obj: Any) -> str:
    """Hash of a JSON-able configuration, the package version and the checkpoint format."""
    payload = {"config": obj, "version": __version__, "format": CHECKPOINT_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise FloatingPointError(f"{what} is {x}; lower the learning rate or check the features")
    return float(x)


# ---- the loop ----------------------------------------------------------------------------------
@dataclass
class LoopConfig:
    """Optimisation parameters shared by both stages (``pretrain:`` / ``mix:`` blocks)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.05
    grad_clip: float = 1.0
    patience: int = 5
    min_delta: float = 0.0
    eval_batch_size: int = 256
    device: str = "auto"
    checkpoint_dir: str | None = None
    resume: bool = True
    max_epochs_this_run: int | None = None
    # training questions drawn (without replacement, anew each epoch) per epoch; None = all.
    # With many questions per video this keeps an epoch's cost while every epoch sees others.
    samples_per_epoch: int | None = None
    threads: int | None = 1  # torch CPU threads while training (None = leave torch's setting)
    progress_desc: str | None = None  # what the progress bar says is training (default: stage)

    @classmethod
    def from_params(cls, params: dict, block: str) -> LoopConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in params.items() if k in known})
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(cfg, name)) < 1:
                raise ValueError(f"{block}.{name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.lr <= 0:
            raise ValueError(f"{block}.lr must be > 0, got {cfg.lr}")
        if cfg.samples_per_epoch is not None and int(cfg.samples_per_epoch) < 1:
            raise ValueError(
                f"{block}.samples_per_epoch must be >= 1 or null, got {cfg.samples_per_epoch}"
            )
        return cfg

    def hashed(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_KEYS}


def _schedule(loop: LoopConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, loop.epochs * steps_per_epoch)
    warm = int(loop.warmup_frac * total)

    def factor(step: int) -> float:  # linear warm-up, then cosine down to min_lr_frac
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return loop.min_lr_frac + (1 - loop.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epochs: dict[str, int]  # per weight group, 0-based; -1 when nothing was trained
    best_scores: dict[str, float]
    epochs_run: int
    stopped_early: bool
    resumed_from: int  # epochs already done when this run started
    timing: dict[str, float] = dataclasses.field(default_factory=dict)  # this run only


def draw_rows(rows: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``rows`` drawn without replacement, kept in their given order; ``rows`` itself
    (and no draw from ``rng``) when ``n`` is None or not below ``len(rows)``."""
    if not n or n >= len(rows):
        return rows
    return np.sort(rows[rng.choice(len(rows), n, replace=False)])


Draw = Callable[[np.ndarray, "int | None", np.random.Generator], np.ndarray]


def _video_rank(tensors: AVQATensors, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's video's place [len(rows)] in a random order of all videos (one draw from
    ``rng``): sorting rows by it keeps a video's rows together, videos shuffled."""
    return rng.permutation(len(tensors.video_ids))[tensors.video[rows].numpy()]


def draw_videos(tensors: AVQATensors) -> Draw:
    """A draw of ``n`` rows that takes whole videos: the videos in a random order, each with all
    of its rows, until ``n`` rows are taken (the last video may be cut), sorted. An epoch then
    sees fewer videos with more of each one's questions, so a batch by video (``permute``)
    encodes fewer videos per question. ``rows`` itself (and no draw) when ``n`` is None or
    not below ``len(rows)``, as :func:`draw_rows`."""

    def draw(rows: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
        if not n or n >= len(rows):
            return rows
        return np.sort(rows[np.lexsort((rows, _video_rank(tensors, rows, rng)))][:n])

    return draw


def _clip_sets(model: R2ScP, params: list[torch.nn.Parameter],
               groups: dict[str, tuple[str, ...]]) -> list[list[torch.nn.Parameter]]:  # fmt: skip
    """``params`` split by ``groups`` (name -> key prefixes), the rest in one more set: each
    set's gradient norm is clipped on its own, so one group's gradients never scale another's
    step (stage I's experts learn alone, eq. 10)."""
    if set(groups) == {"all"}:  # one group: the whole list, in its own order
        return [params]
    wanted = {id(p) for p in params}
    sets: dict[str, list[torch.nn.Parameter]] = {g: [] for g in groups}
    rest: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if id(p) not in wanted:
            continue
        group = next((g for g, prefixes in groups.items() if name.startswith(prefixes)), None)
        (rest if group is None else sets[group]).append(p)
    return [s for s in (*sets.values(), rest) if s]


def fit(
    *,
    stage: str,
    model: R2ScP,
    params: list[torch.nn.Parameter],
    train_rows: np.ndarray,
    loop: LoopConfig,
    seed: int,
    run_hash: str,
    device: torch.device,
    epoch_setup: Callable[[int, np.random.Generator], Any],
    step: Callable[[np.ndarray, Any], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]],
    train_mode: Callable[[], None],
    groups: dict[str, tuple[str, ...]] | None = None,
    permute: Callable[[np.random.Generator, np.ndarray], np.ndarray] | None = None,
    draw: Draw = draw_rows,
    dist: DistContext | None = None,
    on_groups_done: Callable[[set[str]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> FitResult:
    """Generic epoch loop with per-epoch checkpoints, resume and early stopping.

    ``step(rows, state)`` returns the loss to minimise and floats to log; ``evaluate()`` returns
    val metrics with a ``score`` (higher is better); the best epoch's weights are loaded into
    ``model`` at the end. With ``groups`` (name -> state_dict key prefixes) each group keeps its
    own best epoch, scored by ``evaluate()["score_<name>"]`` (independent experts select their
    epochs independently), and ``grad_clip`` bounds each group's gradient norm on its own;
    training stops once no group improved for ``patience`` epochs.
    ``on_groups_done(done)`` is told, after each epoch, which groups have not improved for
    ``patience`` epochs: their best weights are what they will end with, so the caller may stop
    computing them (stage I then stops training a finished expert; not under ``dist``).
    ``permute(rng, train_rows)`` replaces the epoch's uniform shuffle (same rows, other order);
    ``draw(train_rows, n, rng)`` picks an epoch's ``loop.samples_per_epoch`` rows (default
    :func:`draw_rows`: questions uniformly; :func:`draw_videos`: whole videos).
    A checkpoint (``<checkpoint_dir>/last.pt``)
    holds model, optimizer, scheduler, torch RNG, history, best state and patience counter,
    tagged with ``run_hash``, and ``extra`` (plain values the caller computed before training,
    read back with :func:`checkpoint_extra`); on restart with the same hash training continues
    where it stopped, and a finished run is returned as is.
    With ``dist`` (one rank of a torchrun job, :mod:`r2scp_pipeline.distributed`) each rank
    steps on its slice of every batch through DistributedDataParallel; rank 0 evaluates and
    writes the checkpoint; the result is the one-process result within ``docs/scaling.md``'s
    tolerance.
    """
    per_epoch = min(len(train_rows), loop.samples_per_epoch or len(train_rows))
    steps_per_epoch = math.ceil(per_epoch / loop.batch_size)
    # fused: one kernel per step instead of a loop over the tensors (about 3x faster on CPU)
    optimizer = torch.optim.AdamW(params, lr=loop.lr, weight_decay=loop.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(loop, steps_per_epoch))
    ckpt_path = Path(loop.checkpoint_dir) / "last.pt" if loop.checkpoint_dir else None
    groups = groups or {"all": ("",)}
    score_key = {g: "score" if g == "all" else f"score_{g}" for g in groups}
    state = {"epoch": 0, "history": {}, "bad_epochs": 0, "finished": False,
             "best": {g: {"score": -math.inf, "epoch": -1, "state": None} for g in groups},
             "group_bad": {g: 0 for g in groups}}  # fmt: skip
    if ckpt_path is not None and loop.resume and ckpt_path.exists():
        try:
            saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # cut short (killed mid-copy, disk full) or not a checkpoint
            raise RuntimeError(
                f"{stage}: cannot read the resume checkpoint {ckpt_path} ({type(exc).__name__}: "
                f"{exc}). Delete it to start this stage afresh, or set {stage}.resume: false "
                f"(e.g. kedro run --params={stage}.resume=false)"
            ) from exc
        if saved.get("run_hash") != run_hash:
            logger.warning("%s: checkpoint %s is from another configuration or data; starting "
                           "afresh (it will be overwritten)", stage, ckpt_path)  # fmt: skip
        else:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
            state = {k: saved[k] for k in state}
            logger.info("%s: resuming after epoch %d from %s", stage, state["epoch"], ckpt_path)
            if on_groups_done is not None:
                on_groups_done({g for g, n in state["group_bad"].items() if n >= loop.patience})
    clip_sets = _clip_sets(model, params, groups)
    resumed_from, run_epochs = state["epoch"], 0
    forward = dist.wrap(params, step) if dist else step
    timing = {
        "train_seconds": 0.0,
        "train_cpu_seconds": 0.0,
        "eval_seconds": 0.0,
        "train_samples": 0,
        "processes": dist.world_size if dist else 1,  # data-parallel ranks (torchrun)
    }
    history: dict[str, list[float]] = state["history"]
    while not state["finished"] and state["epoch"] < loop.epochs:
        epoch = state["epoch"]
        eseed = epoch_seed(seed, stage, epoch)
        torch.manual_seed(eseed + (dist.rank if dist else 0))  # dropout: other masks per rank
        rng = np.random.default_rng(eseed)
        rows = draw(train_rows, per_epoch, rng)  # samples_per_epoch: this epoch's draw
        order = permute(rng, rows) if permute else rows[rng.permutation(len(rows))]
        setup = epoch_setup(epoch, rng)
        train_mode()
        sums: dict[str, float] = {}
        tick, cpu_tick = time.perf_counter(), time.process_time()
        bar = tqdm(range(steps_per_epoch), desc=f"{loop.progress_desc or stage} epoch {epoch + 1}/{loop.epochs}",
                   leave=False, mininterval=1.0, disable=bool(dist and not dist.is_main))  # fmt: skip
        for i in bar:
            rows = order[i * loop.batch_size : (i + 1) * loop.batch_size]
            n, weight = len(rows), 1.0
            if dist:  # this rank's slice; weight makes DDP's mean the whole batch's gradient
                rows, n, weight = dist.shard(rows)
            loss, logs = forward(rows, setup)
            optimizer.zero_grad(set_to_none=True)
            (loss * weight if dist else loss).backward()
            if loop.grad_clip:
                for clip_set in clip_sets:
                    torch.nn.utils.clip_grad_norm_(clip_set, loop.grad_clip)
            optimizer.step()
            scheduler.step()
            logs = {"loss": _finite(loss.item(), f"{stage} loss at epoch {epoch + 1}"), **logs}
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v * n
            bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)
        bar.close()
        if dist:
            sums = dist.sum_logs(sums)
        tock, cpu_tock = time.perf_counter(), time.process_time()
        record = {f"train_{k}": v / per_epoch for k, v in sums.items()}
        record["lr"] = scheduler.get_last_lr()[0]
        model.eval()
        with torch.no_grad():
            val = evaluate() if not dist or dist.is_main else None
        if dist:  # one early-stopping decision for all ranks
            val = dist.broadcast(val)
        timing["train_seconds"] += tock - tick
        timing["train_cpu_seconds"] += cpu_tock - cpu_tick
        timing["eval_seconds"] += time.perf_counter() - tock
        timing["train_samples"] += per_epoch
        record.update({f"val_{k}": v for k, v in val.items() if not k.startswith("score_")})
        for k, v in record.items():
            history.setdefault(k, []).append(float(v))
        improved = False
        for g, prefixes in groups.items():
            best = state["best"][g]
            score = float(val[score_key[g]])
            if score > best["score"] + loop.min_delta:
                improved = True
                state["group_bad"][g] = 0
                best.update(score=score, epoch=epoch, state={
                    k: v.detach().clone().cpu() for k, v in model.state_dict().items() if k.startswith(prefixes)})  # fmt: skip
            else:
                state["group_bad"][g] += 1
        if on_groups_done is not None:
            on_groups_done({g for g, n in state["group_bad"].items() if n >= loop.patience})
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        state["epoch"] = epoch + 1
        if state["bad_epochs"] >= loop.patience or state["epoch"] >= loop.epochs:
            state["finished"] = True
        logger.info("%s epoch %d/%d: train loss %.4f, val score %.4f (best: %s)%s", stage, epoch + 1,
                    loop.epochs, record["train_loss"], val["score"],
                    ", ".join(f"{g} {b['score']:.4f} @ {b['epoch'] + 1}" for g, b in state["best"].items()),
                    ", early stop" if state["bad_epochs"] >= loop.patience else "")  # fmt: skip
        if ckpt_path is not None and (not dist or dist.is_main):
            atomic_torch_save(
                {"run_hash": run_hash, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                 "extra": extra or {}, **state},
                ckpt_path,
            )  # fmt: skip
        if dist:  # nobody reads or stops before last.pt is complete
            dist.barrier()
        run_epochs += 1
        if (not state["finished"] and loop.max_epochs_this_run is not None
                and run_epochs >= loop.max_epochs_this_run):  # fmt: skip
            raise TrainingInterrupted(
                f"{stage}: stopped after {run_epochs} epoch(s) (max_epochs_this_run); run again "
                f"to resume from {ckpt_path}"
            )
    for best in state["best"].values():
        if best["state"] is not None:
            model.load_state_dict(best["state"], strict=False)
    return FitResult(
        history=history, best_epochs={g: b["epoch"] for g, b in state["best"].items()},
        best_scores={g: b["score"] for g, b in state["best"].items()},
        epochs_run=state["epoch"], stopped_early=state["epoch"] < loop.epochs,
        resumed_from=resumed_from, timing=timing,
    )  # fmt: skip


def checkpoint_extra(loop: LoopConfig, run_hash: str) -> dict[str, Any] | None:
    """The ``extra`` that :func:`fit` saved in ``<checkpoint_dir>/last.pt`` when ``fit`` will
    resume from it (resume on, same ``run_hash``); None otherwise (also for an unreadable file:
    ``fit`` reports that one)."""
    path = Path(loop.checkpoint_dir) / "last.pt" if loop.checkpoint_dir else None
    if path is None or not loop.resume or not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return saved.get("extra", {}) if saved.get("run_hash") == run_hash else None


# ---- batches ---------------------------------------------------------------------------------
def shuffle_by_video(tensors: AVQATensors) -> Callable[[np.random.Generator, np.ndarray], np.ndarray]:
    """An epoch order that shuffles videos, then each video's questions, and keeps a video's
    questions together: a batch then holds a few whole videos, each encoded once (stage I)."""

    def permute(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        rank = _video_rank(tensors, rows, rng)
        return rows[np.lexsort((rng.random(len(rows)), rank))]

    return permute


def _distinct_videos(tensors: AVQATensors, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct video rows of ``rows`` (sorted) [V'] and each row's index into them [B]."""
    return torch.unique(tensors.video[rows], return_inverse=True)


def _video_batch(tensors: AVQATensors, rows: np.ndarray, device: torch.device):
    """Audio and visual features of the distinct videos of ``rows`` and each row's video:
    ``(audio [V', T, S_a, Da], visual [V', T, S_v, Dv], video_of [B])``."""
    uniq, video_of = _distinct_videos(tensors, rows)
    return tensors.audio[uniq].to(device), tensors.visual[uniq].to(device), video_of.to(device)



def _choice_sent(tensors: AVQATensors, rows: np.ndarray, device: torch.device):
    """Raw sentence vectors of the candidate answers of ``rows`` [B, C, Dt] (the stage-I heads'
    view of them); None for open-ended data."""
    if tensors.choices is None:
        return None
    ids = tensors.choices[rows]  # [B, C]
    flat = ids.reshape(-1)
    x = sentence_vector(tensors.choice_tokens[flat], tensors.choice_mask[flat])
    return x.view(*ids.shape, -1).to(device)


def _question_batch(tensors: AVQATensors, rows: np.ndarray, device: torch.device):
    """Raw tokens of the distinct question texts of ``rows``, trimmed to the longest:
    ``(tokens [Q', Lq, Dt], mask [Q', Lq], question_of [B])``, ``question_of`` giving each
    row's text (a batch of a few videos' questions asks many texts more than once)."""
    texts, question_of = torch.unique(tensors.text[rows], return_inverse=True)
    mask = tensors.question_mask[texts]
    width = int(mask.any(0).nonzero().max()) + 1
    return (tensors.question[texts, :width].to(device), mask[:, :width].to(device),
            question_of.to(device))  # fmt: skip


def _expert_batch(tensors: AVQATensors, rows: np.ndarray, device: torch.device
                  ) -> tuple[tuple[torch.Tensor | None, ...], dict[str, torch.Tensor]]:  # fmt: skip
    """``model.expert_logits``' inputs for question ``rows``, each distinct video and question
    text of the batch once: ``((audio, visual, question, q_mask, video_of, choice_sent),
    {"question_of": ...})``."""
    q, qm, question_of = _question_batch(tensors, rows, device)
    a, vis, video_of = _video_batch(tensors, rows, device)
    return (a, vis, q, qm, video_of, _choice_sent(tensors, rows, device)), {"question_of": question_of}


def _expert_batch_logits(model: R2ScP, tensors: AVQATensors, rows: np.ndarray,
                         device: torch.device, **kwargs: Any) -> dict[str, torch.Tensor]:
    """``model.expert_logits`` on question ``rows``: each distinct video and question text of
    the batch encoded once (``kwargs``: its ``grounding`` / ``experts``)."""
    args, batch_kwargs = _expert_batch(tensors, rows, device)
    return model.expert_logits(*args, **batch_kwargs, **kwargs)


@dataclass
class ExpertCache:
    """Frozen experts' encodings of every video, bank entry and question (stage II, inference).

    Experts frozen in eval mode give the same encodings every time, so they are computed once.
    """

    h: dict[str, torch.Tensor]  # [V, L_m, d]
    com: dict[str, torch.Tensor]  # H_com for recovering m: E_m(Phi_other(F_other)) [V, L_o, d]
    bank: dict[str, torch.Tensor]  # [Nb, L_m, d]
    fill: dict[tuple[str, str], torch.Tensor]  # (m, zero|mean) -> [L_m, d]
    text: torch.Tensor  # [Nt, Lq, d]
    text_mask: torch.Tensor  # [Nt, Lq]
    q_sent: torch.Tensor  # [Nt, Dt]
    choices: torch.Tensor | None = None  # [Nc, d] candidate answers, model.encode_choices
    choice_sent: torch.Tensor | None = None  # [Nc, Dt] their raw sentence vectors
    # [Q, 3, n_answers] per question row: the frozen stage-I heads' log P_m on the row's own
    # tokens (what expert votes add where no modality is recovered)
    votes: torch.Tensor | None = None


@torch.no_grad()
def build_cache(model: R2ScP, tensors: AVQATensors, device: torch.device | None = None,
                batch_size: int = 512) -> ExpertCache:  # fmt: skip
    """Encode everything the experts see, in eval mode (dropout off)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()

    def chunks(fn, x, *extra):
        return torch.cat([fn(x[i : i + batch_size].to(device), *(e[i : i + batch_size].to(device) for e in extra))
                          for i in range(0, len(x), batch_size)])  # fmt: skip

    h = {m: chunks(lambda x, m=m: model.encode(m, x), tensors.features(m)) for m in MODALITIES}
    com = {
        m: chunks(lambda x, m=m: model.encode_common(m, x), tensors.features(OTHER[m]))
        for m in MODALITIES
    }
    bank = {m: chunks(lambda x, m=m: model.encode(m, x), tensors.bank[m]) for m in tensors.bank}
    fill = {}
    for m in MODALITIES:
        mean = tensors.train_mean(m).to(device)[None]
        fill[(m, "zero")] = model.encode(m, torch.zeros_like(mean))[0]
        fill[(m, "mean")] = model.encode(m, mean)[0]
    text = chunks(lambda x, k: model.encode("text", x, k), tensors.question, tensors.question_mask)
    q_sent = sentence_vector(tensors.question, tensors.question_mask).to(device)
    choices = choice_sent = None
    if tensors.choices is not None:
        choices = chunks(model.encode_choices, tensors.choice_tokens, tensors.choice_mask)
        choice_sent = sentence_vector(tensors.choice_tokens, tensors.choice_mask).to(device)
    # the stage-I heads' answers on every question's own tokens (eq. 10; expert votes)
    video, text_id, text_mask = (x.to(device) for x in (tensors.video, tensors.text,
                                                         tensors.question_mask))  # fmt: skip
    ids = None if tensors.choices is None else tensors.choices.to(device)
    parts = []
    for i in range(0, len(video), batch_size):
        v, t = video[i : i + batch_size], text_id[i : i + batch_size]
        csent = None if ids is None else choice_sent[ids[i : i + batch_size]]
        seqs = {m: h[m][v] for m in MODALITIES} | {"text": text[t]}
        masks = {"audio": None, "visual": None, "text": text_mask[t]}
        parts.append(model.heads_log_probs(seqs, masks, q_sent[t], csent))
    votes = torch.cat(parts)  # [Q, 3, n_answers]
    model.train(was_training)
    return ExpertCache(h, com, bank, fill, text, tensors.question_mask.to(device), q_sent,
                       choices, choice_sent, votes)  # fmt: skip


def cache_key(model: R2ScP) -> str:
    """What :func:`build_cache` reads of ``model``: a hash of the weights of Phi_m, E_m and
    the stage-I heads (their votes). Models that share it (variants trained on the same frozen
    stage I) share one cache."""
    return _state_hash({k: v for k, v in model.state_dict().items()
                        if k.split(".")[0] in ("phi", "experts", "heads")})  # fmt: skip


def batch_encodings(
    model: R2ScP,
    tensors: AVQATensors,
    rows: np.ndarray,
    device: torch.device,
    cache: ExpertCache | None = None,
    recovery: Recovery | None = None,
    polarity: str = "pos",
    n: int | None = None,
    missing: torch.Tensor | None = None,
) -> Encodings:
    """:class:`Encodings` of question ``rows``: from ``cache`` when given (frozen experts), else
    computed with gradients (experts trained in stage II, the ``stage_one: false`` ablation).

    ``cand`` of both modalities: what ``recovery`` (default R2ScP's retrieval, eq. 4) puts in
    the missing slot; ``polarity='neg'`` gives its R- of eq. 14 instead. With ``missing`` [B]
    (the codes ``model.fuse`` will get) a fill is computed only on the rows that read it
    (``model.recovered_rows``); the others hold their own encoding, which ``fuse`` never reads.
    """
    recovery = recovery or Retrieval()
    n = model.cfg.n_retrieve if n is None else n
    v = tensors.video[rows]
    t = tensors.text[rows]
    if cache is not None:
        vd, td = v.to(device), t.to(device)
        mask = cache.text_mask[td]
        width = int(mask.any(0).nonzero().max()) + 1
        h = {m: cache.h[m][vd] for m in MODALITIES}
        com = {m: cache.com[m][vd] for m in MODALITIES}
        h_text, text_mask, q_sent = cache.text[td, :width], mask[:, :width], cache.q_sent[td]
    else:
        h = {m: model.encode(m, tensors.features(m)[v].to(device)) for m in MODALITIES}
        com = {
            m: model.encode_common(m, tensors.features(OTHER[m])[v].to(device)) for m in MODALITIES
        }
        q, text_mask, question_of = _question_batch(tensors, rows, device)
        h_text = model.encode("text", q, text_mask)[question_of]  # [B, Lq, d]
        q_sent, text_mask = sentence_vector(q, text_mask)[question_of], text_mask[question_of]
    src = Source(model, tensors, rows, v, device, cache, n, h)
    need = None if missing is None else model.recovered_rows(missing.to(device))

    def fill(s: Source, m: str) -> torch.Tensor:
        if polarity == "neg":
            neg = recovery.negative(s, m)
            if neg is None:
                raise ValueError(f"recovery {recovery.name!r} has no negative (R-) fill")
            return neg
        return recovery.fill(s, m)

    cand = {}
    for m in MODALITIES:
        if need is None or need[m].all():
            cand[m] = fill(src, m)
        elif not need[m].any():
            cand[m] = h[m]  # placeholder, never read
        else:  # fill only the rows that read it
            idx = need[m].nonzero().squeeze(1)
            cand[m] = h[m].index_copy(0, idx, fill(src.select(idx), m).to(h[m].dtype))
    choices = choice_sent = None
    if tensors.choices is not None:  # multiple choice: the candidates, as the decoder reads them
        ids = tensors.choices[rows]  # [B, C]
        if cache is not None:
            choices = cache.choices[ids.to(device)]  # [B, C, d]
            choice_sent = cache.choice_sent[ids.to(device)]  # [B, C, Dt]
        else:
            flat = ids.reshape(-1)
            x, mk = tensors.choice_tokens[flat].to(device), tensors.choice_mask[flat].to(device)
            choices = model.encode_choices(x, mk).view(*ids.shape, -1)
            choice_sent = sentence_vector(x, mk).view(*ids.shape, -1)
    key = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=device)
    votes = group = None
    if cache is not None:  # frozen experts: com is the same for every row of a video
        group = vd
        if cache.votes is not None:
            votes = cache.votes[key]  # [B, 3, n_answers]
    return Encodings(h, cand, com, h_text, text_mask, q_sent, choices, choice_sent, key, votes,
                     group)  # fmt: skip


def _cat_encodings(a: Encodings, b: Encodings) -> Encodings:
    """Row-wise concatenation (pads the question tokens to the longer batch)."""
    width = max(a.h_text.shape[1], b.h_text.shape[1])

    def pad(x, value=0):
        return F.pad(
            x,
            (0, 0, 0, width - x.shape[1]) if x.dim() == 3 else (0, width - x.shape[1]),
            value=value,
        )

    cat = lambda d1, d2: {m: torch.cat([d1[m], d2[m]]) for m in d1}  # noqa: E731
    opt = lambda x, y: None if x is None or y is None else torch.cat([x, y])  # noqa: E731
    return Encodings(cat(a.h, b.h), cat(a.cand, b.cand), cat(a.com, b.com),
                     torch.cat([pad(a.h_text), pad(b.h_text)]),
                     torch.cat([pad(a.text_mask, False), pad(b.text_mask, False)]),
                     torch.cat([a.q_sent, b.q_sent]), opt(a.choices, b.choices),
                     opt(a.choice_sent, b.choice_sent), opt(a.key, b.key),
                     opt(a.votes, b.votes), opt(a.group, b.group))  # fmt: skip


# ---- inference -------------------------------------------------------------------------------
@dataclass
class Predictions:
    """One row per question of the split, in ``qa_pairs`` order."""

    question_id: np.ndarray  # [Q] int64
    logits: np.ndarray  # [Q, n_answers] float32
    pred: np.ndarray  # [Q] int64 answer_idx
    answer: np.ndarray  # [Q] int64 ground truth answer_idx
    missing: np.ndarray  # [Q] int8: 0 none, 1 audio missing, 2 visual missing
    expert_weights: np.ndarray  # [Q, 3] router alpha over (audio, visual, text)

    @property
    def accuracy(self) -> float:
        return float((self.pred == self.answer).mean()) if len(self.pred) else float("nan")

    def to_frame(self):
        import pandas as pd

        classes = self.logits.shape[1] == len(avqa.ANSWERS)  # else: candidate indices
        return pd.DataFrame({
            "question_id": self.question_id, "pred_idx": self.pred,
            "pred": [avqa.ANSWERS[i] if classes else str(i) for i in self.pred],
            "answer_idx": self.answer,
            "correct": self.pred == self.answer, "missing": self.missing,
            **{f"alpha_{m}": self.expert_weights[:, i] for i, m in enumerate(EXPERTS)},
        })  # fmt: skip


@torch.no_grad()
def predict(
    model: R2ScP,
    tensors: AVQATensors,
    split: str = "test",
    missing: Missing = "none",
    missing_mask: np.ndarray | None = None,
    mask_level: Literal["question", "video"] = "question",
    recovery: Recovery | str | None = None,
    use_cap: bool | None = None,
    n_retrieve: int | None = None,
    k_purge: int | None = None,
    polarity: Literal["pos", "neg"] = "pos",
    cache: ExpertCache | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    rows: np.ndarray | None = None,
) -> Predictions:
    """Answer every question of ``split`` with ``missing`` absent where ``missing_mask`` is True.

    This is the one inference entry point: evaluation, the notebook and ``r2scp-pipeline
    predict`` (``inference.predict_one``) all answer through it.

    missing_mask: bool per question of the split (``tensors.indices(split)`` order) or, with
        ``mask_level='video'``, per video (``tensors.video_ids`` order); ``None`` = every
        sample misses ``missing``.
    recovery: what fills the missing modality (``recovery.py``): an instance, a registered
        name, or ``None`` = R2ScP's retrieval (a zero fill when the model was trained without
        CMR). CAP purifies the fill when the model has ``use_cap`` (``use_cap`` overrides it).
        A recovery with ``mask_expert`` (router masking) gives the missing expert's router
        logit -inf, so alpha renormalises over the others.
    n_retrieve, k_purge: inference-time n and k (the paper's Fig. 4 sweep); default the model's.
    polarity: ``neg`` recovers from the *least* similar neighbours (R-), an analysis baseline.
    cache: :func:`build_cache` output to reuse across calls (it does not depend on the mask).
        Without one, a split is cached first; explicit ``rows`` are encoded on the fly.
    rows: answer these question rows (``qa_pairs`` order) instead of a split.
    The missing modality's own features never reach the output: the recovered sequence
    replaces them and the other modality's appended recovery (queried by them) is masked.
    """
    if missing not in ("none", "audio", "visual"):
        raise ValueError(f"missing must be none, audio or visual, got {missing!r}")
    device = resolve_device(device) if isinstance(device, str | type(None)) else device
    if device != next(model.parameters()).device:
        model.to(device)
    explicit = rows is not None
    rows = np.asarray(rows, np.int64) if explicit else tensors.indices(split)
    code = np.zeros(len(rows), np.int8)
    if missing != "none":
        if missing_mask is None:
            sel = np.ones(len(rows), bool)
        elif mask_level == "video":
            sel = (np.asarray(missing_mask, bool)[tensors.video[rows].numpy()] if explicit
                   else tensors.video_mask_to_questions(missing_mask, split))  # fmt: skip
        else:
            sel = np.asarray(missing_mask, bool)
            if sel.shape != (len(rows),):
                raise ValueError(
                    f"missing_mask has shape {sel.shape}; there are {len(rows)} questions"
                )
        code[sel] = MISSING_CODES[missing]
    recovery = build_recovery(recovery) if isinstance(recovery, str) else recovery or Retrieval()
    if k_purge is not None and k_purge < 0:
        raise ValueError(f"k_purge must be >= 0, got {k_purge}")
    was_training = model.training
    model.eval()
    if cache is None and not explicit:
        cache = build_cache(model, tensors, device)
    logits, alphas = [], []
    try:
        for i in range(0, len(rows), batch_size):
            r = rows[i : i + batch_size]
            miss = torch.as_tensor(code[i : i + batch_size], dtype=torch.long, device=device)
            enc = batch_encodings(model, tensors, r, device, cache, recovery, polarity, n_retrieve,
                                  missing=miss)  # fmt: skip
            out, alpha = model.fuse(enc, miss, _router_mask(recovery, miss), use_cap, k_purge)
            logits.append(out.float().cpu())
            alphas.append(alpha.float().cpu())
    finally:
        model.train(was_training)
    lg = torch.cat(logits).numpy()
    return Predictions(
        question_id=tensors.question_id[rows], logits=lg, pred=lg.argmax(1).astype(np.int64),
        answer=tensors.answer[rows].numpy(), missing=code, expert_weights=torch.cat(alphas).numpy(),
    )  # fmt: skip


@torch.no_grad()
def _expert_logits(
    model: R2ScP, tensors: AVQATensors, split: str, batch_size: int, device
) -> dict[str, torch.Tensor]:
    """Each stage-I head's logits on the questions of ``split``: ``{m: [Q, n_answers]}``."""
    device = resolve_device(device) if isinstance(device, str | type(None)) else device
    was_training = model.training
    model.to(device).eval()
    rows = tensors.indices(split)
    out: dict[str, list[torch.Tensor]] = {m: [] for m in EXPERTS}
    for i in range(0, len(rows), batch_size):  # no grad: the decorator
        r = rows[i : i + batch_size]
        logits = _expert_batch_logits(model, tensors, r, device)
        for m in EXPERTS:
            out[m].append(logits[m].cpu())
    model.train(was_training)
    return {m: torch.cat(v) for m, v in out.items()}


def predict_experts(
    model: R2ScP,
    tensors: AVQATensors,
    split: str = "test",
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """Each stage-I expert answering alone (its eq. 10 head): ``{m: answer_idx [Q]}`` for the
    questions of ``split`` in ``qa_pairs`` order. Shows what each modality alone can answer."""
    logits = _expert_logits(model, tensors, split, batch_size, device)
    return {m: v.argmax(-1).numpy().astype(np.int64) for m, v in logits.items()}


def predict_expert_log_probs(
    model: R2ScP,
    tensors: AVQATensors,
    split: str = "test",
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Each stage-I expert's answer distribution alone: ``{m: log P_m [Q, n_answers]}`` for the
    questions of ``split`` in ``qa_pairs`` order (to combine experts, e.g. by averaging)."""
    logits = _expert_logits(model, tensors, split, batch_size, device)
    return {m: v.log_softmax(-1) for m, v in logits.items()}


# ---- checkpoints -----------------------------------------------------------------------------
def model_checkpoint(model: R2ScP, meta: dict[str, Any]) -> dict[str, Any]:
    """``TorchCheckpointDataset`` payload: config + state_dict + JSON-able metadata."""
    return {
        "config": model.cfg.to_dict(),
        "state_dicts": {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
        "meta": json.loads(json.dumps(meta, default=float)),
    }


def load_model(
    checkpoint: dict[str, Any], device: torch.device | str | None = None, **overrides
) -> R2ScP:
    """Rebuild an :class:`R2ScP` from a checkpoint dict (``stage1_experts`` or ``r2scp_model``).

    ``overrides`` replace config fields that do not change the weights' shapes (e.g.
    ``k_purge``, ``n_retrieve``, ``use_cap``).
    """
    try:
        cfg = R2ScPConfig.from_dict({**checkpoint["config"], **overrides})
        state = checkpoint["state_dicts"]["model"]
    except (KeyError, TypeError) as exc:
        raise ValueError(
            "not an R2ScP checkpoint: expected {'config', 'state_dicts': {'model'}}"
        ) from exc
    model = R2ScP(cfg)
    model.load_state_dict(state)
    device = resolve_device(device) if isinstance(device, str | type(None)) else device
    return model.to(device).eval()


def build_config(model_params: dict, tensors: AVQATensors) -> R2ScPConfig:
    """``params:model`` + the dimensions read from the data."""
    params = dict(model_params or {})
    for key in ("d_audio", "d_visual", "d_text", "n_answers"):
        if key in params:
            raise ValueError(f"model.{key} is read from the data; remove it from the parameters")
    for key in ("s_audio", "s_visual"):
        if key in params:
            raise ValueError(f"model.{key} is read from the data; remove it from the parameters")
    params["answer_format"] = answer_format(params.get("answer_format", "auto"), tensors)
    n_answers = tensors.n_choices if params["answer_format"] == "choices" else len(avqa.ANSWERS)
    cfg = R2ScPConfig.from_dict({**params, **tensors.dims, "n_answers": n_answers})
    longest = int(tensors.question_mask.sum(1).max())
    if max(longest, tensors.num_segments) > cfg.max_len:
        raise ValueError(
            f"model.max_len={cfg.max_len} < longest sequence {max(longest, tensors.num_segments)}"
        )
    tokens = min(tensors.num_segments * cfg.tokens_per_segment(m) for m in MODALITIES)
    if cfg.k_purge > tokens:
        raise ValueError(
            f"model.k_purge={cfg.k_purge} exceeds the {tokens} expert tokens of a video "
            f"({tensors.num_segments} segments x tokens per segment)"
        )
    return cfg


def answer_format(requested: str, tensors: AVQATensors) -> str:
    """``model.answer_format`` resolved against the data: ``auto`` -> ``choices`` when the
    questions have candidate answers (AVQA), else ``classes``; a format the data cannot serve
    is an error naming the parameter."""
    has = tensors.choices is not None
    if requested == "auto":
        return "choices" if has else "classes"
    if requested == "choices" and not has:
        raise ValueError("model.answer_format=choices but qa_pairs has no candidate answers "
                         "(no choices column): use classes or auto")  # fmt: skip
    if requested == "classes" and has:
        raise ValueError("model.answer_format=classes but qa_pairs holds multiple-choice "
                         "questions (AVQA answers are free text): use choices or auto")  # fmt: skip
    if requested not in ("classes", "choices"):
        raise ValueError(f"model.answer_format must be auto, classes or choices, got {requested!r}")
    return requested


def _state_hash(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


def history_to_mlflow(summary: dict[str, Any]) -> dict[str, Any]:
    """``{"history": {name: [per epoch]}, "best": {...}}`` -> ``MlflowMetricsHistoryDataset``
    input: every per-epoch series with steps 0.., plus ``best_<name>`` at the best epoch."""
    out: dict[str, Any] = {
        name: [{"step": i, "value": float(v)} for i, v in enumerate(values)]
        for name, values in summary.get("history", {}).items() if values
    }  # fmt: skip
    for name, value in summary.get("best", {}).items():
        out[f"best_{name}"] = {"step": 0, "value": float(value)}
    if "seconds" in summary:
        out["seconds"] = {"step": 0, "value": float(summary["seconds"])}
    for name, value in summary.get("timing", {}).items():
        if isinstance(value, dict):  # per stage-I worker process: {"visual+text": {...}}
            for group, timing in value.items():
                for key, v in timing.items():
                    out[f"timing_{group.replace('+', '_')}_{key}"] = {"step": 0, "value": float(v)}
        else:
            out[f"timing_{name}"] = {"step": 0, "value": float(value)}
    return out


# ---- stage I ---------------------------------------------------------------------------------
def _grounding_tags(tensors: AVQATensors, params: dict, modality: str, switch: str) -> int:
    """How many per-class tags ``modality``'s grounding head learns after presence
    (``grounding.ATTRIBUTES``): those of ``tensors.grounding[modality]`` when
    ``pretrain.<switch>`` is on, else 0; a warning when asked for but the labels have none.
    Call it only with grounding on (the labels are there)."""
    if not params.get(switch, False):
        return 0
    tags = tensors.grounding[modality].shape[-1] // len(avqa.INSTRUMENTS) - 1
    if not tags:
        logger.warning("pretrain: %s is true but grounding_labels has no %s tags (rebuild it: "
                       "kedro run --pipelines=features): the %s grounding head tags presence "
                       "alone", switch, " / ".join(ATTRIBUTES[modality]), modality)  # fmt: skip
    return tags


#: which experts each stage-I process trains, by ``pretrain.expert_processes``: the audio expert
#: (with its encoder's pretraining) is about as much work as the visual and text experts together
EXPERT_GROUPS: dict[int, tuple[tuple[str, ...], ...]] = {
    1: (EXPERTS,),
    2: (("audio",), ("visual", "text")),
    3: tuple((m,) for m in EXPERTS),
}


def _stage_one_prefixes(m: str) -> tuple[str, ...]:
    """The state_dict key prefixes of one expert's stage-I parameters."""
    return (f"phi.{m}.", f"experts.{m}.", f"heads.{m}.", f"grounding.out.{m}.")


def _group_prefixes(experts: tuple[str, ...]) -> tuple[str, ...]:
    """The state_dict key prefixes of the stage-I parameters of every expert of ``experts``."""
    return tuple(p for m in experts for p in _stage_one_prefixes(m))


class DropoutStreams:
    """One torch RNG stream per expert for stage I's dropout masks.

    Each expert draws its masks from its own stream, seeded from the epoch's seed and the
    expert, whatever else runs in the process. The experts of eq. 10 share nothing else but
    the batches, so a stage I that trains them in one process and one that trains them in
    several (``pretrain.expert_processes``) give the same weights.
    """

    def __init__(self, epoch_seed_: int, experts: tuple[str, ...], device: torch.device,
                 rank: int = 0) -> None:  # fmt: skip
        self.device = device
        self.states: dict[str, list[torch.Tensor]] = {}
        outer = self._get()
        for m in experts:
            torch.manual_seed(int(np.random.SeedSequence(
                [epoch_seed_, rank, EXPERTS.index(m)]).generate_state(1)[0]))  # fmt: skip
            self.states[m] = self._get()
        self._set(outer)

    def _get(self) -> list[torch.Tensor]:
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def _set(self, states: list[torch.Tensor]) -> None:
        torch.set_rng_state(states[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(states[1], self.device)

    @contextlib.contextmanager
    def use(self, expert: str):
        """Draw from ``expert``'s stream inside the block (the outer stream is restored)."""
        outer = self._get()
        self._set(self.states[expert])
        try:
            yield
        finally:
            self.states[expert] = self._get()
            self._set(outer)


def _stage_one_config(
    tensors: AVQATensors, model_params: dict, params: dict
) -> tuple[R2ScPConfig, float, int, int]:
    """The stage-I model's configuration and its grounding settings ``(cfg, grounding weight,
    audio attribute tags, visual attribute tags)``."""
    cfg = build_config(model_params, tensors)
    grounding = float(params.get("grounding_weight", 0.0))
    if grounding < 0:
        raise ValueError(f"pretrain.grounding_weight must be >= 0, got {grounding}")
    if grounding and not tensors.grounding:
        logger.warning("pretrain: grounding_weight %s but the data has no grounding labels "
                       "(only the embedded dataset has them): eq. 10 alone", grounding)  # fmt: skip
        grounding = 0.0
    # per-class tags after the K presence tags (grounding.py): the audio head's loud / rhythmic,
    # the visual head's playing; each only when its switch is on and the labels have them
    attributes = _grounding_tags(tensors, params, "audio", "grounding_attributes") if grounding else 0
    playing = _grounding_tags(tensors, params, "visual", "grounding_playing") if grounding else 0
    if grounding:
        cfg = dataclasses.replace(cfg, n_grounding=len(avqa.INSTRUMENTS),
                                  grounding_attributes=attributes,
                                  grounding_visual_attributes=playing)  # fmt: skip
    return cfg, grounding, attributes, playing


def expert_processes(params: dict) -> int:
    """``pretrain.expert_processes`` (default 1), checked: 1, 2 or 3."""
    n = params.get("expert_processes", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n not in EXPERT_GROUPS:
        raise ValueError(f"pretrain.expert_processes must be one of {sorted(EXPERT_GROUPS)} "
                         f"(processes that train the experts side by side), got {n!r}")  # fmt: skip
    return n


def train_stage_one(
    tensors: AVQATensors, model_params: dict, params: dict, train_missing: dict, seed: int,
    audio_set: dict[str, Any] | None = None,
) -> tuple[R2ScP, dict[str, Any]]:  # fmt: skip
    """Stage I (section 3.4, eq. 10): each expert learns to answer alone on complete data.

    L_st1 = sum over m in (audio, visual, text) of CE(head_m(E_m(Phi_m(F_m)), question), y);
    with training-time missingness a sample without m is left out of m's term. With
    ``stage_one: false`` (Table 3, "w/o modality-specific expert pretraining") the experts
    stay at their seeded initialisation and stage II trains them.

    ``audio_set`` (:func:`r2scp_pipeline.audio_pretraining.audio_pretraining_set`): with
    ``pretrain.audio_encoder.videos > 0`` the audio front end, audio expert and its grounding
    head first learn to tag the instruments sounding in each second of these generated videos
    and of the training videos that have grounding labels (the audio encoder's pretraining,
    like VGGish's on AudioSet; also before ``stage_one: false``), then stage I starts from them.

    ``pretrain.expert_processes`` > 1 trains the experts in that many processes side by side
    (:data:`EXPERT_GROUPS`: the last group in this one, the others in worker processes; the
    audio expert's process also pretrains its encoder), each on ``pretrain.threads`` threads:
    the same weights and history as in one process (each expert draws its dropout masks from
    its own stream, :class:`DropoutStreams`), in less wall time.
    Returns the model (best val epoch) and a summary with the per-epoch history.
    """
    processes = expert_processes(params)
    if processes > 1 and dist_context() is not None:
        logger.warning("pretrain: expert_processes %d ignored under torchrun: the ranks split "
                       "every batch, each trains all experts", processes)  # fmt: skip
        processes = 1
    if processes == 1 or not params.get("stage_one", True):
        model, summary, res = _train_experts(tensors, model_params, params, train_missing, seed,
                                             audio_set)  # fmt: skip
        if res is not None:
            summary.update(_summary(res))
        return model, summary
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    groups = EXPERT_GROUPS[processes]
    fingerprint = tensors.fingerprint()
    jobs = [(_features_for(tensors, g), model_params, params, train_missing, seed,
             audio_set if "audio" in g else None, g, fingerprint) for g in groups]  # fmt: skip
    logger.info("pretrain: the experts train in %d processes: %s (this one)", len(groups),
                " | ".join("+".join(g) for g in groups))  # fmt: skip
    # the last group trains in this process, which holds the data already: one worker process
    # fewer (less memory); spawn: no fork of a process whose torch threads may be running
    with ProcessPoolExecutor(len(groups) - 1, mp_context=mp.get_context("spawn")) as pool:
        others = [pool.submit(_train_expert_group, job) for job in jobs[:-1]]
        own = _train_expert_group(jobs[-1])
        done = [f.result() for f in others] + [own]
    cfg, *_ = _stage_one_config(tensors, model_params, params)
    seed_everything(seed)
    model = R2ScP(cfg)  # the same initial weights as in each process; experts from them
    for state, _, _ in done:
        model.load_state_dict(state, strict=False)
    summary: dict[str, Any] = {"stage_one": True, "history": {}}
    for _, _, extra in done:
        summary.update(extra)
    summary.update(_summary(_merge_fits([res for _, res, _ in done], groups)))
    return model, summary


def _train_expert_group(job: tuple) -> tuple[dict[str, torch.Tensor], FitResult, dict[str, Any]]:
    """One process's group of :func:`train_stage_one`: its experts' trained weights, fit
    result and the audio encoder's summary (when it trained the audio expert)."""
    tensors, model_params, params, train_missing, seed, audio_set, experts, fingerprint = job
    model, summary, res = _train_experts(tensors, model_params, params, train_missing, seed,
                                         audio_set, experts=experts, fingerprint=fingerprint)  # fmt: skip
    prefixes = _group_prefixes(experts)
    state = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    return state, res, {k: summary[k] for k in ("audio_encoder",) if k in summary}


def _features_for(tensors: AVQATensors, experts: tuple[str, ...]) -> AVQATensors:
    """``tensors`` for a process that trains ``experts``: the features of a modality none of
    them reads become zeros of the same shape that take no memory (a stride-0 view), so the
    process is sent and holds only what it reads."""
    unread = {m: torch.zeros((), dtype=tensors.features(m).dtype).expand(tensors.features(m).shape)
              for m in MODALITIES if m not in experts}  # fmt: skip
    return dataclasses.replace(tensors, **unread)


def _merge_fits(results: list[FitResult], groups: tuple[tuple[str, ...], ...]) -> FitResult:
    """The fit results of the expert groups as one process's would be: a finished expert is
    evaluated again with the same (frozen) weights while others train, so its val accuracy
    repeats until the longest group's last epoch; the summed train loss and the mean val
    score are over the experts that the epoch trained / scored."""
    epochs = max(r.epochs_run for r in results)
    history: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.history.items():
            if k.startswith("val_acc_"):
                history[k] = v + v[-1:] * (epochs - len(v))
            elif k not in ("train_loss", "lr", "val_score"):
                history[k] = v
    longest = max(results, key=lambda r: r.epochs_run)
    history["train_loss"] = [
        float(sum(r.history["train_loss"][e] for r in results if e < len(r.history["train_loss"])))
        for e in range(epochs)
    ]
    history["lr"] = longest.history["lr"]
    history["val_score"] = [float(np.mean([history[f"val_acc_{m}"][e] for m in EXPERTS]))
                            for e in range(epochs)]  # fmt: skip
    keys = ["train_loss", *[f"train_loss_{m}" for m in EXPERTS],  # one process's order
            *[f"train_loss_grounding_{m}" for m in MODALITIES], "lr",
            *[f"val_acc_{m}" for m in EXPERTS], "val_score", *history]  # fmt: skip
    timing = {"train_seconds": max(r.timing["train_seconds"] for r in results),
              "train_cpu_seconds": sum(r.timing["train_cpu_seconds"] for r in results),
              "eval_seconds": max(r.timing["eval_seconds"] for r in results),
              "train_samples": max(r.timing["train_samples"] for r in results),
              "processes": 1, "expert_processes": len(groups),
              "groups": {"+".join(g): {k: round(v, 2) for k, v in r.timing.items()}
                         for g, r in zip(groups, results, strict=True)}}  # fmt: skip
    return FitResult(
        history={k: history[k] for k in dict.fromkeys(keys) if k in history},
        best_epochs={g: e for r in results for g, e in r.best_epochs.items()},
        best_scores={g: s for r in results for g, s in r.best_scores.items()},
        epochs_run=epochs, stopped_early=all(r.stopped_early for r in results),
        resumed_from=min(r.resumed_from for r in results), timing=timing,
    )  # fmt: skip


def _train_experts(
    tensors: AVQATensors, model_params: dict, params: dict, train_missing: dict, seed: int,
    audio_set: dict[str, Any] | None = None, experts: tuple[str, ...] | None = None,
    fingerprint: str | None = None,
) -> tuple[R2ScP, dict[str, Any], FitResult | None]:  # fmt: skip
    """Stage I of ``experts`` (None: all) in this process (:func:`train_stage_one`): the
    model, the summary so far (the audio encoder's) and the fit result (None with
    ``stage_one: false``). A group of several processes keeps its checkpoint in
    ``checkpoint_dir/<experts>``. ``fingerprint``: the data's (``tensors.fingerprint()``,
    computed here when None)."""
    group = experts
    experts = experts or EXPERTS
    cfg, grounding, attributes, playing = _stage_one_config(tensors, model_params, params)
    seed_everything(seed)
    model = R2ScP(cfg)
    summary: dict[str, Any] = {"stage_one": bool(params.get("stage_one", True)), "history": {}}
    loop = LoopConfig.from_params(params, "pretrain")
    if group is not None:  # a worker process: its own checkpoint folder and progress bar
        name = "+".join(group)
        loop = dataclasses.replace(
            loop, progress_desc=f"{loop.progress_desc or 'pretrain'} [{name}]",
            checkpoint_dir=str(Path(loop.checkpoint_dir) / name) if loop.checkpoint_dir else None,
        )  # fmt: skip
    device = resolve_device(loop.device)
    model.to(device)
    encoder_set = (_audio_encoder_set(tensors, params, audio_set,
                                      len(avqa.INSTRUMENTS) * (1 + attributes))
                   if "audio" in experts else None)  # fmt: skip
    tm = dict(train_missing or {})
    run_hash = config_hash({"stage": "pretrain", "model": cfg.expert_dict(), "dropout": cfg.dropout,
                            "grounding": grounding,
                            **({"grounding_attributes": attributes} if attributes else {}),
                            **({"grounding_playing": playing} if playing else {}),
                            **({"audio_encoder": {**params["audio_encoder"],
                                                  **set_fingerprint(audio_set)}}
                               if encoder_set is not None else {}),
                            **({"experts": list(group)} if group is not None else {}),
                            "dropout_streams": "per expert",
                            "loop": loop.hashed(), "train_missing": tm, "seed": seed,
                            "data": fingerprint or tensors.fingerprint()})  # fmt: skip
    # a run that resumes from its checkpoint gets the pretrained weights from it: the
    # pretraining is not repeated, its summary comes from the checkpoint too
    saved = checkpoint_extra(loop, run_hash) if summary["stage_one"] else None
    if encoder_set is not None and saved and "audio_encoder" in saved:
        summary["audio_encoder"] = saved["audio_encoder"]
        logger.info("pretrain: resuming from %s; the audio encoder's pretraining is in it",
                    loop.checkpoint_dir)  # fmt: skip
    elif encoder_set is not None:
        with torch_threads(loop.threads):
            summary["audio_encoder"] = train_audio_encoder(
                model, *encoder_set, params["audio_encoder"], seed, device
            )
        logger.info("pretrain: audio encoder pretrained on %d videos, loss %s -> %s",
                    summary["audio_encoder"]["videos"], summary["audio_encoder"]["loss"][0],
                    summary["audio_encoder"]["loss"][-1])  # fmt: skip
    if not summary["stage_one"]:
        logger.info("pretrain: stage_one is false, experts left untrained")
        model.to("cpu")
        return model, summary, None
    masks = train_missing_masks(
        tensors, float(tm.get("rate", 0.0)), tm.get("modality", "both"), seed
    )
    absent = {m: torch.as_tensor(masks[m]) for m in MODALITIES}
    train_rows, val_rows = tensors.indices("train"), tensors.indices("val")
    prefixes = _group_prefixes(experts)
    params_list = [p for name, p in model.named_parameters() if name.startswith(prefixes)]
    dist = dist_context()

    active = list(experts)  # experts still training (a finished one keeps its best epoch)

    def stop_training(done: set[str]) -> None:
        for m in [m for m in active if m in done]:
            active.remove(m)
            prefixes = _stage_one_prefixes(m)
            for name, p in model.named_parameters():
                if name.startswith(prefixes):
                    p.requires_grad_(False)
                    p.grad = None
            logger.info("pretrain: the %s expert stopped improving; no longer trained", m)

    def epoch_setup(epoch: int, _rng: np.random.Generator) -> DropoutStreams:
        return DropoutStreams(epoch_seed(seed, "pretrain", epoch), experts, device,
                              dist.rank if dist else 0)  # fmt: skip

    def step(rows, streams: DropoutStreams):
        v = tensors.video[rows]
        y = tensors.answer[rows].to(device)
        args, batch_kwargs = _expert_batch(tensors, rows, device)  # once for all experts
        logits = {}
        for m in active:  # each expert alone, with its own dropout stream
            with streams.use(m):
                logits |= model.expert_logits(*args, **batch_kwargs, grounding=bool(grounding),
                                              experts=(m,))  # fmt: skip
        loss, logs = torch.zeros((), device=device), {}
        for m in active:
            ce = F.cross_entropy(logits[m], y, reduction="none")  # [B]
            keep = torch.ones_like(ce) if m == "text" else (~absent[m][v]).float().to(device)
            term = (ce * keep).sum() / keep.sum().clamp_min(1.0)
            loss = loss + term
            logs[f"loss_{m}"] = term.item()
        if grounding:  # auxiliary tags per distinct video of the batch (docs/model.md)
            videos, _ = _distinct_videos(tensors, rows)  # the rows of a / vis, in order
            for m in (m for m in MODALITIES if m in active):
                keep = (tensors.grounding_known[videos] & ~absent[m][videos]).to(device)
                tags = logits[f"tags_{m}"]  # the labels may hold attribute tags the head has not
                target = tensors.grounding[m][videos][..., : tags.shape[-1]].to(device)
                bce = F.binary_cross_entropy_with_logits(tags, target, reduction="none"
                                                         ).sum(-1).mean((1, 2))  # fmt: skip
                # [V']: summed over the tags, like one CE
                term = (bce * keep).sum() / keep.sum().clamp_min(1)
                loss = loss + grounding * term
                logs[f"loss_grounding_{m}"] = term.item()
        return loss, logs

    def evaluate():
        correct = {m: 0.0 for m in experts}
        for i in range(0, len(val_rows), loop.eval_batch_size):
            rows = val_rows[i : i + loop.eval_batch_size]
            logits = _expert_batch_logits(model, tensors, rows, device, experts=experts)
            y = tensors.answer[rows].to(device)
            for m in experts:
                correct[m] += _accuracy(logits[m], y) * len(rows)
        acc = {f"acc_{m}": c / len(val_rows) for m, c in correct.items()}
        return {**acc, "score": float(np.mean(list(acc.values()))),
                **{f"score_{m}": acc[f"acc_{m}"] for m in experts}}  # fmt: skip

    with torch_threads(loop.threads):
        res = fit(stage="pretrain", model=model, params=params_list, train_rows=train_rows, loop=loop,
                  seed=seed, run_hash=run_hash, device=device, epoch_setup=epoch_setup,
                  step=step, evaluate=evaluate, train_mode=model.train,
                  groups={m: _stage_one_prefixes(m) for m in experts},
                  permute=shuffle_by_video(tensors), dist=dist,
                  on_groups_done=None if dist else stop_training,
                  extra={k: summary[k] for k in ("audio_encoder",) if k in summary})  # fmt: skip
    for p in params_list:  # the returned model is a plain module again
        p.requires_grad_(True)
    model.to("cpu")
    return model, summary, res


def _audio_encoder_set(
    tensors: AVQATensors, params: dict, audio_set: dict[str, Any] | None, width: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The audio encoder's pretraining data ``(x [N, T, S_a, D_a], y [N, T, width])``: the
    first ``pretrain.audio_encoder.videos`` generated videos of ``audio_set`` plus the training
    videos with grounding labels, their tags cut to the audio grounding head's ``width`` (K
    presence tags, then the attribute tags); None when there is nothing to pretrain on."""
    videos = int((params.get("audio_encoder") or {}).get("videos", 0))
    if videos == 0 or audio_set is None or audio_set["x"].numel() == 0:
        if videos and audio_set is not None:
            logger.info("pretrain: no audio encoder pretraining (%s)",
                        audio_set.get("meta", {}).get("skipped", "empty set"))  # fmt: skip
        return None
    x, y = audio_set["x"], audio_set["y"]
    if len(x) < videos:
        raise ValueError(
            f"pretrain.audio_encoder.videos={videos} but audio_pretraining_set holds {len(x)} "
            "videos: the set is built from params:pretrain; rerun its node (kedro run "
            "--pipelines=pretrain) instead of raising videos in an ablation"
        )
    own = tensors.features("audio")
    if tuple(x.shape[1:]) != tuple(own.shape[1:]):  # audio_features not made by this config
        logger.warning(
            "pretrain: no audio encoder pretraining: audio_pretraining_set has features %s per "
            "video (params:features), audio_features %s; set pretrain.audio_encoder.videos=0 "
            "for features made elsewhere", list(x.shape[1:]), list(own.shape[1:]),
        )  # fmt: skip
        return None
    if y.shape[-1] < width:
        raise ValueError(
            f"audio_pretraining_set tags {y.shape[-1]} values per second, the audio grounding "
            f"head {width} (pretrain.grounding_attributes): rebuild the set with this code "
            "(kedro run --pipelines=pretrain)"
        )  # fmt: skip
    x, y = x[:videos], y[:videos, ..., :width]
    if tensors.grounding:
        train_videos = torch.unique(tensors.video[tensors.indices("train")])
        train_videos = train_videos[tensors.grounding_known[train_videos]]
        x = torch.cat([x, own[train_videos]])
        y = torch.cat([y, tensors.grounding["audio"][train_videos].squeeze(2)[..., :width]])
    return x, y


def _summary(res: FitResult) -> dict[str, Any]:
    """History, best epoch(s) and the val metrics there; timing of this run."""
    if "all" in res.best_epochs:
        epoch = res.best_epochs["all"]
        best = (
            {k: v[epoch] for k, v in res.history.items() if k.startswith("val_")}
            if epoch >= 0
            else {}
        )
        best_epoch: int | dict[str, int] = epoch
    else:  # one best epoch per expert: its own val accuracy there
        best_epoch = dict(res.best_epochs)
        best = {
            f"val_acc_{g}": res.history[f"val_acc_{g}"][e] for g, e in best_epoch.items() if e >= 0
        }
        if best:
            best["val_score"] = float(np.mean(list(best.values())))
    t = res.timing
    timing = {k: v if isinstance(v, dict) else round(v, 2) for k, v in t.items()}
    if t.get("train_seconds"):
        timing["train_samples_per_s"] = round(t["train_samples"] / t["train_seconds"], 1)
        timing["train_samples_per_cpu_s"] = round(
            t["train_samples"] / max(t["train_cpu_seconds"], 1e-9), 1
        )
    return {"history": res.history, "best_epoch": best_epoch, "best": best,
            "epochs_run": res.epochs_run, "stopped_early": res.stopped_early,
            "resumed_from": res.resumed_from, "timing": timing}  # fmt: skip


# ---- stage II --------------------------------------------------------------------------------
def _router_mask(recovery: Recovery, miss: torch.Tensor) -> torch.Tensor | None:
    """``expert_mask`` [B, 3] of a router-masking recovery: the missing expert of each sample
    (``miss`` [B] missing codes) is removed; ``None`` for every other recovery."""
    if not recovery.mask_expert:
        return None
    mask = torch.zeros(len(miss), len(EXPERTS), dtype=torch.bool, device=miss.device)
    for m in MODALITIES:
        mask[:, EXPERTS.index(m)] = miss == MISSING_CODES[m]
    return mask


def _rank_losses(ce_gt, ce_pos, ce_neg, gt_ok):
    """Eqs. 13-14 per sample: max(0, L(X_gt) - L(R+)) and max(0, L(R+) - L(R-)); the first is
    zero where the ground truth is unavailable (training-time missingness)."""
    return F.relu(ce_gt - ce_pos) * gt_ok, F.relu(ce_pos - ce_neg)


def ranking_loss(ce_gt: torch.Tensor, ce_pos: torch.Tensor, ce_neg: torch.Tensor,
                 gt_ok: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """L_rank+ + L_rank- (eqs. 13-14) averaged over samples: zero iff L(gt) <= L(R+) <= L(R-)."""
    gt_ok = torch.ones_like(ce_gt) if gt_ok is None else gt_ok
    plus, minus = _rank_losses(ce_gt, ce_pos, ce_neg, gt_ok)
    return (plus + minus).mean()


def train_stage_two(
    stage1: dict[str, Any],
    tensors: AVQATensors,
    model_params: dict,
    params: dict,
    train_missing: dict,
    seed: int,
    recovery: Recovery | None = None,
) -> tuple[R2ScP, dict[str, Any]]:
    """Stage II (section 3.4-3.5): frozen experts; CAP, W_proj, guidance, readouts, router and
    decoder trained with L_total = L_task + lambda (L_rank+ + L_rank-) (eq. 15).

    Each epoch a fraction ``drop_rate`` of the training samples loses audio or visual (drawn
    from ``drop_modalities``), filled by ``recovery`` (default R2ScP's retrieval from the
    sample's neighbours, never its own video). With ``rank_loss_weight > 0`` one more pass
    gives L(X_gt) (the true features in the slot: L_rank+, eq. 13) and, when the recovery has
    an R- (retrieval: the least similar neighbours), another gives L(R-) (L_rank-, eq. 14).
    A recovery's ``extra_loss`` is added to the total. With ``batch_by_video`` the epoch's
    drawn questions are shuffled by video (a video's questions share a batch), so CAP's SA over
    a video's H_com runs once per batch instead of once per question.
    """
    recovery = recovery or Retrieval()
    cfg = build_config(model_params, tensors)
    # rebuilt like load_model does: a field added after the checkpoint gets its default (what
    # the experts were built with), and values are normalised (readout_hops as a mapping)
    s1_cfg = R2ScPConfig.from_dict(stage1["config"]).expert_dict()
    diff = {k: (s1_cfg[k], v) for k, v in cfg.expert_dict().items() if s1_cfg[k] != v}
    if diff:
        raise ValueError(f"model parameters {diff} (stage I, now) differ from the stage-I experts; "
                         "re-run the pretrain pipeline")  # fmt: skip
    stage_one = bool(stage1.get("meta", {}).get("stage_one", True))
    seed_everything(seed + 1)
    model = R2ScP(cfg)
    stage1_parts = ("phi", "experts", "heads")
    expert_state = {k: v for k, v in stage1["state_dicts"]["model"].items()
                    if k.split(".")[0] in stage1_parts}  # fmt: skip
    missing_keys = model.load_state_dict(expert_state, strict=False).missing_keys
    if any(k.split(".")[0] in stage1_parts for k in missing_keys):
        raise ValueError("stage1_experts lacks expert weights; re-run the pretrain pipeline")
    model.init_readouts_from_heads()
    summary: dict[str, Any] = {"stage_one": stage_one, "history": {}}
    if not cfg.mixing:
        logger.info(
            "mix: model.mixing is false (Table 3 'w/o expert mixing'): no stage II training"
        )
        return model, summary
    loop = LoopConfig.from_params(params, "mix")
    device = resolve_device(loop.device)
    model.to(device)
    frozen = stage_one
    for mod in model.expert_modules():
        mod.requires_grad_(not frozen)
    trainable = [p for p in model.parameters() if p.requires_grad]
    weight = float(params.get("rank_loss_weight", 0.1))
    drop_rate = float(params.get("drop_rate", 0.5))
    by_video = bool(params.get("batch_by_video", False))
    draw = {"questions": draw_rows, "videos": draw_videos(tensors)}.get(params.get("draw", "questions"))
    if draw is None:
        raise ValueError(f"mix.draw must be questions or videos, got {params.get('draw')!r}")
    drop_mods = list(params.get("drop_modalities", ["audio", "visual"]))
    val_settings = list(params.get("val_settings", ["none", "audio", "visual"]))
    bad = [m for m in drop_mods if m not in MODALITIES] + [
        s for s in val_settings if s not in ("none", *MODALITIES)
    ]
    if bad or not 0 <= drop_rate <= 1 or not drop_mods or not val_settings:
        raise ValueError(
            f"mix: bad drop_rate / drop_modalities / val_settings ({drop_rate}, {drop_mods}, {val_settings})"
        )
    if isinstance(recovery, Retrieval) and cfg.use_cmr and not tensors.has_retrieval:
        raise ValueError("mix needs memory_bank_audio, memory_bank_visual and neighbors")
    tm = dict(train_missing or {})
    masks = train_missing_masks(
        tensors, float(tm.get("rate", 0.0)), tm.get("modality", "both"), seed
    )
    if tensors.has_retrieval:
        tensors = exclude_missing_from_bank(tensors, masks)
    forced = np.zeros(len(tensors.video_ids), np.int64)
    for m in MODALITIES:
        forced[masks[m]] = MISSING_CODES[m]
    train_rows = tensors.indices("train")
    use_rank = weight > 0
    use_neg = use_rank and recovery.has_negative(model)  # R- exists only with retrieval
    run_hash = config_hash({"stage": "mix", "model": cfg.to_dict(), "loop": loop.hashed(),
                            "params": {k: v for k, v in params.items() if k not in RUNTIME_KEYS},
                            "train_missing": tm, "seed": seed, "data": tensors.fingerprint(),
                            "recovery": recovery.name, "stage1": _state_hash(expert_state)})  # fmt: skip
    tick = time.perf_counter()
    with torch_threads(loop.threads):
        cache = build_cache(model, tensors, device) if frozen else None
    cache_seconds = time.perf_counter() - tick
    row_pos = {int(r): i for i, r in enumerate(train_rows)}

    def train_mode():
        model.train()
        if frozen:  # frozen experts stay in eval mode (no dropout), matching the cache
            for mod in model.expert_modules():
                mod.eval()

    def epoch_setup(epoch, rng):
        code = np.zeros(len(train_rows), np.int64)
        drop = rng.random(len(train_rows)) < drop_rate
        which = rng.integers(0, len(drop_mods), len(train_rows))
        code[drop] = [MISSING_CODES[drop_mods[w]] for w in which[drop]]
        f = forced[tensors.video[train_rows].numpy()]
        code[f > 0] = f[f > 0]  # truly missing at training time: always recovered, no X_gt
        return {"code": code, "gt_ok": f == 0}

    def step(rows, setup):
        idx = np.array([row_pos[int(r)] for r in rows])
        miss = torch.as_tensor(setup["code"][idx], device=device)
        y = tensors.answer[rows].to(device)
        enc = batch_encodings(model, tensors, rows, device, cache, recovery, "pos", missing=miss)
        dropped = (miss > 0).nonzero().squeeze(1) if use_rank else miss.new_zeros(0)
        nb, nd = len(rows), len(dropped)
        if nd:  # one forward for every pass: fill (all rows), X_gt and R- (dropped rows)
            sub = enc.select(dropped)
            enc = _cat_encodings(enc, sub.with_cand_all(sub.h))
            miss = torch.cat([miss, miss[dropped]])
            y = torch.cat([y, y[dropped]])
            if use_neg:
                neg = batch_encodings(model, tensors, rows[dropped.cpu().numpy()], device, cache,
                                      recovery, "neg", missing=miss[dropped])  # fmt: skip
                enc = _cat_encodings(enc, neg)
                miss = torch.cat([miss, miss[nb:]])
                y = torch.cat([y, y[nb:]])
        logits, alpha = model.fuse(enc, miss, _router_mask(recovery, miss))
        ce = F.cross_entropy(logits, y, reduction="none")  # [B + nd (+ nd with R-)]
        task = ce[:nb].mean()  # L_task (eq. 15) on the filled (or complete) pass
        logs = {
            "task": task.item(),
            **{f"load_{m}": alpha[:nb, i].detach().mean().item() for i, m in enumerate(EXPERTS)},
        }
        loss = task
        if nd:
            gt_ok = torch.as_tensor(setup["gt_ok"][idx], device=device)[dropped].float()
            ce_fill = ce[:nb][dropped]
            ce_neg = ce[nb + nd :] if use_neg else ce_fill  # no R-: L_rank- is 0
            plus, minus = _rank_losses(ce[nb : nb + nd], ce_fill, ce_neg, gt_ok)
            loss = loss + weight * (plus + minus).sum() / nb
            logs.update(
                rank_pos=plus.detach().sum().item() / nb, rank_neg=minus.detach().sum().item() / nb
            )
        extra = recovery.extra_loss(
            Source(model, tensors, rows, tensors.video[rows], device, cache, cfg.n_retrieve,
                   enc.h), logits[:nb], y[:nb])  # fmt: skip
        if extra is not None:
            loss = loss + extra
            logs["extra"] = extra.item()
        return loss, logs

    def evaluate():
        c = cache if frozen else build_cache(model, tensors, device)
        out = {}
        for s in val_settings:
            p = predict(
                model,
                tensors,
                "val",
                s,
                recovery=recovery,
                cache=c,
                batch_size=loop.eval_batch_size,
                device=device,
            )
            out[f"acc_{s}"] = p.accuracy
            for i, m in enumerate(EXPERTS):
                out[f"load_{s}_{m}"] = float(p.expert_weights[:, i].mean())
        out["score"] = float(np.mean([out[f"acc_{s}"] for s in val_settings]))
        return out

    with torch_threads(loop.threads):
        res = fit(stage="mix", model=model, params=trainable, train_rows=train_rows, loop=loop,
                  seed=seed, run_hash=run_hash, device=device, epoch_setup=epoch_setup,
                  step=step, evaluate=evaluate, train_mode=train_mode, dist=dist_context(),
                  permute=shuffle_by_video(tensors) if by_video else None, draw=draw)  # fmt: skip
    model.to("cpu").eval()
    summary.update(_summary(res))
    summary["timing"]["cache_seconds"] = round(cache_seconds, 2)
    # memorisation check: accuracy of the selected model on its own training questions (the
    # frozen experts' cache still holds; it is rebuilt only when it lives on another device);
    # with samples_per_epoch, on a seeded draw of that many of them (an epoch's worth)
    check_rows = draw_rows(train_rows, loop.samples_per_epoch, np.random.default_rng([seed, 7]))
    with torch_threads(loop.threads):
        c = None
        if frozen:
            c = cache if device.type == "cpu" else build_cache(model, tensors)
        summary["best"]["train_acc_none"] = predict(
            model, tensors, "train", "none", recovery=recovery, cache=c,
            batch_size=loop.eval_batch_size, rows=check_rows,
        ).accuracy
        summary["best"]["train_acc_questions"] = int(len(check_rows))
    return model, summary
