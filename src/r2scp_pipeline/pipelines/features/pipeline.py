"""Wiring of the ``features`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    align_media_features,
    extract_audio_features,
    extract_question_features,
    extract_visual_features,
    feature_report,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                extract_audio_features,
                inputs=["video_index", "params:features"],
                outputs=["audio_features_extracted", "audio_feature_stats"],
                name="extract_audio_features",
            ),
            Node(
                extract_visual_features,
                inputs=["video_index", "params:features"],
                outputs=["visual_features_extracted", "visual_feature_stats"],
                name="extract_visual_features",
            ),
            Node(
                extract_question_features,
                inputs=["qa_pairs", "params:features"],
                outputs=["question_features", "question_feature_stats"],
                name="extract_question_features",
            ),
            Node(
                align_media_features,
                inputs=[
                    "audio_features_extracted",
                    "visual_features_extracted",
                    "audio_feature_stats",
                    "visual_feature_stats",
                ],
                outputs=["audio_features", "visual_features"],
                name="align_media_features",
            ),
            Node(
                feature_report,
                inputs=["audio_feature_stats", "visual_feature_stats", "question_feature_stats"],
                outputs=["feature_report", "feature_skipped"],
                name="feature_report",
            ),
        ]
    )
