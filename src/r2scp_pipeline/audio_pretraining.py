"""Audio encoder pretraining on generated music (not in the paper; docs/model.md, "Audio
encoder pretraining").

The paper's audio features come from VGGish, an encoder pretrained on AudioSet; no audio
encoder with bundled weights ships with pip or apt, so this project learns its audio front end
(Phi_a, :class:`~r2scp_pipeline.model.AudioFrontEnd`) in stage I, from the training videos
alone. On the default 700 training videos it finds few of the instruments that sound
(``benchmarks/audio_probe.py``): the audio expert is short of examples, not of steps. This
module gives it more, the way VGGish got AudioSet: the embedded generator draws *other* scenes
(seed ``seed + audio_encoder.seed_offset``, so never a dataset video), renders only their
audio, encodes it with the dataset's own log-mel parameters, and Phi_a, the audio expert E_a
and its grounding head learn which instruments sound in each second. Stage I then starts the
audio expert from these weights (:func:`r2scp_pipeline.training.train_stage_one`).

::

    audio_pretraining_set(dataset, features, audio_encoder params, seed)
        -> {"x": [N, T, S_a, D_a] log-mel, "y": [N, T, 3K] instruments sounding per second,
            and how loud and rhythmic each is (r2scp_pipeline/grounding.py)}
    train_audio_encoder(model, x, y, params, seed)   # Phi_a, E_a, grounding head (BCE per second)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from r2scp_pipeline import avqa
from r2scp_pipeline.encoders import LogMelEncoder
from r2scp_pipeline.grounding import AUDIO_ATTRIBUTES, audio_target, presence, segment_sounds
from r2scp_pipeline.media import feature_param, segment_indices, torch_threads
from r2scp_pipeline.model import R2ScP
from r2scp_pipeline.params import AudioEncoderParams

logger = logging.getLogger(__name__)

#: the R2ScP parameters that audio encoder pretraining trains (and stage I starts from)
AUDIO_ENCODER_PREFIXES = ("phi.audio.", "experts.audio.", "grounding.out.audio.")
#: ``dataset.embedded`` keys that mean nothing for audio-only scenes without questions
_IGNORED_KEYS = ("root", "answer_format", "split_fractions", "splits_sound_source",
                 "questions_per_video", "train_questions_per_video", "num_workers")  # fmt: skip


#: ``pretrain.audio_encoder`` keys left out of a configuration: the schema's defaults
DEFAULTS = AudioEncoderParams().model_dump()


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` over :data:`DEFAULTS`, ranges checked (types are checked by ``params.py``)."""
    params = {**DEFAULTS, **(params or {})}
    for key, low in (("videos", 0), ("epochs", 1), ("batch_size", 1), ("seed_offset", 1)):
        if int(params[key]) < low:
            extra = " (0 would draw the dataset's own scenes)" if key == "seed_offset" else ""
            raise ValueError(f"pretrain.audio_encoder.{key} must be >= {low}, got "
                             f"{params[key]}{extra}")  # fmt: skip
    for key in ("lr", "weight_decay"):
        if float(params[key]) < 0 or (key == "lr" and float(params[key]) == 0):
            raise ValueError(f"pretrain.audio_encoder.{key} must be "
                             f"{'> 0' if key == 'lr' else '>= 0'}, got {params[key]}")  # fmt: skip
    return params


def _empty(reason: str) -> dict[str, Any]:
    return {"x": torch.zeros(0), "y": torch.zeros(0), "meta": {"videos": 0, "skipped": reason}}


