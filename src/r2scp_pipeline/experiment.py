"""The experiment parameters (``params:evaluate``), checked in full before any work is done.

Read by the ``variants`` pipeline (what to train, which seeds) and the ``evaluate`` pipeline.

:func:`check_parameters` turns ``params:evaluate`` into an :class:`EvalConfig` or raises one
``ValueError`` listing every problem, naming the parameter and what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .avqa import PAPER_POOLINGS
from .model import R2ScPConfig
from .recovery import REGISTRY
from .variants import ABLATIONS
from .vocabulary import SETTINGS

#: What an ablation may override: the ``model``, ``pretrain`` and ``mix`` parameter blocks.
ABLATION_BLOCKS: tuple[str, ...] = ("model", "pretrain", "mix")
#: Plot metrics the report accepts: (section, metric) of ``evaluation_results``.
PLOT_SECTIONS: tuple[str, ...] = ("paper", "overall", "modalities", "types")



class EvaluateConfigError(ValueError):
    """A bad ``evaluate`` parameter (the message names it and what to change)."""


@dataclass(frozen=True)
class EvalConfig:
    """Validated ``params:evaluate``."""

    split: str
    settings: tuple[str, ...]
    missing_rates: tuple[float, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    ablations: dict[str, dict[str, Any]]
    paper_columns: str
    batch_size: int
    generative: dict[str, Any]
    sweep: dict[str, Any]
    report: dict[str, Any]
    variant_checkpoint_dir: str | None
    threads: int | None
    seed: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ablation_methods(self) -> tuple[str, ...]:
        """The requested methods that are ablations (each needs its own trained model)."""
        return tuple(m for m in self.methods if m in self.ablations)

    def runs(self) -> list[tuple[str, float]]:
        """Every (setting, missing rate) evaluated; ``complete`` only at rate 0.0."""
        out: list[tuple[str, float]] = []
        for setting in self.settings:
            rates = (0.0,) if SETTINGS[setting] is None else self.missing_rates
            out += [(setting, r) for r in rates]
        return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_parameters(params: dict[str, Any], seed: int) -> EvalConfig:
    """Validate ``params:evaluate`` (and ``params:seed``); raise on the first bad value set.

    Checks: settings are known; missing rates are numbers in [0, 1]; methods are known
    (registered recoveries or keys of ``evaluate.ablations``, which must be among
    ``variants.ABLATIONS``); seeds are distinct integers; every ablation overrides something;
    ``paper_columns`` is a known pooling; batch size and the generative imputer's sizes are
    positive; the sweep's n and k lists are positive integers.
    """
    errors: list[str] = []
    p = dict(params or {})

    def need(key: str, default: Any = None) -> Any:
        if key not in p and default is None:
            errors.append(
                f"parameter evaluate.{key} is missing (see conf/base/parameters_evaluate.yml)"
            )
        return p.get(key, default)

    split = need("split")
    settings = list(need("settings") or [])
    rates = list(need("missing_rates") or [])
    methods = list(need("methods") or [])
    ablations = dict(p.get("ablations") or {})
    all_ablations = p.get("all_ablations", False)
    if not isinstance(all_ablations, bool):
        errors.append(f"evaluate.all_ablations={all_ablations!r} must be true or false")
    elif all_ablations:  # the full Tables 2-3 list in one switch (kedro run --params=...)
        methods += [a for a in ablations if a not in methods and not a.startswith("sweep_")]
    paper_columns = p.get("paper_columns", "audio_visual")
    batch_size = p.get("batch_size", 256)
    generative = dict(p.get("generative") or {})
    sweep = dict(p.get("sweep") or {"enabled": False})
    if sweep.get("retrain") is True:  # Fig. 4 retrained: every sweep_* ablation
        methods += [a for a in ablations if a not in methods and a.startswith("sweep_")]
    report = dict(p.get("report") or {})
    report.setdefault(
        "table_missing_rate", max(rates) if all(_is_number(r) for r in rates) and rates else 1.0
    )
    report.setdefault("plot_metric", ["paper", "Avg"])
    ablation_dir = p.get("variant_checkpoint_dir")
    seeds = p.get("seeds") or [seed]
    if not isinstance(seeds, list | tuple) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in seeds
    ):
        errors.append(f"evaluate.seeds={seeds!r} must be a list of integers (or null: [seed])")
        seeds = [seed]
    elif len(set(seeds)) != len(seeds):
        errors.append(f"evaluate.seeds {list(seeds)} has duplicates")
    threads = p.get("threads")
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        errors.append(f"evaluate.threads={threads!r} must be a positive integer or null")

    if not isinstance(split, str) or not split:
        errors.append(f"evaluate.split={split!r}: give a split name such as 'test'")
    if not settings:
        errors.append(f"evaluate.settings is empty: choose from {list(SETTINGS)}")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        errors.append(f"evaluate.settings has unknown settings {unknown}; known: {list(SETTINGS)}")
    if not rates:
        errors.append("evaluate.missing_rates is empty: give e.g. [0.3, 0.5, 0.7, 1.0]")
    bad_rates = [r for r in rates if not _is_number(r) or not 0.0 <= float(r) <= 1.0]
    if bad_rates:
        errors.append(
            f"evaluate.missing_rates has {bad_rates} outside [0, 1]: a missing rate is the "
            "fraction of test videos whose modality is dropped"
        )
    if len({float(r) for r in rates if _is_number(r)}) != len(rates):
        errors.append(f"evaluate.missing_rates {rates} has duplicates")
    model_fields = set(R2ScPConfig.__dataclass_fields__)
    unregistered = sorted(set(ablations) - set(ABLATIONS))
    if unregistered:
        errors.append(
            f"evaluate.ablations defines {unregistered}, which are not among the variants of "
            f"r2scp_pipeline/variants.py (ABLATIONS: {list(ABLATIONS)}): Kedro builds one "
            "namespaced pipeline per variant before it reads parameters, so add the name there"
        )
    for name, spec in ablations.items():
        if not isinstance(spec, dict):
            errors.append(
                f"evaluate.ablations.{name} must be a mapping (description, model, pretrain, mix)"
            )
            continue
        extra = sorted(set(spec) - {"description", *ABLATION_BLOCKS})
        if extra:
            errors.append(
                f"evaluate.ablations.{name} has unknown keys {extra}; an ablation "
                f"overrides only the blocks {list(ABLATION_BLOCKS)}"
            )
        for block in ABLATION_BLOCKS:
            if not isinstance(spec.get(block, {}), dict):
                errors.append(f"evaluate.ablations.{name}.{block} must be a mapping of overrides")
        bad_fields = sorted(set(spec.get("model", {}) or {}) - model_fields)
        if bad_fields:
            errors.append(
                f"evaluate.ablations.{name}.model has unknown model parameters {bad_fields}"
            )
        if not any(spec.get(b) for b in ABLATION_BLOCKS):
            errors.append(
                f"evaluate.ablations.{name} changes nothing: give model/pretrain/mix overrides"
            )
    known = list(REGISTRY) + list(ablations)
    if not methods:
        errors.append(f"evaluate.methods is empty: choose from {known}")
    unknown_m = [m for m in methods if m not in known]
    if unknown_m:
        errors.append(
            f"evaluate.methods has unknown methods {unknown_m}; known: {known} (a method is a "
            "registered recovery, recovery.py; an ablation is defined under evaluate.ablations)"
        )
    if len(set(methods)) != len(methods):
        errors.append(f"evaluate.methods {methods} has duplicates")
    if paper_columns not in PAPER_POOLINGS:
        errors.append(
            f"evaluate.paper_columns={paper_columns!r}; choose from {list(PAPER_POOLINGS)}"
        )
    if not isinstance(batch_size, int) or batch_size <= 0:
        errors.append(f"evaluate.batch_size={batch_size!r} must be a positive integer")
    if "generative" in methods:
        for key in ("d_model", "layers", "heads", "epochs", "batch_size"):
            v = generative.get(key)
            if not isinstance(v, int) or v <= 0:
                errors.append(f"evaluate.generative.{key}={v!r} must be a positive integer")
        pat = generative.get("patience", 0)
        if not isinstance(pat, int) or isinstance(pat, bool) or pat < 0:
            errors.append(f"evaluate.generative.patience={pat!r} must be an integer >= 0")
        for key in ("lr", "weight_decay", "dropout"):
            if not _is_number(generative.get(key)) or generative.get(key) < 0:
                errors.append(f"evaluate.generative.{key}={generative.get(key)!r} must be >= 0")
        if (
            isinstance(generative.get("d_model"), int)
            and isinstance(generative.get("heads"), int)
            and generative["heads"] > 0
            and generative["d_model"] % generative["heads"]
        ):
            errors.append(
                "evaluate.generative.d_model must be divisible by evaluate.generative.heads"
            )
    if sweep.get("enabled"):
        for key, least in (("n", 1), ("k", 0)):  # k = 0: no purification
            vals = sweep.get(key)
            if not vals or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= least for v in vals
            ):
                errors.append(
                    f"evaluate.sweep.{key}={vals!r} must be a list of integers >= {least}"
                )
        for s in sweep.get("settings", []):
            if s not in SETTINGS or SETTINGS[s] is None:
                errors.append(
                    f"evaluate.sweep.settings has {s!r}; use audio_missing / visual_missing"
                )
        r = sweep.get("missing_rate", 1.0)
        if not _is_number(r) or not 0.0 <= float(r) <= 1.0:
            errors.append(f"evaluate.sweep.missing_rate={r!r} is outside [0, 1]")
    good_rates = {float(r) for r in rates if _is_number(r)}
    if not _is_number(report["table_missing_rate"]) or (
        good_rates and float(report["table_missing_rate"]) not in good_rates
    ):
        errors.append(
            f"evaluate.report.table_missing_rate={report['table_missing_rate']!r} "
            f"must be one of evaluate.missing_rates {rates}"
        )
    nb = report.get("bootstrap", 2000)
    if not isinstance(nb, int) or isinstance(nb, bool) or nb < 100:
        errors.append(f"evaluate.report.bootstrap={nb!r} must be an integer >= 100")
    pm = report["plot_metric"]
    if not (isinstance(pm, list | tuple) and len(pm) == 2 and pm[0] in PLOT_SECTIONS):
        errors.append(
            f"evaluate.report.plot_metric={pm!r}: give [section, metric], section one "
            f"of {list(PLOT_SECTIONS)}, e.g. [paper, Avg] or [overall, Overall]"
        )
    if (
        sweep.get("enabled")
        and good_rates
        and _is_number(sweep.get("missing_rate", 1.0))
        and float(sweep.get("missing_rate", 1.0)) not in good_rates
    ):
        errors.append(
            "evaluate.sweep.missing_rate must be one of evaluate.missing_rates "
            f"{rates} (its masks are the ones drawn)"
        )
    if ablation_dir is not None and not isinstance(ablation_dir, str):
        errors.append(f"evaluate.variant_checkpoint_dir={ablation_dir!r} must be a path or null")
    if not isinstance(seed, int) or isinstance(seed, bool):
        errors.append(f"parameter seed={seed!r} must be an integer")
    if errors:
        raise EvaluateConfigError("bad evaluate parameters:\n  - " + "\n  - ".join(errors))
    return EvalConfig(
        split=split,
        settings=tuple(settings),
        missing_rates=tuple(float(r) for r in rates),
        methods=tuple(methods),
        seeds=tuple(int(x) for x in seeds),
        ablations={k: dict(v) for k, v in ablations.items()},
        paper_columns=paper_columns,
        batch_size=int(batch_size),
        generative=generative,
        sweep=sweep,
        report=report,
        variant_checkpoint_dir=ablation_dir,
        threads=threads,
        seed=int(seed),
        raw=p,
    )
