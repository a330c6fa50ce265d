"""``pretrain`` pipeline: stage I of R2ScP, modality-specific expert pre-training (eq. 10)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
