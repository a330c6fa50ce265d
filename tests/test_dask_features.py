"""Feature extraction sharded over a ``dask.distributed`` cluster (``r2scp_pipeline.runner``).

The ``features`` pipeline splits ``video_index`` into shards, one namespaced pair of extraction
nodes per shard, and merges them in order. These tests check that the merged tables equal what
one node over all videos gives (``extract_audio_features`` / ``extract_visual_features``, the
sequential run), with Kedro's SequentialRunner and with the DaskRunner over a LocalCluster of
2 single-threaded worker processes:

- same rows in the same order, same stats (but wall seconds), same skip decisions;
- audio features bit for bit (each video is encoded alone);
- visual features within ``VISUAL_ATOL`` = 1e-4 absolute. EfficientNet encodes frames in
  batches across videos, and sharding changes which frames share a batch: the convolution
  library picks kernels by batch size, so a frame's features move in the last float32 digits
  (measured here: at most 1.3e-5 on values up to ~4, i.e. batches under 16 frames vs 16 or
  more), the same change a sequential run sees when ``batch_size`` changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from r2scp_pipeline.pipelines.features import create_pipeline
from r2scp_pipeline.pipelines.features.nodes import (
    extract_audio_features,
    extract_visual_features,
    merge_feature_shards,
    shard_rows,
)
from r2scp_pipeline.pipelines.features.pipeline import feature_shards

from .pipelines.features.media import deep_merge, make_video

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")

VISUAL_ATOL = 1e-4  # see the module docstring
OUTPUTS = (
    "audio_features_extracted",
    "audio_feature_stats",
    "visual_features_extracted",
    "visual_feature_stats",
)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Five short videos of different lengths (uneven shards, batches that straddle videos)
    and one whose wav is missing."""
    root = tmp_path_factory.mktemp("media")
    rows = [
        make_video(root, f"v{i}", seconds=s, freq=f)
        for i, (s, f) in enumerate([(10, 330.0), (4, 440.0), (12, 550.0), (7, 660.0), (10, 880.0)])
    ]
    broken = make_video(root, "broken", seconds=5)
    (root / broken["audio_path"]).unlink()
    return root, pd.DataFrame(rows), pd.DataFrame(rows[:2] + [broken] + rows[2:])


@pytest.fixture(scope="module")
def params(media):
    import yaml

    from tests.pipelines.features.conftest import PROJECT_ROOT

    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_features.yml").read_text())
    small = {
        "num_threads": 1,
        "progress": False,
        "media_root": str(media[0]),
        # batches of 16 frames: a batch mixes videos, so sharding changes batch composition
        "visual": {"efficientnet_lite0": {"input_size": 96, "batch_size": 16},
                   "workers": 1},  # the workers test below sets 1 and 2
    }
    return deep_merge(base["features"], small)


def _sequential(video_index: pd.DataFrame, params: dict) -> dict:
    audio, audio_stats = extract_audio_features(video_index, params)
    visual, visual_stats = extract_visual_features(video_index, params)
    return dict(zip(OUTPUTS, (audio, audio_stats, visual, visual_stats), strict=True))


def _run(runner, video_index: pd.DataFrame, params: dict, shards: int) -> dict:
    catalog = DataCatalog(
        datasets={
            "video_index": MemoryDataset(video_index),
            "params:features": MemoryDataset(params),
        }
    )
    pipe = create_pipeline(shards=shards).to_outputs(*OUTPUTS)
    out = runner.run(pipe, catalog)
    tables = {name: out[name].load() for name in OUTPUTS}
    for name in OUTPUTS:
        out[name].release()  # the DaskRunner's outputs: free the cluster's copy
    return tables


def _assert_same_features(got: pd.DataFrame, want: pd.DataFrame, atol: float) -> None:
    """Same rows in the same order; feature values bit for bit (``atol=0``) or within ``atol``."""
    keys = [c for c in want.columns if c != "feature"]
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got[keys], want[keys])
    a, b = np.stack(got["feature"].to_numpy()), np.stack(want["feature"].to_numpy())
    assert a.dtype == b.dtype == np.float32
    if atol == 0:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def _assert_same_stats(got: dict, want: dict) -> None:
    drop = {"seconds"}  # wall time: the shards' seconds added up vs one node's
    assert {k: v for k, v in got.items() if k not in drop} == {
        k: v for k, v in want.items() if k not in drop
    }


