"""One harness for every method: same features, same masks, same trained network.

A *method* is a trained model plus a way to treat the videos whose modality is missing:

=============  ===============================  ============================================
method         model                            the missing modality of a masked video
=============  ===============================  ============================================
r2scp          ``r2scp_model``                  retrieved (CMR, eq. 4) and purified (CAP)
zero_fill      ``r2scp_model``                  a zero sequence, then CAP, in place of CMR
mean_fill      ``r2scp_model``                  the training-mean sequence, then CAP
generative     ``r2scp_model``                  ``G(f_avl, q)`` (baselines.py), then CAP
router_mask    ``r2scp_model``                  skipped: its router logit is -inf (SimMLM)
<ablation>     that ablation's own checkpoint   whatever it was trained with
=============  ===============================  ============================================

Only the masked videos change: videos that keep both modalities are answered exactly as the
model answers them normally (with the fill baselines, a complete video still gets its
retrieved tokens appended, ``complete_mode: append``), so on the ``complete`` setting every
baseline equals R2ScP. ``r2scp``, ``router_mask`` and the ablations go through
``training.predict``; the fill baselines through :func:`predict_with_fill`, which is
``training.predict`` with the masked rows' candidate sequence swapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from r2scp_pipeline.data import AVQATensors
from r2scp_pipeline.model import R2ScP
from r2scp_pipeline.training import ExpertCache, Predictions, batch_encodings, predict
from r2scp_pipeline.vocabulary import MISSING_CODES

from .config import FILL_METHODS


@dataclass
class Fill:
    """The replacement of a missing modality: ``kind`` zero / mean / features; ``features``
    ``[Q_split, T, D_m]`` raw features per question of the split (generative)."""

    kind: str
    features: np.ndarray | None = None


def video_mask(tensors: AVQATensors, lookup: dict[str, bool], split: str) -> np.ndarray:
    """Per-video bool mask aligned with ``tensors.video_ids`` from a ``{video_id: missing}``
    lookup; every video of ``split`` must be in the lookup."""
    split_videos = {
        tensors.video_ids[i] for i in np.unique(tensors.video[tensors.indices(split)].numpy())
    }
    absent = sorted(split_videos - set(lookup))
    if absent:
        raise ValueError(
            f"missing_masks has no row for {len(absent)} {split} videos (e.g. {absent[:3]}): "
            "it was drawn for other data; re-run the evaluate pipeline's draw_missing_masks node"
        )
    return np.array([bool(lookup.get(v, False)) for v in tensors.video_ids], dtype=bool)


@torch.no_grad()
def predict_with_fill(
    model: R2ScP,
    tensors: AVQATensors,
    split: str,
    missing: str,
    vmask: np.ndarray,
    fill: Fill,
    cache: ExpertCache,
    batch_size: int = 256,
) -> Predictions:
    """``training.predict`` where the masked rows' recovered candidate is ``fill`` instead of
    the model's retrieval: ``H_miss = E_m(Phi_m(fill))`` (eq. 4 with the fill as the single
    candidate), purified by CAP as the model was trained (eq. 9)."""
    model.eval()
    device = next(model.parameters()).device
    rows = tensors.indices(split)
    code = np.zeros(len(rows), np.int8)
    if missing != "none":
        code[tensors.video_mask_to_questions(vmask, split)] = MISSING_CODES[missing]
    if fill.kind == "features" and (fill.features is None or len(fill.features) != len(rows)):
        raise ValueError(f"fill features must have one row per question of split {split!r}")
    own_fill = "retrieval" if model.cfg.use_cmr else "zero"
    logits, alphas = [], []
    for i in range(0, len(rows), batch_size):
        r = rows[i : i + batch_size]
        miss = torch.as_tensor(code[i : i + batch_size], dtype=torch.long, device=device)
        enc = batch_encodings(model, tensors, r, device, cache, own_fill)
        sel = miss > 0
        if missing != "none" and bool(sel.any()):
            if fill.kind in ("zero", "mean"):
                rep = cache.fill[(missing, fill.kind)].expand(int(sel.sum()), -1, -1)
            elif fill.kind == "features":
                x = torch.from_numpy(fill.features[i : i + batch_size][sel.cpu().numpy()])
                rep = model.encode(missing, x.to(device))  # E_m(Phi_m(G(f_avl, q))) [b, L, d]
            else:
                raise ValueError(f"unknown fill {fill.kind!r}")
            cand = enc.cand[missing].clone()
            cand[sel] = rep
            enc = enc.with_cand(missing, cand)
        out, alpha = model.fuse(enc, miss)
        logits.append(out.float().cpu())
        alphas.append(alpha.float().cpu())
    lg = torch.cat(logits).numpy()
    return Predictions(
        question_id=tensors.question_id[rows],
        logits=lg,
        pred=lg.argmax(1).astype(np.int64),
        answer=tensors.answer[rows].numpy(),
        missing=code,
        expert_weights=torch.cat(alphas).numpy(),
    )


def run_method(
    method: str,
    model: R2ScP,
    tensors: AVQATensors,
    split: str,
    missing: str,
    vmask: np.ndarray,
    cache: ExpertCache,
    fills: dict[str, Fill],
    batch_size: int,
    n_retrieve: int | None = None,
    k_purge: int | None = None,
) -> Predictions:
    """Answer ``split`` with ``method`` (module docstring) when ``missing`` is absent from the
    videos of ``vmask``. ``fills[method]`` gives a fill baseline's :class:`Fill`."""
    if method in FILL_METHODS:
        if missing == "none" or not vmask.any():
            return predict(model, tensors, split, "none", cache=cache, batch_size=batch_size)
        return predict_with_fill(
            model, tensors, split, missing, vmask, fills[method], cache, batch_size
        )
    return predict(
        model,
        tensors,
        split,
        missing,
        vmask if missing != "none" else None,
        mask_level="video",
        mask_missing_expert=method == "router_mask",
        cache=cache,
        batch_size=batch_size,
        n_retrieve=n_retrieve,
        k_purge=k_purge,
    )


__all__ = ["Fill", "predict_with_fill", "run_method", "video_mask"]
