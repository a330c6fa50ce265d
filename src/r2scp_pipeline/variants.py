"""Trained variants: every method and every ablation is a model of its own.

A **variant** is a recovery method (``recovery.REGISTRY``: R2ScP, the baselines, the oracle and
random-retrieval brackets, plug-ins) or an ablation of R2ScP (``evaluate.ablations``: R2ScP's
recovery with parameter overrides). Each variant trains its own stage II (and stage I when
it changes stage I) per seed, under the same training-time missingness and budget
(``pipelines/variants``: one namespaced pipeline per variant); ``evaluate`` only reads the
trained artefacts.

Kedro builds its pipelines before it reads parameters, so the set of variant *names* is fixed
in code: every registered recovery plus :data:`ABLATIONS`; ``evaluate.ablations`` defines what
each ablation changes (the two are checked against each other), and ``evaluate.methods``
chooses which variants an environment trains and evaluates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .imputer import LoadedImputer
from .model import EXPERT_FIELDS
from .recovery import REGISTRY, Recovery
from .recovery import build as build_recovery

#: The ablation variants (Tables 2-3 and the retrained n / k values of Fig. 4); what each one
#: overrides is the parameter ``evaluate.ablations.<name>``.
ABLATIONS: tuple[str, ...] = (
    "no_cmr", "no_cap", "no_cmr_cap", "no_stage1", "no_rank_loss", "no_mixing", "no_grounding",
    "no_audio_pretraining", "no_grounding_attributes", "no_grounding_playing", "no_votes",
    "sweep_n1", "sweep_n5", "sweep_k0", "sweep_k1", "sweep_k10",
)  # fmt: skip
#: What an ablation may override.
BLOCKS: tuple[str, ...] = ("model", "pretrain", "mix")


def variant_names() -> list[str]:
    """Every variant's name (= its Kedro namespace): the recoveries, then the ablations."""
    clash = sorted(set(REGISTRY) & set(ABLATIONS))
    if clash:
        raise ValueError(f"recovery methods {clash} have the name of an ablation")
    return [*REGISTRY, *ABLATIONS]


def merge(base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    """Deep merge of parameter dicts (``over`` wins)."""
    out = copy.deepcopy(dict(base or {}))
    for k, v in (over or {}).items():
        both = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = merge(out[k], v) if both else copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class VariantSpec:
    """What one variant trains: its recovery and its overrides of model / pretrain / mix."""

    name: str
    recovery: str
    description: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_ablation(self) -> bool:
        return self.name in ABLATIONS

    def params(self, block: str, base: dict[str, Any] | None) -> dict[str, Any]:
        """``base`` (``params:<block>``) with this variant's overrides of ``block``."""
        return merge(base, self.overrides.get(block))

    @property
    def changes_stage_one(self) -> bool:
        """Whether the experts differ from the shared stage I (then stage I is retrained):
        stage I reads only the expert fields, dropout and the pretrain block."""
        model_over = set(self.overrides.get("model") or {})
        return bool(self.overrides.get("pretrain")) or bool(
            model_over & (set(EXPERT_FIELDS) | {"dropout"})
        )

    def changes(self) -> str:
        """The overrides in one line, e.g. ``model.use_cap=False, mix.rank_loss_weight=0.0``."""
        flat = [f"{b}.{k}={v}" for b in BLOCKS for k, v in (self.overrides.get(b) or {}).items()]
        return ", ".join(flat) or "none"


def variant_spec(name: str, ablations: dict[str, dict[str, Any]]) -> VariantSpec:
    """The spec of variant ``name``: a recovery with its ``trains_with`` overrides, or an
    ablation (R2ScP's recovery with ``evaluate.ablations.<name>``)."""
    if name in REGISTRY:
        cls = REGISTRY[name]
        return VariantSpec(name, name, cls.description, copy.deepcopy(cls.trains_with))
    if name in ablations:
        spec = ablations[name]
        over = {b: dict(spec.get(b) or {}) for b in BLOCKS if spec.get(b)}
        return VariantSpec(name, "r2scp", str(spec.get("description") or name), over)
    raise ValueError(
        f"unknown variant {name!r}: not a registered recovery ({sorted(REGISTRY)}) nor an "
        f"ablation of evaluate.ablations ({sorted(ablations)})"
    )


def seed_key(seed: int) -> str:
    """How a seed names its model in a variant's artefact (string keys survive every format)."""
    return f"seed_{int(seed)}"


def recovery_for(name: str, seed: int, generative_imputers: dict[str, Any] | None) -> Recovery:
    """Recovery ``name`` as a model trained with ``seed`` uses it: with that seed's generative
    imputer (``generative_imputers``: the ``variants`` pipeline's ``{"models": {seed_<s>:
    checkpoint}}``) when the method needs one."""
    imputer = None
    if REGISTRY[name].needs_imputer:
        models = (generative_imputers or {}).get("models", {})
        if seed_key(seed) not in models:
            raise ValueError(f"recovery {name!r} needs the generative imputer of seed {seed}; "
                             "run `kedro run --pipelines=variants`")  # fmt: skip
        imputer = LoadedImputer(models[seed_key(seed)])
    return build_recovery(name, seed=seed, imputer=imputer)


__all__ = ["ABLATIONS", "BLOCKS", "VariantSpec", "merge", "recovery_for", "seed_key", "variant_names",
           "variant_spec"]  # fmt: skip
