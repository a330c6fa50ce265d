"""Wiring of the ``pretrain`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_audio_pretraining_set, pretrain_experts, pretrain_metrics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_audio_pretraining_set,
                inputs=["params:dataset", "params:features", "params:pretrain", "params:seed"],
                outputs="audio_pretraining_set",
                name="build_audio_pretraining_set",
            ),
            Node(
                pretrain_experts,
                inputs=[
                    "qa_pairs",
                    "audio_features",
                    "visual_features",
                    "question_features",
                    "grounding_labels",
                    "audio_pretraining_set",
                    "params:model",
                    "params:pretrain",
                    "params:train_missing",
                    "params:seed",
                ],  # fmt: skip
                outputs=["stage1_experts", "pretrain_history"],
                name="pretrain_experts",
            ),
            Node(
                pretrain_metrics,
                inputs="pretrain_history",
                outputs="pretrain_metrics",
                name="pretrain_metrics",
            ),
        ]
    )
