"""``mix`` pipeline: stage II of R2ScP, expert mixing with CMR, CAP and the ranking loss."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
