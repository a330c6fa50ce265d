"""The ``variants`` pipeline: every method and ablation trained per seed (one namespace each)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
