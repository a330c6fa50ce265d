"""FaissIndexDataset: FAISS index + row ids round trip, versions, atomic save, clear errors."""

import json

import faiss
import numpy as np
import pytest
from kedro.io import DatasetError, Version

from r2scp_pipeline.datasets.faiss_index_dataset import FaissIndexDataset, KeyedFaissIndex


def _keyed(factory: str, n: int = 300, d: int = 16, params: str = "") -> KeyedFaissIndex:
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)
    return KeyedFaissIndex(index, [f"v{i}" for i in range(n)], {"factory": factory})


@pytest.mark.parametrize(
    "factory, params",
    [
        ("Flat", ""),
        ("IVF8,Flat", "nprobe=3"),
        ("HNSW16", "efSearch=40"),
        ("IVF4,PQ4x4", "nprobe=2"),
        ("OPQ4,IVF4,PQ4", "nprobe=2"),
    ],
)
@pytest.mark.parametrize("mmap", [False, True])  # True: faiss.IO_FLAG_MMAP, lists stay on disk
def test_round_trip_gives_the_same_search_results(tmp_path, factory, params, mmap):
    keyed = _keyed(factory, params=params)
    ds = FaissIndexDataset(filepath=str(tmp_path / "idx" / "audio.faiss"), mmap=mmap)
    ds.save(keyed)
    loaded = ds.load()
    assert loaded.ids == keyed.ids and loaded.metadata == {"factory": factory}
    assert (loaded.ntotal, loaded.d) == (300, 16)
    q = np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32)
    d0, i0 = keyed.index.search(q, 5)
    d1, i1 = loaded.index.search(q, 5)
    np.testing.assert_array_equal(i0, i1)  # search-time parameters (nprobe, efSearch) persist
    np.testing.assert_allclose(d0, d1)
    assert not list((tmp_path / "idx").glob("*.tmp")), "temporary file left behind"
    # the index file is plain FAISS format
    assert faiss.read_index(str(tmp_path / "idx" / "audio.faiss")).ntotal == 300


def test_versions_are_kept_and_latest_is_loaded(tmp_path):
    path = str(tmp_path / "visual.faiss")
    FaissIndexDataset(filepath=path, version=Version(None, "2024-01-01T00.00.00.000Z")).save(
        _keyed("Flat", n=10)
    )
    FaissIndexDataset(filepath=path, version=Version(None, "2024-01-02T00.00.00.000Z")).save(
        _keyed("Flat", n=20)
    )
    assert FaissIndexDataset(filepath=path, version=Version(None, None)).load().ntotal == 20
    old = FaissIndexDataset(filepath=path, version=Version("2024-01-01T00.00.00.000Z", None))
    assert old.load().ntotal == 10


def test_ids_must_match_the_index():
    with pytest.raises(ValueError, match="holds 10 vectors but 3 ids"):
        KeyedFaissIndex(_keyed("Flat", n=10).index, ["a", "b", "c"])


def test_clear_errors(tmp_path):
    path = tmp_path / "audio.faiss"
    ds = FaissIndexDataset(filepath=str(path))
    with pytest.raises(DatasetError, match="saves a KeyedFaissIndex"):
        ds.save(_keyed("Flat").index)
    with pytest.raises(DatasetError, match="run the build_index pipeline"):
        ds.load()
    ds.save(_keyed("Flat", n=10))
    side = tmp_path / "audio.faiss.meta.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "ids": meta["ids"][:5]}))
    with pytest.raises(DatasetError, match="different builds"):
        ds.load()
    side.unlink()
    with pytest.raises(DatasetError, match="is missing"):
        ds.load()
    path.write_bytes(b"not an index")
    side.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="not a readable FAISS index"):
        ds.load()


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(index, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", boom)
    ds = FaissIndexDataset(filepath=str(tmp_path / "audio.faiss"))
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(_keyed("Flat", n=10))
    assert list(tmp_path.iterdir()) == []
