"""``features`` pipeline: per-video audio / visual feature sequences and question tokens."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
