"""The generative imputer ``G(f_avl, q) -> f_miss`` (the paper's section 3.1).

The "traditional" paradigm R2ScP argues against: a network trained with MSE on the training
split to *generate* the missing modality's raw features ``[T, D_miss]`` from the available
modality's features and the question, one network per direction (visual->audio when audio is
missing, audio->visual when visual is missing). The ``generative`` recovery method
(``recovery.py``) puts its output in the missing slot, and its classifier (stage II) is trained
on those generated features (``pipelines/variants``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import AVQATensors
from .vocabulary import DIRECTION_FOR_MISSING, DIRECTIONS, MODALITIES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImputerConfig:
    """Shape and size of one :class:`GenerativeImputer`."""

    d_in: int  # available modality's feature dim
    d_out: int  # missing modality's feature dim
    d_text: int  # question token dim
    segments: int  # T
    d_model: int = 128
    layers: int = 1
    heads: int = 4
    dropout: float = 0.1


class GenerativeImputer(nn.Module):
    """``G(f_avl, q) -> f_miss``: a small transformer over [available segments ; question tokens].

    x ``[B, T, D_in]`` and q ``[B, Lq, D_t]`` are projected to ``d_model``, given learned
    position / type embeddings, encoded jointly (the question tokens can steer every segment),
    and the ``T`` segment outputs are projected to ``[B, T, D_out]``.
    Inputs and outputs live in standardised space (see :func:`train_generative_imputer`).
    """

    def __init__(self, cfg: ImputerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.d_in, cfg.d_model)  # [B, T, D_in] -> [B, T, d]
        self.text_proj = nn.Linear(cfg.d_text, cfg.d_model)  # [B, Lq, D_t] -> [B, Lq, d]
        self.pos = nn.Parameter(torch.zeros(cfg.segments, cfg.d_model))  # [T, d]
        self.type_emb = nn.Parameter(torch.zeros(2, cfg.d_model))  # segment / question token
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.type_emb, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.heads,
            dim_feedforward=2 * cfg.d_model,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_out)  # [B, T, d] -> [B, T, D_out]

    def forward(self, x: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        """x ``[B, T, D_in]``, q ``[B, Lq, D_t]``, q_mask ``[B, Lq]`` (True = real token)."""
        b, t, _ = x.shape
        h = self.in_proj(x) + self.pos[:t] + self.type_emb[0]  # [B, T, d]
        g = self.text_proj(q) + self.type_emb[1]  # [B, Lq, d]
        seq = torch.cat([h, g], dim=1)  # [B, T+Lq, d]
        pad = torch.cat([torch.zeros(b, t, dtype=torch.bool, device=x.device), ~q_mask], dim=1)
        out = self.encoder(seq, src_key_padding_mask=pad)[:, :t]  # [B, T, d]
        return self.out_proj(self.norm(out))  # [B, T, D_out]


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (std floored at 1e-6) of ``x`` ``[N, T, D]`` -> ``[D]``."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-6).astype(np.float32)


@dataclass
class ImputerData:
    """Questions of one split, by index: question ``i`` asks about video ``video_pos[i]``
    (row of ``audio``/``visual``) with text ``text_pos[i]`` (row of ``q``/``q_mask``)."""

    audio: np.ndarray  # [V, T, Da]
    visual: np.ndarray  # [V, T, Dv]
    q: np.ndarray  # [Nt, Lq, Dt] question tokens
    q_mask: np.ndarray  # [Nt, Lq] True = real token
    video_pos: np.ndarray  # [Nq] int64
    text_pos: np.ndarray  # [Nq] int64

    def feats(self, modality: str) -> np.ndarray:
        return self.audio if modality == "audio" else self.visual


def imputer_data(tensors: AVQATensors, split: str) -> ImputerData:
    """The questions of ``split`` in ``ImputerData`` layout (features of every video); the S
    tokens of a segment are concatenated (``[V, T, S * D]``): the imputer generates whole
    segments."""
    rows = tensors.indices(split)
    return ImputerData(
        audio=tensors.audio.flatten(2).numpy(),
        visual=tensors.visual.flatten(2).numpy(),
        q=tensors.question.numpy(),
        q_mask=tensors.question_mask.numpy(),
        video_pos=tensors.video[rows].numpy(),
        text_pos=tensors.text[rows].numpy(),
    )


def _normalise(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(((x - stats[0]) / stats[1]).astype(np.float32))


def train_generative_imputer(
    train: ImputerData, params: dict[str, Any], seed: int, val: ImputerData | None = None
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Train one imputer per direction with MSE in standardised feature space.

    Inputs and targets are standardised per dimension with the training videos' statistics
    (stored in the checkpoint); one sample per training *question* (the question conditions
    the generation).

    Args:
        train: the training split (only ``train.video_pos`` videos' features are used).
        params: ``evaluate.generative`` (d_model, layers, heads, dropout, epochs, batch_size,
            lr, weight_decay, patience; optional samples_per_epoch: train on a fresh draw of
            that many questions per epoch instead of all of them).
        seed: seeds initialisation and batch order.
        val: optional validation split: per-epoch validation MSE; the best epoch's weights are
            kept and training stops after ``patience`` epochs without improvement (0: never).

    Returns:
        ``(checkpoint, history)``: checkpoint ``{"config": {...}, "state_dicts": {direction:
        state_dict}, "norm": {modality: {"mean", "std"}}}``, history
        ``{"<dir>_train_mse": [...], "<dir>_val_mse": [...]}`` (standardised units).
    """
    if len(train.video_pos) == 0:
        raise ValueError("no training question for the generative imputer")
    draw = params.get("samples_per_epoch")
    if draw is not None and int(draw) < 1:  # as for mix / pretrain: null (all) or a positive draw
        raise ValueError(f"evaluate.generative.samples_per_epoch must be >= 1 or null, got {draw}")
    used = np.unique(train.video_pos)
    norm = {m: _stats(train.feats(m)[used]) for m in MODALITIES}
    segments = train.audio.shape[1]
    configs, states, history = {}, {}, {}
    for d_i, (direction, (avl, miss)) in enumerate(DIRECTIONS.items()):
        torch.manual_seed(seed + d_i)
        gen = torch.Generator().manual_seed(seed + d_i)
        cfg = ImputerConfig(
            d_in=train.feats(avl).shape[-1],
            d_out=train.feats(miss).shape[-1],
            d_text=train.q.shape[-1],
            segments=segments,
            d_model=int(params["d_model"]),
            layers=int(params["layers"]),
            heads=int(params["heads"]),
            dropout=float(params["dropout"]),
        )
        net = GenerativeImputer(cfg)
        opt = torch.optim.AdamW(
            net.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
        )
        x_avl, x_miss = (
            _normalise(train.feats(avl), norm[avl]),
            _normalise(train.feats(miss), norm[miss]),
        )
        q, qm = torch.from_numpy(train.q), torch.from_numpy(train.q_mask)
        vpos, tpos = torch.from_numpy(train.video_pos), torch.from_numpy(train.text_pos)
        tr_hist, va_hist = [], []
        bs = int(params["batch_size"])
        patience = int(params.get("patience", 0) or 0)
        best, best_state, bad = math.inf, None, 0
        for _ in tqdm(
            range(int(params["epochs"])), desc=f"generative imputer {direction}", leave=False
        ):
            net.train()
            perm = torch.randperm(len(vpos), generator=gen)
            if draw is not None:  # a fresh draw of that many questions per epoch
                perm = perm[: int(draw)]
            total = 0.0
            for start in range(0, len(perm), bs):
                idx = perm[start : start + bs]
                v, t = vpos[idx], tpos[idx]
                pred = net(x_avl[v], q[t], qm[t])
                loss = nn.functional.mse_loss(pred, x_miss[v])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            tr_hist.append(_finite(total / len(perm), f"generative imputer {direction} loss"))
            if val is not None and len(val.video_pos):
                va_hist.append(_mse(net, val, avl, miss, norm, bs))
                # keep the best validation epoch; stop after `patience` epochs without progress
                if va_hist[-1] < best:
                    best, bad = va_hist[-1], 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                    if patience and bad >= patience:
                        break
        if best_state is not None:
            net.load_state_dict(best_state)
        history[f"{direction}_train_mse"] = tr_hist
        if va_hist:
            history[f"{direction}_val_mse"] = va_hist
        configs[direction] = asdict(cfg)
        states[direction] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        logger.info(
            "generative imputer %s: train MSE %.4f%s",
            direction,
            tr_hist[-1],
            f", val MSE {va_hist[-1]:.4f}" if va_hist else "",
        )
    ckpt = {
        "config": {"directions": configs, "params": dict(params), "seed": int(seed)},
        "state_dicts": states,
        "norm": {
            m: {"mean": torch.from_numpy(mu), "std": torch.from_numpy(sd)}
            for m, (mu, sd) in norm.items()
        },
    }
    return ckpt, history


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise FloatingPointError(f"{what} is {x}: lower evaluate.generative.lr")
    return float(x)


