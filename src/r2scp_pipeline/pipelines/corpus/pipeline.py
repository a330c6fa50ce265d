"""Wiring of the ``corpus`` pipeline (no logic here: see ``nodes.py``).

``kedro run --pipelines=corpus`` writes the ``external_corpus_*`` catalog entries that
``build_index`` reads with ``build_index.corpus.source: external``; it is not part of
``__default__`` (see ``pipeline_registry.py`` and the ``corpus_study`` environment).
"""

from kedro.pipeline import Node, Pipeline

from .nodes import corpus_metadata, corpus_report, extract_corpus_features, generate_corpus


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_corpus,
                inputs=["params:corpus", "params:dataset", "params:seed"],
                outputs="corpus_video_index",
                name="generate_corpus",
            ),
            Node(
                extract_corpus_features,
                inputs=["corpus_video_index", "params:features"],
                outputs=[
                    "external_corpus_audio_features",
                    "external_corpus_visual_features",
                    "corpus_feature_stats",
                ],
                name="extract_corpus_features",
            ),
            Node(
                corpus_metadata,
                inputs=["params:corpus", "corpus_video_index", "external_corpus_audio_features"],
                outputs="external_corpus_metadata",
                name="corpus_metadata",
            ),
            Node(
                corpus_report,
                inputs=[
                    "params:corpus",
                    "params:seed",
                    "corpus_video_index",
                    "external_corpus_audio_features",
                    "external_corpus_visual_features",
                    "external_corpus_metadata",
                    "corpus_feature_stats",
                ],
                outputs="external_corpus_report",
                name="corpus_report",
            ),
        ]
    )