def audio_pretraining_set(
    dataset_params: dict[str, Any],
    features_params: dict[str, Any],
    audio_encoder_params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """``audio_encoder.videos`` generated audio-only scenes, encoded like the dataset's audio.

    Scenes come from the embedded generator with the dataset's ``dataset.embedded`` knobs
    (instrument probabilities, sample rate, length, sound source) and generator seed ``seed +
    audio_encoder.seed_offset``; their audio is rounded to 16-bit samples like the generator's
    wav files and encoded by :class:`~r2scp_pipeline.encoders.LogMelEncoder` with
    ``features.audio.logmel`` and ``features.segments``. Labels: the instruments sounding in
    the second that feeds each segment and how loud and rhythmic each is
    (:func:`r2scp_pipeline.grounding.audio_target`, what ``grounding_labels`` gives the
    dataset's videos).

    Returns ``{"x": float32 [N, T, S_a, D_a], "y": float32 [N, T, 3K], "meta": {...}}``; with
    ``videos: 0`` or audio features that are not log-mel frames (official VGGish features,
    ``pooling`` other than ``frames``) an empty set whose ``meta.skipped`` says why.
    """
    from r2scp_pipeline.pipelines.dataset.generator import resolve_config, sample_scenes

    params = check_params(audio_encoder_params)
    videos = int(params["videos"])
    if videos == 0:
        return _empty("pretrain.audio_encoder.videos is 0")
    offset = int(params["seed_offset"])
    encoder = feature_param(features_params, "audio", "encoder")
    logmel = dict(feature_param(features_params, "audio", "logmel"))
    if encoder != "logmel" or logmel.get("pooling", "frames") != "frames":
        reason = (f"features.audio.encoder is {encoder!r} with pooling {logmel.get('pooling')!r}: "
                  "the generated audio can only be encoded as log-mel frames")  # fmt: skip
        logger.warning("audio encoder pretraining skipped: %s", reason)
        return _empty(reason)
    if (dataset_params or {}).get("source", "embedded") != "embedded":
        logger.warning("audio encoder pretraining: generated music for a %r dataset (another "
                       "domain); pretrain.audio_encoder.videos=0 turns it off",
                       dataset_params.get("source"))  # fmt: skip
    embedded = {k: v for k, v in dict(dataset_params["embedded"]).items() if k not in _IGNORED_KEYS}
    cfg = resolve_config({**embedded, "num_videos": videos,
                          "split_fractions": {"train": 1.0, "val": 0.0, "test": 0.0}})  # fmt: skip
    tick = time.perf_counter()
    scenes = sample_scenes(cfg, int(seed) + offset)
    segments = int(feature_param(features_params, "segments"))
    workers = int((dataset_params.get("embedded") or {}).get("num_workers", 1) or 1)
    job = (str(cfg["sound_source"]), int(cfg["sample_rate"]), logmel, segments)
    if workers > 1 and videos > 1:  # each video is rendered and encoded alone: same set
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        bounds = np.linspace(0, videos, min(workers, videos) + 1).astype(int)
        parts = [(scenes[a:b], *job, f"audio pretraining set ({i + 1}/{len(bounds) - 1})")
                 for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]  # fmt: skip
        # spawn: no fork of a process whose torch threads may be running
        with ProcessPoolExecutor(len(parts), mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_encode_scenes, parts))
        x = np.concatenate([d[0] for d in done])
        y = np.concatenate([d[1] for d in done])
    else:
        x, y = _encode_scenes((scenes, *job, "audio pretraining set"))
    meta = {"videos": videos, "generator_seed": int(seed) + offset, "segments": segments,
            "sounding_per_second": round(float(presence(torch.from_numpy(y)).sum(-1).mean()), 3),
            "seconds": round(time.perf_counter() - tick, 1)}  # fmt: skip
    logger.info("audio pretraining set: %d generated videos, x %s, %.2f instruments sounding "
                "per second, %.1f s", videos, list(x.shape), meta["sounding_per_second"],
                meta["seconds"])  # fmt: skip
    return {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "meta": meta}


