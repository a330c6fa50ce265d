"""Wiring of the ``train`` pipeline: stage I then stage II."""

from kedro.pipeline import Pipeline

from ..mix import create_pipeline as create_mix
from ..pretrain import create_pipeline as create_pretrain


def create_pipeline(**kwargs) -> Pipeline:
    return create_pretrain(**kwargs) + create_mix(**kwargs)
