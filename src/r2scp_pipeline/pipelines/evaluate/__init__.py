"""``evaluate`` pipeline: R2ScP, its ablations and baselines under missing modalities.

Protocol, metrics, methods and report: ``docs/evaluate.md``.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
