"""Wiring of the ``features`` pipeline (no logic here: see ``nodes.py``).

Audio and visual extraction run per shard of ``video_index`` (one namespaced copy of the shard
pipeline per shard, ``features_shard_<i>``), then one merge node per modality gathers the
shards (``audio_shard_<i>``, ``visual_shard_<i>``, in memory) in order. A sequential run gives
what one node over all videos gave; ``r2scp_pipeline.runner.DaskRunner`` runs the shards at
the same time on a ``dask.distributed`` cluster, and Airflow as tasks of their own
(``conf/airflow``, docs/deployment.md). The number of shards shapes the pipeline, so it is
read when the pipeline is built (Kedro builds pipelines before it reads parameters):
``R2SCP_FEATURE_SHARDS`` in the environment, default :data:`DEFAULT_SHARDS`.
"""

import os
from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from .nodes import (
    align_media_features,
    extract_audio_shard,
    extract_question_features,
    extract_visual_shard,
    feature_report,
    grounding_labels,
    merge_feature_shards,
)

#: shards per modality when ``R2SCP_FEATURE_SHARDS`` is not set: enough to keep 2-4 workers
#: busy; a sequential run pays one encoder load per shard (well under a second each)
DEFAULT_SHARDS = 4
SHARDS_ENV = "R2SCP_FEATURE_SHARDS"


def feature_shards() -> int:
    """Shards per modality: ``$R2SCP_FEATURE_SHARDS`` or :data:`DEFAULT_SHARDS`."""
    raw = os.environ.get(SHARDS_ENV, "").strip()
    if not raw:
        return DEFAULT_SHARDS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{SHARDS_ENV}={raw!r}: expected a whole number >= 1")
    return int(raw)


def _for_shard(func, shard: int, shards: int):
    """``func`` with its shard fixed (keeps the function's name for Kedro and pickles)."""
    return update_wrapper(partial(func, shard=shard, shards=shards), func)


def _shard_pipeline(shard: int, shards: int) -> Pipeline:
    """One shard: its audio and visual partial results, ``{audio,visual}_shard_<i>``."""
    return Pipeline(
        [
            Node(
                _for_shard(extract_audio_shard, shard, shards),
                inputs=["video_index", "params:features"],
                outputs="audio",
                name="extract_audio_features",
            ),
            Node(
                _for_shard(extract_visual_shard, shard, shards),
                inputs=["video_index", "params:features"],
                outputs="visual",
                name="extract_visual_features",
            ),
        ],
        namespace=f"features_shard_{shard}",
        inputs={"video_index"},
        outputs={"audio": f"audio_shard_{shard}", "visual": f"visual_shard_{shard}"},
        parameters={"params:features"},
    )


def create_pipeline(shards: int | None = None, **kwargs) -> Pipeline:
    shards = feature_shards() if shards is None else shards
    return sum((_shard_pipeline(i, shards) for i in range(shards)), Pipeline([])) + Pipeline(
        [
            Node(
                merge_feature_shards,
                inputs=[f"audio_shard_{i}" for i in range(shards)],
                outputs=["audio_features_extracted", "audio_feature_stats"],
                name="merge_audio_shards",
            ),
            Node(
                merge_feature_shards,
                inputs=[f"visual_shard_{i}" for i in range(shards)],
                outputs=["visual_features_extracted", "visual_feature_stats"],
                name="merge_visual_shards",
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
                grounding_labels,
                inputs=["instrument_tracks", "params:features"],
                outputs="grounding_labels",
                name="grounding_labels",
            ),
            Node(
                feature_report,
                inputs=["audio_feature_stats", "visual_feature_stats", "question_feature_stats"],
                outputs=["feature_report", "feature_skipped"],
                name="feature_report",
            ),
        ]
    )
