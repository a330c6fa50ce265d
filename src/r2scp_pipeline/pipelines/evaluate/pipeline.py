"""Wiring of the ``evaluate`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from r2scp_pipeline.variants import variant_names

from .nodes import (
    build_reports,
    check_evaluate_parameters,
    check_model_compatibility,
    draw_missing_masks,
    evaluate_methods,
    log_evaluation_runs,
    modality_needs_report,
    sweep_n_k,
)

FEATURES = ["qa_pairs", "audio_features", "visual_features", "question_features"]
RETRIEVAL = ["memory_bank_audio", "memory_bank_visual", "neighbors"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                check_evaluate_parameters,
                inputs=["params:evaluate", "params:seed"],
                outputs="evaluate_config",
                name="check_evaluate_parameters",
            ),
            Node(
                check_model_compatibility,
                inputs=["evaluate_config", "r2scp_model", *FEATURES],
                outputs="evaluate_compatibility",
                name="check_model_compatibility",
            ),
            Node(
                draw_missing_masks,
                inputs=["evaluate_config", "video_index"],
                outputs="missing_masks",
                name="draw_missing_masks",
            ),
            Node(
                evaluate_methods,
                inputs={
                    "config": "evaluate_config",
                    "compatibility": "evaluate_compatibility",
                    "missing_masks": "missing_masks",
                    **{name: name for name in FEATURES + RETRIEVAL},
                    "generative_imputers": "generative_imputers",
                    # every trained variant (pipelines/variants), one keyword each
                    **{v: f"{v}.variant_models" for v in variant_names()},
                },
                outputs=["evaluation_predictions", "evaluation_results"],
                name="evaluate_methods",
            ),
            Node(
                log_evaluation_runs,
                inputs=["evaluate_config", "evaluation_results"],
                outputs="evaluate_metrics",
                name="log_evaluation_runs",
            ),
            Node(
                build_reports,
                inputs=[
                    "evaluate_config",
                    "evaluation_results",
                    "evaluation_predictions",
                    "split_protocol",
                ],
                outputs=[
                    "results_table",
                    "results_table_markdown",
                    "ablation_table",
                    "ablation_table_markdown",
                    "comparison_table",
                    "comparison_table_markdown",
                    "claims_verdicts",
                    "claims_verdicts_markdown",
                    "accuracy_vs_missing_rate_plot",
                    "evaluation_expert_loads_plot",
                ],  # fmt: skip
                name="build_reports",
            ),
            Node(
                modality_needs_report,
                inputs=[
                    "evaluate_config",
                    "evaluate_compatibility",
                    "stage1_experts",
                    "evaluation_predictions",
                    *FEATURES,
                ],  # fmt: skip
                outputs=["modality_needs", "modality_needs_markdown"],
                name="report_modality_needs",
            ),
            Node(
                sweep_n_k,
                inputs=[
                    "evaluate_config",
                    "evaluate_compatibility",
                    "r2scp_model",
                    "missing_masks",
                    *FEATURES,
                    *RETRIEVAL,
                ],  # fmt: skip
                outputs=["nk_sweep", "nk_sweep_plot"],
                name="sweep_n_k",
            ),
        ]
    )
