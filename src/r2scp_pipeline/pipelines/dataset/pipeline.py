"""Wiring of the ``dataset`` pipeline (no logic here: see ``nodes.py``)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    answer_prior_report,
    generate_embedded_dataset,
    ingest_annotations,
    instrument_tracks,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_embedded_dataset,
                inputs=["params:dataset", "params:seed"],
                outputs="raw_dataset_manifest",
                name="generate_embedded_dataset",
            ),
            Node(
                ingest_annotations,
                inputs=["params:dataset", "raw_dataset_manifest"],
                outputs=[
                    "qa_pairs",
                    "video_index",
                    "scene_metadata",
                    "dataset_metrics",
                    "split_protocol",
                ],
                name="ingest_annotations",
            ),
            Node(
                instrument_tracks,
                inputs=["params:dataset", "video_index"],
                outputs="instrument_tracks",
                name="instrument_tracks",
            ),
            Node(
                answer_prior_report,
                inputs="qa_pairs",
                outputs=["answer_prior_table", "answer_prior_metrics"],
                name="answer_prior_report",
            ),
        ]
    )