@torch.no_grad()
def _mse(
    net: GenerativeImputer,
    data: ImputerData,
    avl: str,
    miss: str,
    norm: dict[str, tuple[np.ndarray, np.ndarray]],
    bs: int,
) -> float:
    """Mean squared error (standardised units) of ``net`` over ``data``'s questions."""
    net.eval()
    x_avl, x_miss = _normalise(data.feats(avl), norm[avl]), _normalise(data.feats(miss), norm[miss])
    total = 0.0
    for start in range(0, len(data.video_pos), bs):
        v = torch.from_numpy(data.video_pos[start : start + bs])
        t = torch.from_numpy(data.text_pos[start : start + bs])
        pred = net(
            x_avl[v], torch.from_numpy(data.q[t.numpy()]), torch.from_numpy(data.q_mask[t.numpy()])
        )
        total += float(nn.functional.mse_loss(pred, x_miss[v], reduction="sum"))
    return total / (len(data.video_pos) * x_miss.shape[1] * x_miss.shape[2])


def load_imputer(ckpt: dict[str, Any], direction: str) -> GenerativeImputer:
    """Rebuild the ``direction`` network of a :func:`train_generative_imputer` checkpoint."""
    cfg = ImputerConfig(**ckpt["config"]["directions"][direction])
    net = GenerativeImputer(cfg)
    net.load_state_dict(ckpt["state_dicts"][direction])
    return net.eval()


