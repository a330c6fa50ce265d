"""``dataset`` pipeline: generate MiniMusic-AVQA or ingest official MUSIC-AVQA annotations."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