def _assert_same(got: dict, want: dict) -> None:
    for modality, atol in (("audio", 0.0), ("visual", VISUAL_ATOL)):
        _assert_same_features(
            got[f"{modality}_features_extracted"], want[f"{modality}_features_extracted"], atol
        )
        _assert_same_stats(got[f"{modality}_feature_stats"], want[f"{modality}_feature_stats"])


def test_shard_rows_cover_the_index_in_order():
    for n in (0, 1, 5, 17):
        for shards in (1, 2, 4, 7):
            rows = np.concatenate([shard_rows(n, i, shards) for i in range(shards)])
            np.testing.assert_array_equal(rows, np.arange(n))
    with pytest.raises(ValueError, match="shard 4 of 4"):
        shard_rows(10, 4, 4)


def test_feature_shards_from_environment(monkeypatch):
    monkeypatch.setenv("R2SCP_FEATURE_SHARDS", "8")
    assert feature_shards() == 8
    monkeypatch.setenv("R2SCP_FEATURE_SHARDS", "0")
    with pytest.raises(ValueError, match="R2SCP_FEATURE_SHARDS"):
        feature_shards()


def test_merge_refuses_shards_of_different_settings(media, params):
    _, video_index, _ = media
    from r2scp_pipeline.pipelines.features.nodes import extract_audio_shard

    a = extract_audio_shard(video_index, params, shard=0, shards=4)
    b = extract_audio_shard(video_index, deep_merge(params, {"segments": 5}), shard=1, shards=4)
    with pytest.raises(ValueError, match="segments"):
        merge_feature_shards(a, b)


@pytest.mark.parametrize("shards", [1, 3, 7])  # 7 > 5 videos: some shards are empty
def test_sharded_pipeline_sequential_equals_one_node(media, params, shards):
    _, video_index, _ = media
    _assert_same(
        _run(SequentialRunner(), video_index, params, shards), _sequential(video_index, params)
    )


