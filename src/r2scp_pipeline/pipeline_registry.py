"""Project pipelines.

Names users and docs call: ``dataset``, ``features``, ``build_index``, ``pretrain``, ``mix``,
``train`` (= pretrain + mix), ``evaluate``. ``__default__`` runs everything that exists.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines, discovered under ``r2scp_pipeline.pipelines``."""
    pipelines = find_pipelines(raise_errors=True)
    if "pretrain" in pipelines and "mix" in pipelines:
        pipelines["train"] = pipelines["pretrain"] + pipelines["mix"]
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name != "train"), Pipeline([])
    )
    return pipelines
