"""Project pipelines.

Names users and docs call: ``dataset``, ``features``, ``build_index``, ``pretrain``, ``mix``,
``train`` (= pretrain + mix, a folder of its own because Kedro 1.7 imports only the pipeline
folders named on the command line), ``evaluate``. ``__default__`` runs everything except
``corpus`` (the external retrieval corpus of the corpus study: ``kedro run --pipelines=corpus``,
then ``kedro run --env=corpus_study``; docs/build_index.md).
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

#: registered pipelines that ``__default__`` leaves out
NOT_IN_DEFAULT = ("train", "corpus")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines, discovered under ``r2scp_pipeline.pipelines``."""
    pipelines = find_pipelines(raise_errors=True)
    # `train` is pretrain + mix again: leave it out of the sum (node sets would merge anyway);
    # `corpus` makes an optional input of build_index and runs on its own (not in every run)
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return pipelines