def _encode_scenes(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Render and encode one part of the audio pretraining set's scenes (one worker process of
    :func:`audio_pretraining_set`, or all of them): ``(x [n, T, S_a, D_a], y [n, T, 3K])``."""
    from r2scp_pipeline.pipelines.dataset.generator.assets import load_note_bank
    from r2scp_pipeline.pipelines.dataset.generator.audio import render_audio

    scenes, sound_source, sample_rate, logmel, segments, desc = job
    bank = load_note_bank(sound_source, sample_rate)
    enc = LogMelEncoder(**logmel)
    x = np.zeros((len(scenes), segments, enc.tokens, enc.dim), dtype=np.float32)
    y = np.zeros((len(scenes), segments, len(avqa.INSTRUMENTS) * (1 + len(AUDIO_ATTRIBUTES))),
                 dtype=np.float32)  # fmt: skip
    for i, scene in enumerate(tqdm(scenes, desc=desc, unit="video", mininterval=1.0)):
        wave = render_audio(scene, bank)
        wave = np.clip(np.round(wave * 32767.0), -32768, 32767) / 32768.0  # as PCM16 read back
        with torch_threads(1):  # as the features pipeline's log-mel frontend, in any process
            per_second = enc(wave)  # [seconds, S_a, D_a]
        x[i] = per_second[segment_indices(len(per_second), segments)]
        sounding = [(inst["class"], inst["active_seconds"], inst["loudness_db"], inst["rhythm_score"])
                    for inst in scene["instruments"] if inst["active_seconds"]]  # fmt: skip
        seconds = segment_indices(int(scene["seconds"]), segments)
        for t, sounds in enumerate(segment_sounds(sounding, seconds)):
            y[i, t] = audio_target(*sounds)
    return x, y


def set_fingerprint(audio_set: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint's run hash needs to know of the set: its size and a checksum."""
    if not audio_set or audio_set["x"].numel() == 0:
        return {"videos": 0}
    x, y = audio_set["x"], audio_set["y"]
    return {"shape": list(x.shape), "x_sum": round(float(x.double().sum()), 3),
            "y_sum": round(float(y.sum()), 1)}  # fmt: skip


def train_audio_encoder(
    model: R2ScP, x: torch.Tensor, y: torch.Tensor, params: dict[str, Any], seed: int,
    device: torch.device | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train Phi_a, E_a and the audio grounding head of ``model`` in place to tag, per segment,
    the instruments that sound, and how when ``y`` holds attribute tags (binary cross-entropy
    summed over the tags, as stage I's grounding loss). ``x`` [N, T, S_a, D_a], ``y``
    [N, T, K'] (K' = the head's width); AdamW with ``params``' ``lr``,
    ``weight_decay``, ``batch_size`` and ``epochs``, one-cycle schedule, gradient norm clipped
    at 1. A model without grounding heads trains a temporary one. Returns the loss per epoch.
    """
    params = check_params(params)
    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # dropout masks
    head = model.grounding.out["audio"] if model.grounding is not None else (
        torch.nn.Linear(model.cfg.d_model, y.shape[-1]).to(device))  # fmt: skip
    modules = [model.phi["audio"], model.experts["audio"], head]
    weights = [p for m in modules for p in m.parameters()]
    epochs, batch = int(params["epochs"]), int(params["batch_size"])
    opt = torch.optim.AdamW(weights, lr=float(params["lr"]),
                            weight_decay=float(params["weight_decay"]))  # fmt: skip
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, float(params["lr"]), total_steps=steps,
                                                pct_start=0.05)  # fmt: skip
    tokens = model.cfg.tokens_per_segment("audio")
    history, tick = [], time.perf_counter()
    for m in modules:
        m.train()
    for epoch in range(epochs):
        total = 0.0
        for rows in tqdm(torch.randperm(len(x), generator=gen).split(batch), leave=False,
                         desc=f"audio encoder epoch {epoch + 1}/{epochs}", mininterval=1.0):  # fmt: skip
            h = model.encode("audio", x[rows].to(device))  # [B, T*P, d]
            seg = h.view(len(rows), -1, tokens, h.shape[-1]).mean(2)  # [B, T, d]
            loss = F.binary_cross_entropy_with_logits(
                head(seg), y[rows].to(device), reduction="none").sum(-1).mean()  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(weights, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(rows)
        history.append(round(total / len(x), 4))
    return {"videos": len(x), "epochs": epochs, "loss": history,
            "seconds": round(time.perf_counter() - tick, 1)}  # fmt: skip
