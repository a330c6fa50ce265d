"""Recovery methods: what goes into the slot of a missing modality, registered by name.

A method is one :class:`Recovery` subclass. Given the batch (:class:`Source`: the available
features, the question, the retrieved neighbours, the frozen experts) it returns the missing
modality's sequence ``H_miss [B, L_m, d]`` in the expert's output space; the rest of the model
(CAP when the method trains with ``model.use_cap``, readouts, router, decoder) is shared. Every
method trains its own stage II with its own fill (``pipelines/variants``), under the same
training-time missingness, budget and seeds, and is evaluated by the same code.

=================  =======================================================================
name               the missing modality's sequence
=================  =======================================================================
r2scp              mean of the top-n retrieved neighbours (CMR, eq. 4), purified by CAP
zero_fill          the expert's encoding of a zero sequence
mean_fill          the expert's encoding of the training-mean sequence
generative         the expert's encoding of ``G(f_avl, q)`` (``imputer.py``)
router_mask        nothing: the expert's router logit is -inf (SimMLM-style masking)
oracle             the missing modality's *true* features through the same path (upper bound)
random_retrieval   mean of n random memory-bank entries through CMR + CAP (is it *retrieval*?)
neighbour_mean     mean of the top-n retrieved neighbours, no purification (the worked
                   plug-in example of docs/evaluate.md; the same model as ablation no_cap)
=================  =======================================================================

Adding one: subclass :class:`Recovery`, set ``name`` / ``description`` (and ``trains_with``
when it trains with other parameters than R2ScP's), implement :meth:`Recovery.fill`, decorate
with :func:`register`, and add the name to ``evaluate.methods``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .model import R2ScP
from .vocabulary import OTHER

#: name -> class of every registered recovery method (built-ins below, plug-ins on import)
REGISTRY: dict[str, type[Recovery]] = {}

#: What a baseline from the literature trains with: its fill, no CAP, no appended recovery on
#: complete samples, and the task loss only (the ranking loss of eqs. 13-15 is R2ScP's own).
BASELINE_TRAINING: dict[str, dict[str, Any]] = {
    "model": {"use_cap": False, "complete_mode": "off"},
    "mix": {"rank_loss_weight": 0.0},
}


@dataclass
class Source:
    """What a recovery method may read for one batch of questions.

    ``h[m]`` [B, L_m, d]: the experts' encodings of the batch's own features (a missing
    modality's own encoding is only for the oracle). ``cache``: the frozen experts' cache
    (``training.ExpertCache``) or ``None`` (experts trained in stage II: encode on the fly).
    """

    model: R2ScP
    tensors: Any  # data.AVQATensors
    rows: np.ndarray  # [B] question rows
    video: torch.Tensor  # [B] video rows (CPU)
    device: torch.device
    cache: Any  # training.ExpertCache | None
    n: int  # n of eq. 4
    h: dict[str, torch.Tensor]

    def select(self, idx: torch.Tensor) -> Source:
        """The same batch restricted to positions ``idx`` [B'] (CPU or device)."""
        pos = idx.cpu()
        return dataclasses.replace(self, rows=np.asarray(self.rows)[pos.numpy()],
                                   video=self.video[pos],
                                   h={m: v[idx.to(v.device)] for m, v in self.h.items()})  # fmt: skip

    def retrieved(self, modality: str, bank_rows: torch.Tensor) -> torch.Tensor:
        """Encodings of memory-bank rows ``[B, n]`` of ``modality`` -> ``[B, n, L_m, d]``."""
        if self.cache is not None:
            return self.cache.bank[modality][bank_rows.to(self.device)]
        x = self.tensors.bank[modality][bank_rows]
        return self.model.encode_retrieved(modality, x.to(self.device))

    def neighbours(self, modality: str, polarity: str = "pos") -> torch.Tensor:
        """The top-``n`` (``pos``) or bottom-``n`` (``neg``, R- of eq. 14) bank rows ``[B, n]``."""
        table = self.tensors.neighbors.get((modality, polarity))
        if table is None:
            raise ValueError("retrieval needs the neighbors table and the memory banks")
        if table.shape[1] < self.n:
            raise ValueError(
                f"n_retrieve = {self.n} but the neighbors table holds {table.shape[1]} per video"
            )
        return table[self.video, : self.n]

    def constant(self, modality: str, kind: str) -> torch.Tensor:
        """The expert's encoding of a ``zero`` or training-``mean`` sequence ``[B, L_m, d]``."""
        if self.cache is not None:
            enc = self.cache.fill[(modality, kind)]
        else:
            x = self.tensors.train_mean(modality)
            x = x if kind == "mean" else torch.zeros_like(x)
            enc = self.model.encode(modality, x.to(self.device)[None])[0]
        return enc.expand(len(self.rows), *enc.shape)

    def raw(self, modality: str) -> torch.Tensor:
        """Raw features of the batch's videos ``[B, T, S_m, D_m]``."""
        return self.tensors.features(modality)[self.video].to(self.device)

    def question(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw question tokens ``[B, Lq, Dt]`` and their mask ``[B, Lq]``."""
        t = self.tensors.text[self.rows]
        return (self.tensors.question[t].to(self.device),
                self.tensors.question_mask[t].to(self.device))  # fmt: skip


class Recovery:
    """One way to fill a missing modality (module docstring). Subclasses set the class
    attributes and implement :meth:`fill`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: parameter overrides this method trains with, deep-merged over params:model / params:mix
    trains_with: ClassVar[dict[str, dict[str, Any]]] = {}
    #: router masking: the missing expert's logit is -inf, alpha renormalises over the others
    mask_expert: ClassVar[bool] = False
    #: needs the trained generative imputer (``imputer.LoadedImputer``)
    needs_imputer: ClassVar[bool] = False

    def __init__(self, seed: int = 0, imputer: Any = None) -> None:
        self.seed, self.imputer = seed, imputer
        if self.needs_imputer and imputer is None:
            raise ValueError(f"recovery {self.name!r} needs a trained generative imputer")

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        """``H_miss`` of ``modality`` for every row of the batch: ``[B, L_m, d]``."""
        raise NotImplementedError

    def has_negative(self, model: R2ScP) -> bool:
        """Whether :meth:`negative` gives an R- for L_rank- (eq. 14) with this model."""
        return False

    def negative(self, src: Source, modality: str) -> torch.Tensor | None:
        """A deliberately bad fill for L_rank- (eq. 14), or ``None``: then only L_rank+ (eq. 13)
        applies when the ranking loss is on."""
        return None

    def extra_loss(self, src: Source, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """An optional extra stage-II training loss (added to eq. 15), default none."""
        return None


def register(cls: type[Recovery]) -> type[Recovery]:
    """Class decorator: make ``cls`` available under ``cls.name`` (``evaluate.methods``)."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"recovery name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls
    return cls


def build(name: str, seed: int = 0, imputer: Any = None) -> Recovery:
    """The registered recovery ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown recovery method {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name](seed=seed, imputer=imputer)


# ---- built-in methods ----------------------------------------------------------------------
@register
class Retrieval(Recovery):
    name = "r2scp"
    description = "R2ScP: top-n retrieval (CMR) purified by CAP, ranking loss"

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        if not src.model.cfg.use_cmr:  # Table 2 "w/o CMR": CAP works on a zero fill
            return src.constant(modality, "zero")
        return src.model.cmr(src.retrieved(modality, src.neighbours(modality, "pos")), src.n)

    def has_negative(self, model: R2ScP) -> bool:
        return model.cfg.use_cmr

    def negative(self, src: Source, modality: str) -> torch.Tensor | None:
        if not self.has_negative(src.model):
            return None
        return src.model.cmr(src.retrieved(modality, src.neighbours(modality, "neg")), src.n)


@register
class ZeroFill(Recovery):
    name = "zero_fill"
    description = "zero features in the missing slot"
    trains_with = BASELINE_TRAINING

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        return src.constant(modality, "zero")


@register
class MeanFill(Recovery):
    name = "mean_fill"
    description = "training-mean features in the missing slot"
    trains_with = BASELINE_TRAINING

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        return src.constant(modality, "mean")


@register
class Generative(Recovery):
    name = "generative"
    description = "generative imputation G(f_avl, q), classifier trained on its output"
    trains_with = BASELINE_TRAINING
    needs_imputer = True

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        q, q_mask = src.question()
        like = src.tensors.features(modality).shape[2:]  # [S_m, D_m]
        x = self.imputer.generate(modality, src.raw(OTHER[modality]), q, q_mask, like)
        return src.model.encode(modality, x)  # E_m(Phi_m(G(f_avl, q))) [B, L_m, d]


@register
class RouterMask(Recovery):
    name = "router_mask"
    description = "missing expert masked in the router (SimMLM-style)"
    trains_with = BASELINE_TRAINING
    mask_expert = True

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        return src.constant(modality, "zero")  # never weighed: alpha of the expert is 0


@register
class Oracle(Retrieval):
    name = "oracle"
    description = "upper bound: the missing modality's true features through CAP"

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        return src.h[modality]


@register
class RandomRetrieval(Retrieval):
    name = "random_retrieval"
    description = "n random memory-bank entries through CMR + CAP"

    def __init__(self, seed: int = 0, imputer: Any = None) -> None:
        super().__init__(seed, imputer)
        self._tables: dict[tuple[str, int, int], torch.Tensor] = {}

    def table(self, src: Source, modality: str) -> torch.Tensor:
        """A fixed random draw of bank rows per video ``[V, n]`` (seeded, same every epoch)."""
        n_bank, n_videos = len(src.tensors.bank[modality]), len(src.tensors.video_ids)
        key = (modality, n_videos, src.n)
        if key not in self._tables:
            gen = torch.Generator().manual_seed(self.seed * 2 + (modality == "visual"))
            self._tables[key] = torch.randint(0, n_bank, (n_videos, src.n), generator=gen)
        return self._tables[key]

    def fill(self, src: Source, modality: str) -> torch.Tensor:
        rows = self.table(src, modality)[src.video]
        return src.model.cmr(src.retrieved(modality, rows), src.n)


@register
class NeighbourMean(Retrieval):
    """The worked plug-in example (docs/evaluate.md): retrieval without purification."""

    name = "neighbour_mean"
    description = "mean of the top-n retrieved neighbours, no CAP"
    trains_with = {"model": {"use_cap": False}}


__all__ = ["BASELINE_TRAINING", "REGISTRY", "Recovery", "Source", "build", "register"]
