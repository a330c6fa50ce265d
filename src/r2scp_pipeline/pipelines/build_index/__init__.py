"""``build_index`` pipeline: the memory bank of Cross-Modal Retrieval (paper section 3.2).

Unified audio-visual space, per-modality FAISS indices over the corpus keys, memory-bank
values and the R+/R- neighbour tables of every video.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
