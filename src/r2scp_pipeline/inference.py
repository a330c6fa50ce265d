"""Answer one question about one video with a trained R2ScP (``r2scp-pipeline predict``).

:func:`training.predict <r2scp_pipeline.training.predict>` answers a whole split;
:func:`predict_one` answers one row of an :class:`~r2scp_pipeline.data.AVQATensors` through the
same two steps (:func:`~r2scp_pipeline.training.batch_encodings`, then ``R2ScP.fuse``) and
also reports the router weights and which memory-bank videos were retrieved. Build the
one-question tensors with :func:`~r2scp_pipeline.data.build_tensors` (one ``qa_pairs`` row, the
video's features, the memory-bank rows of its neighbours, its ``neighbors`` rows).

Inference-time knobs are arguments, never module state: ``n_retrieve`` goes to
``batch_encodings``; ``k`` of CAP is a model field, set when the model is built
(``load_model(checkpoint, k_purge=k)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import avqa
from .data import AVQATensors
from .model import R2ScP
from .recovery import Recovery
from .training import predict
from .vocabulary import EXPERTS, MISSING_CODES, MODALITIES


@dataclass
class Answer:
    """One answered question.

    ``top``: the ``top_k`` most probable answers as ``(answer, probability)``, best first.
    ``alpha``: the router weights over the experts (audio, visual, text), summing to 1.
    ``neighbors``: per modality recovered by retrieval, the memory-bank video ids whose
    features were averaged (eq. 4), best first: only the missing modality when one is
    missing, both when complete and the model appends recoveries (``complete_mode: append``),
    none when the model fills without retrieval (``use_cmr: false``).
    """

    video_id: str
    question: str
    missing: str
    answer: str
    top: list[tuple[str, float]]
    alpha: dict[str, float]
    neighbors: dict[str, list[str]]
    n_retrieve: int
    k_purge: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["top"] = [{"answer": a, "probability": p} for a, p in self.top]
        return out


def recovered_modalities(model: R2ScP, missing: str) -> tuple[str, ...]:
    """The modalities whose retrieved sequence reaches the answer for this ``missing``."""
    cfg = model.cfg
    if not cfg.use_cmr:
        return ()
    if missing != "none":
        return (missing,)
    return MODALITIES if cfg.recovers_complete and cfg.mixing else ()


@torch.no_grad()
def predict_one(
    model: R2ScP,
    tensors: AVQATensors,
    row: int = 0,
    missing: str = "none",
    n_retrieve: int | None = None,
    top_k: int = 5,
    question: str = "",
    recovery: Recovery | str | None = None,
) -> Answer:
    """Answer question ``row`` of ``tensors`` with ``missing`` dropped and recovered.

    ``missing``: ``none`` | ``audio`` | ``visual``; the dropped modality's own features never
    reach the answer (its sequence is the recovery: CMR from the neighbours, then CAP).
    ``n_retrieve``: n of eq. 4 (default the model's). ``recovery``: the method that fills the
    missing modality (``recovery.py``; default R2ScP's retrieval, a zero fill for a model
    trained without CMR). Answered by ``training.predict``. ``question`` is only echoed.
    """
    if missing not in MISSING_CODES:
        raise ValueError(f"missing must be one of {list(MISSING_CODES)}, got {missing!r}")
    if model.cfg.answer_format == "choices":
        raise ValueError("this model answers multiple-choice (AVQA) questions; predict answers "
                         "open-ended MUSIC-AVQA questions only (no candidate answers to score)")  # fmt: skip
    if not 0 <= row < len(tensors.question_id):
        raise ValueError(f"row {row} is outside the {len(tensors.question_id)} questions")
    n = model.cfg.n_retrieve if n_retrieve is None else int(n_retrieve)
    device = next(model.parameters()).device
    p = predict(model, tensors, missing=missing, recovery=recovery, n_retrieve=n,
                device=device, rows=np.array([row], dtype=np.int64))  # fmt: skip
    logits, alpha = torch.from_numpy(p.logits), torch.from_numpy(p.expert_weights)
    probs = logits[0].float().softmax(-1).numpy()  # fuse gives log-probabilities w/o mixing
    best = np.argsort(-probs, kind="stable")[:top_k]
    video = int(tensors.video[row])
    neighbors = {
        m: [tensors.bank_ids[m][int(i)] for i in tensors.neighbors[(m, "pos")][video, :n]]
        for m in recovered_modalities(model, missing)
    }
    return Answer(
        video_id=tensors.video_ids[video],
        question=question,
        missing=missing,
        answer=avqa.ANSWERS[int(best[0])],
        top=[(avqa.ANSWERS[int(i)], float(probs[i])) for i in best],
        alpha={m: float(a) for m, a in zip(EXPERTS, alpha[0].cpu().tolist(), strict=True)},
        neighbors=neighbors,
        n_retrieve=n,
        k_purge=int(model.cfg.k_purge),
    )