def test_skip_policy_is_the_same_across_shards(media, params):
    _, _, with_broken = media
    skip = deep_merge(params, {"on_error": "skip"})
    got = _run(SequentialRunner(), with_broken, skip, shards=3)
    want = _sequential(with_broken, skip)
    _assert_same(got, want)
    assert [s["video_id"] for s in got["audio_feature_stats"]["skipped"]] == ["broken"]


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client

    from r2scp_pipeline.runner import local_cluster

    with (
        local_cluster(n_workers=2, threads_per_worker=1) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_dask_two_workers_equal_sequential(media, params, dask_client):
    from distributed import get_task_stream

    from r2scp_pipeline.runner import DaskRunner

    _, video_index, _ = media
    with get_task_stream(client=dask_client) as stream:
        got = _run(DaskRunner(client=dask_client), video_index, params, shards=4)
    _assert_same(got, _sequential(video_index, params))
    # the shard nodes ran on both workers: the run was distributed, not sent to one process
    shard_workers = {t["worker"] for t in stream.data if "features_shard" in str(t["key"])}
    assert len(shard_workers) == 2


def test_dask_node_error_reaches_kedro_run(media, params, dask_client):
    from r2scp_pipeline.encoders import MediaError
    from r2scp_pipeline.runner import DaskRunner

    _, _, with_broken = media
    with pytest.raises(MediaError, match="broken"):
        _run(DaskRunner(client=dask_client), with_broken, params, shards=2)


def test_workers_start_without_dasks_malloc_trim_threshold(dask_client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ makes torch allocate every activation with a
    fresh mmap (r2scp_pipeline.runner); the project's workers run without it."""
    import os

    envs = dask_client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert len(envs) == 2 and set(envs.values()) == {None}, envs


def test_the_deploy_config_removes_it_for_dask_worker_too():
    import dask
    import yaml
    from distributed.nanny import _get_env_variables

    key = "distributed.nanny.pre-spawn-environ"
    assert "MALLOC_TRIM_THRESHOLD_" in _get_env_variables(key)  # Dask's default sets it
    root = Path(__file__).resolve().parents[1]
    conf = yaml.safe_load((root / "deploy/dask/distributed.yaml").read_text())
    with dask.config.set(dask.config.merge(dask.config.config, conf)):
        assert "MALLOC_TRIM_THRESHOLD_" not in _get_env_variables(key)


def test_workers_may_start_processes_of_their_own(dask_client):
    """The embedded generator starts ``dataset.embedded.num_workers`` processes inside the
    worker that runs it: a daemonic worker may not (``WORKER_CONFIG``)."""
    import multiprocessing

    daemonic = dask_client.run(lambda: multiprocessing.current_process().daemon)
    assert len(daemonic) == 2 and set(daemonic.values()) == {False}, daemonic
    root = Path(__file__).resolve().parents[1]
    import yaml

    conf = yaml.safe_load((root / "deploy/dask/distributed.yaml").read_text())
    assert conf["distributed"]["worker"]["daemon"] is False  # `dask worker` on a cluster too


def test_a_cached_dataset_is_read_by_the_worker(tmp_path, dask_client):
    """The catalog's ``CachedDataset`` entries (``audio_features``, ...) reach a worker as the
    dataset they wrap: an unpickled empty cache would "load" a bare sentinel object."""
    from kedro.io import CachedDataset
    from kedro.pipeline import Node, Pipeline
    from kedro_datasets.pandas import ParquetDataset

    from r2scp_pipeline.runner import DaskRunner

    path = tmp_path / "table.parquet"
    pd.DataFrame({"x": [1, 2, 3]}).to_parquet(path)
    catalog = DataCatalog(datasets={"table": CachedDataset(ParquetDataset(filepath=str(path)))})
    pipe = Pipeline([Node(lambda t: int(t["x"].sum()), "table", "total", name="total")])
    out = DaskRunner(client=dask_client).run(pipe, catalog)
    assert out["total"].load() == 6
    out["total"].release()


def test_visual_workers_give_the_features_of_one_process(media, params):
    """``features.visual.workers``: two spawned processes, each on its part of the videos cut
    where one process starts a batch (16 frames across videos), give one process's table bit
    for bit; a skipped video gives the same skips (features within VISUAL_ATOL); an error in a
    worker is raised here; a bad value is refused."""
    from r2scp_pipeline.media import MediaError, _batch_starts

    _, video_index, _ = media
    one = deep_merge(params, {"visual": {"workers": 1}})
    two = deep_merge(params, {"visual": {"workers": 2}})
    starts = _batch_starts(video_index, two)
    assert starts[0] == 0 and any(0 < s < len(video_index) for s in starts[1:])  # a cut exists
    table, stats = extract_visual_features(video_index, two)
    want, want_stats = extract_visual_features(video_index, one)
    _assert_same_features(table, want, atol=0)
    _assert_same_stats(stats, want_stats)

    broken = video_index.copy()
    broken.loc[1, "frames_dir"] = "frames/absent"  # no frames: skipped, or raised
    skip = {"on_error": "skip"}
    got, got_stats = extract_visual_features(broken, deep_merge(two, skip))
    ref, ref_stats = extract_visual_features(broken, deep_merge(one, skip))
    _assert_same_features(got, ref, atol=VISUAL_ATOL)
    _assert_same_stats(got_stats, ref_stats)
    assert [s["video_id"] for s in got_stats["skipped"]] == [video_index.loc[1, "video_id"]]
    with pytest.raises(MediaError, match=video_index.loc[1, "video_id"]):
        extract_visual_features(broken, two)
    with pytest.raises(ValueError, match="features.visual.workers must be a positive integer"):
        extract_visual_features(video_index, deep_merge(params, {"visual": {"workers": 0}}))
