"""Project pipelines.

Names users and docs call: ``dataset``, ``features``, ``build_index``, ``pretrain``, ``mix``,
``train`` (= pretrain + mix, a folder of its own because Kedro 1.7 imports only the pipeline
folders named on the command line), ``evaluate``. ``__default__`` runs everything.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines, discovered under ``r2scp_pipeline.pipelines``."""
    pipelines = find_pipelines(raise_errors=True)
    # `train` is pretrain + mix again: leave it out of the sum (node sets would merge anyway)
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name != "train"), Pipeline([])
    )
    return pipelines