def check_imputer_dims(ckpt: dict[str, Any], dims: dict[str, int]) -> None:
    """Raise if the imputer was trained on other feature widths than ``dims``
    (``d_audio``, ``d_visual``, ``d_text``)."""
    for direction, (avl, miss) in DIRECTIONS.items():
        cfg = ckpt["config"]["directions"][direction]
        got = {"d_in": dims[f"d_{avl}"], "d_out": dims[f"d_{miss}"], "d_text": dims["d_text"]}
        diff = {k: (cfg[k], v) for k, v in got.items() if cfg[k] != v}
        if diff:
            raise ValueError(
                f"generative imputer {direction} was trained on other feature widths "
                f"(trained, data): {diff}; re-run the variants pipeline's "
                "train_generative_imputers node on these features"
            )


@torch.no_grad()
def impute(
    ckpt: dict[str, Any],
    missing: str,
    data: ImputerData,
    rows: np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Generated raw features ``[N, T, D_miss]`` of the ``missing`` modality (audio or visual)
    for the questions ``rows`` of ``data`` (default all), mapped back to raw feature space."""
    direction = DIRECTION_FOR_MISSING[missing]
    avl = DIRECTIONS[direction][0]
    check_imputer_dims(
        ckpt,
        {
            "d_audio": data.audio.shape[-1],
            "d_visual": data.visual.shape[-1],
            "d_text": data.q.shape[-1],
        },
    )
    net = load_imputer(ckpt, direction)
    rows = np.arange(len(data.video_pos)) if rows is None else np.asarray(rows)
    norm = {
        m: (ckpt["norm"][m]["mean"].numpy(), ckpt["norm"][m]["std"].numpy()) for m in MODALITIES
    }
    x_avl = data.feats(avl)
    out = np.zeros((len(rows), x_avl.shape[1], net.cfg.d_out), np.float32)
    for start in range(0, len(rows), batch_size):
        r = rows[start : start + batch_size]
        v, t = data.video_pos[r], data.text_pos[r]
        pred = net(
            _normalise(x_avl[v], norm[avl]),
            torch.from_numpy(data.q[t]),
            torch.from_numpy(data.q_mask[t]),
        ).numpy()
        out[start : start + len(r)] = pred * norm[missing][1] + norm[missing][0]
    if not np.isfinite(out).all():
        raise FloatingPointError("generative imputer produced NaN/inf features")
    return out


class LoadedImputer:
    """A :func:`train_generative_imputer` checkpoint ready to generate batch by batch.

    ``generate`` maps raw available features ``[B, T, S_avl, D_avl]`` and question tokens to raw
    features of the missing modality ``[B, T, S_miss, D_miss]`` (the shape of ``like``).
    """

    def __init__(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("skipped") or not ckpt.get("state_dicts"):
            raise ValueError("the generative imputer was not trained (skipped checkpoint)")
        self.nets = {d: load_imputer(ckpt, d) for d in DIRECTIONS}
        self.norm = {m: (ckpt["norm"][m]["mean"], ckpt["norm"][m]["std"]) for m in MODALITIES}

    def to(self, device: torch.device | str) -> LoadedImputer:
        self.nets = {d: n.to(device) for d, n in self.nets.items()}
        self.norm = {m: (a.to(device), b.to(device)) for m, (a, b) in self.norm.items()}
        return self

    @torch.no_grad()
    def generate(self, missing: str, x_avl: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor,
                 like: torch.Size) -> torch.Tensor:  # fmt: skip
        direction = DIRECTION_FOR_MISSING[missing]
        avl = DIRECTIONS[direction][0]
        mu, sd = self.norm[avl]
        x = (x_avl.flatten(2) - mu) / sd  # [B, T, S_avl * D_avl], standardised
        out = self.nets[direction](x, q, q_mask)  # [B, T, S_miss * D_miss], standardised
        mu, sd = self.norm[missing]
        return (out * sd + mu).view(x_avl.shape[0], x_avl.shape[1], *like)
