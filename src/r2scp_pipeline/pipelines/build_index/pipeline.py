"""Wiring of the ``build_index`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_indices,
    build_memory_banks,
    embed_videos,
    evaluate_retrieval,
    retrieve_neighbors,
    train_joint_space,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_joint_space,
                inputs=[
                    "audio_features",
                    "visual_features",
                    "video_index",
                    "params:build_index",
                    "params:seed",
                ],
                outputs=["joint_space", "joint_space_metrics", "joint_space_plot"],
                name="train_joint_space",
            ),
            Node(
                build_memory_banks,
                inputs=[
                    "audio_features",
                    "visual_features",
                    "video_index",
                    "external_corpus_audio_features",
                    "external_corpus_visual_features",
                    "params:build_index",
                ],
                outputs=["memory_bank_audio", "memory_bank_visual"],
                name="build_memory_banks",
            ),
            Node(
                embed_videos,
                inputs=[
                    "joint_space",
                    "audio_features",
                    "visual_features",
                    "video_index",
                    "memory_bank_audio",
                    "memory_bank_visual",
                    "external_embeddings",
                    "external_corpus_embeddings",
                    "params:build_index",
                ],
                outputs="unified_embeddings",
                name="embed_videos",
            ),
            Node(
                build_indices,
                inputs=["unified_embeddings", "params:build_index", "params:seed"],
                outputs=["audio_index", "visual_index"],
                name="build_indices",
            ),
            Node(
                retrieve_neighbors,
                inputs=[
                    "unified_embeddings",
                    "video_index",
                    "audio_index",
                    "visual_index",
                    "params:build_index",
                    "split_protocol",
                ],
                outputs="neighbors",
                name="retrieve_neighbors",
            ),
            Node(
                evaluate_retrieval,
                inputs=[
                    "neighbors",
                    "scene_metadata",
                    "external_corpus_metadata",
                    "unified_embeddings",
                    "params:build_index",
                    "params:seed",
                ],
                outputs=["retrieval_metrics", "retrieval_quality"],
                name="evaluate_retrieval",
            ),
        ]
    )
