"""The unified audio-visual semantic space of Cross-Modal Retrieval (paper section 3.2).

The paper embeds memory-bank keys and queries with ImageBind. Its weights are not available
here, so the default space is learned: one projection head per modality maps the time-pooled
raw features of a video into a shared ``d``-dimensional unit sphere, and the two heads are
trained with the symmetric contrastive (InfoNCE, CLIP-style) objective on the training split,
so that a video's audio and visual embeddings are each other's nearest neighbour. Cosine
similarity in this space is eq. (1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class JointSpaceConfig:
    """Shape of the two heads (stored in the checkpoint; the heads are rebuilt from it)."""

    audio_dim: int  # Da, raw audio feature size
    visual_dim: int  # Dv, raw visual feature size
    dim: int = 256  # d, unified space size
    hidden: int = 512  # hidden width of each head; 0 = a single linear map
    dropout: float = 0.1
    temperature: float = 0.07  # tau of the InfoNCE softmax

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModalityProjection(nn.Module):
    """Time-pooled features ``[B, D]`` -> unit vectors ``[B, d]`` (one per modality).

    Inputs are standardised with the training split's per-feature mean and std (buffers, so
    they travel with the ``state_dict``), then mapped by a small MLP.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),  # [B, D] -> [B, H]
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, dim),  # [B, H] -> [B, d]
            )
        else:
            self.net = nn.Linear(in_dim, dim)

    def set_statistics(self, x: torch.Tensor) -> None:
        """Standardisation statistics from the training features ``x`` ``[N, D]``."""
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net((x - self.mean) / self.std)  # [B, d]
        return F.normalize(z, dim=-1)


class JointSpace(nn.Module):
    """The two heads: audio keys/queries and visual keys/queries in one space."""

    def __init__(self, config: JointSpaceConfig) -> None:
        super().__init__()
        self.config = config
        self.audio = ModalityProjection(config.audio_dim, config.dim, config.hidden, config.dropout)
        self.visual = ModalityProjection(
            config.visual_dim, config.dim, config.hidden, config.dropout
        )

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled audio ``[B, Da]`` and visual ``[B, Dv]`` -> ``(za [B, d], zv [B, d])``."""
        return self.audio(a), self.visual(v)


def info_nce(za: torch.Tensor, zv: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``za`` must pick row ``i`` of ``zv`` and vice versa.

    ``logits[i, j] = cos(za_i, zv_j) / tau`` (eq. 1 over unit vectors); the loss is the mean of
    the audio->visual and visual->audio cross-entropies with the diagonal as target.
    """
    logits = za @ zv.T / temperature  # [B, B]
    target = torch.arange(len(za), device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def recall_at_k(queries: np.ndarray, keys: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """Share of queries ``i`` whose paired key ``i`` is among their top-k by cosine."""
    sims = queries @ keys.T  # [N, N], unit vectors
    # rank of the true pair = number of keys scoring strictly higher
    rank = (sims > np.diag(sims)[:, None]).sum(1)
    return {k: float((rank < k).mean()) for k in ks}


def fit_joint_space(
    audio: np.ndarray,
    visual: np.ndarray,
    val_audio: np.ndarray,
    val_visual: np.ndarray,
    config: JointSpaceConfig,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    keep: str,
    seed: int,
) -> tuple[JointSpace, dict[str, list[float]]]:
    """Fit the heads on paired pooled features ``audio [N, Da]`` / ``visual [N, Dv]``.

    Returns the model (eval mode) and per-epoch histories: ``train_loss``, and when there are
    at least two validation pairs ``val_loss`` and ``val_{a2v,v2a}_recall_at_{1,5}``. ``keep`` is
    ``last`` (final weights) or ``best_val`` (epoch with the best mean val recall@1).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = JointSpace(config)
    a = torch.as_tensor(audio, dtype=torch.float32)
    v = torch.as_tensor(visual, dtype=torch.float32)
    model.audio.set_statistics(a)
    model.visual.set_statistics(v)
    va = torch.as_tensor(val_audio, dtype=torch.float32)
    vv = torch.as_tensor(val_visual, dtype=torch.float32)
    has_val = len(va) >= 2
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    history: dict[str, list[float]] = {"train_loss": []}
    best_score, best_state = -1.0, None
    for _ in tqdm(range(epochs), desc="joint space (InfoNCE)", leave=False):
        model.train()
        order = torch.randperm(len(a), generator=gen)
        losses = []
        for start in range(0, len(a), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # one pair has no negatives
                continue
            za, zv = model(a[idx], v[idx])
            loss = info_nce(za, zv, config.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history["train_loss"].append(float(np.mean(losses)))
        if not has_val:
            continue
        model.eval()
        with torch.no_grad():
            za, zv = model(va, vv)
            history.setdefault("val_loss", []).append(info_nce(za, zv, config.temperature).item())
            a2v = recall_at_k(za.numpy(), zv.numpy(), (1, 5))
            v2a = recall_at_k(zv.numpy(), za.numpy(), (1, 5))
        for k in (1, 5):
            history.setdefault(f"val_a2v_recall_at_{k}", []).append(a2v[k])
            history.setdefault(f"val_v2a_recall_at_{k}", []).append(v2a[k])
        score = 0.5 * (a2v[1] + v2a[1])
        if keep == "best_val" and score > best_score:
            best_score = score
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def pool_tokens(x: np.ndarray) -> np.ndarray:
    """Token features ``[N, T, S, D]`` -> the heads' input ``[N, 2D]``: ``[mean | std]`` over
    time and place (the keys of the unified space are pooled; the memory bank keeps tokens)."""
    flat = np.asarray(x).reshape(len(x), -1, x.shape[-1])
    return np.concatenate([flat.mean(1), flat.std(1)], 1).astype(np.float32)


@torch.no_grad()
def embed(head: ModalityProjection, pooled: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Pooled features ``[N, D]`` -> unit vectors ``[N, d]`` (float32)."""
    head.eval()
    out = [
        head(torch.as_tensor(pooled[i : i + batch_size], dtype=torch.float32)).numpy()
        for i in range(0, len(pooled), batch_size)
    ]
    dim = (
        head.net[-1].out_features if isinstance(head.net, nn.Sequential) else head.net.out_features
    )
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def load_joint_space(checkpoint: dict[str, Any]) -> JointSpace:
    """Rebuild the heads from a ``joint_space`` checkpoint (``TorchCheckpointDataset``)."""
    if "joint_space" not in checkpoint.get("state_dicts", {}):
        raise ValueError(
            "the joint_space checkpoint holds no trained heads (it was written with "
            "build_index.embeddings.source=table): re-run train_joint_space with source=learned"
        )
    model = JointSpace(JointSpaceConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dicts"]["joint_space"])
    return model.eval()
