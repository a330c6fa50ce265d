"""``corpus`` pipeline: an external retrieval corpus made by the embedded generator (Table 4).

Other scenes (another seed) and optionally another sound font, encoded with the dataset's own
``params:features``: the ``external_corpus_*`` tables ``build_index`` reads with
``build_index.corpus.source: external``. Not part of ``__default__``.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
