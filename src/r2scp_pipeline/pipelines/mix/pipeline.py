"""Wiring of the ``mix`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import log_pytorch_model, mix_experts, mix_metrics, plot_expert_loads


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                mix_experts,
                inputs=[
                    "stage1_experts",
                    "qa_pairs",
                    "audio_features",
                    "visual_features",
                    "question_features",
                    "memory_bank_audio",
                    "memory_bank_visual",
                    "neighbors",
                    "params:model",
                    "params:mix",
                    "params:train_missing",
                    "params:seed",
                ],  # fmt: skip
                outputs=["r2scp_model", "mix_history"],
                name="mix_experts",
            ),
            Node(log_pytorch_model, inputs="r2scp_model", outputs=None, name="log_pytorch_model"),
            Node(mix_metrics, inputs="mix_history", outputs="mix_metrics", name="mix_metrics"),
            Node(
                plot_expert_loads,
                inputs="mix_history",
                outputs="mix_expert_loads_plot",
                name="plot_expert_loads",
            ),
        ]
    )
