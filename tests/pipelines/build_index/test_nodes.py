"""build_index nodes on tiny synthetic inputs: leakage, table shapes, external inputs, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from r2scp_pipeline.datasets.faiss_index_dataset import FaissIndexDataset
from r2scp_pipeline.pipelines.build_index import nodes
from r2scp_pipeline.pipelines.build_index.index import normalize
from r2scp_pipeline.tensors import tensor_to_frame

from .synthetic import make_inputs

torch.set_num_threads(1)
CONF = Path(__file__).resolve().parents[3] / "conf"
EMPTY = pd.DataFrame()


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _params(**over) -> dict:
    """conf/base deep-merged with conf/test, as ``kedro run --env=test`` sees them."""
    base = yaml.safe_load((CONF / "base" / "parameters_build_index.yml").read_text())
    test = yaml.safe_load((CONF / "test" / "parameters_build_index.yml").read_text())
    return _merge(_merge(base, test)["build_index"], over)


def _run(data: dict, params: dict, tmp_path: Path | None = None, ext: dict | None = None) -> dict:
    """Every node in pipeline order; the indices go through FaissIndexDataset when tmp_path."""
    ext = {k: EMPTY for k in ("audio", "visual", "emb", "corpus_emb", "meta")} | (ext or {})
    out = {}
    out["joint_space"], out["js_metrics"], out["js_fig"] = nodes.train_joint_space(
        data["audio_features"], data["visual_features"], data["video_index"], params, 7
    )
    out["bank_a"], out["bank_v"] = nodes.build_memory_banks(
        data["audio_features"],
        data["visual_features"],
        data["video_index"],
        ext["audio"],
        ext["visual"],
        params,
    )
    out["emb"] = nodes.embed_videos(
        out["joint_space"],
        data["audio_features"],
        data["visual_features"],
        data["video_index"],
        out["bank_a"],
        out["bank_v"],
        ext["emb"],
        ext["corpus_emb"],
        params,
    )
    a_idx, v_idx = nodes.build_indices(out["emb"], params, 7)
    if tmp_path is not None:  # round trip through the catalog's dataset
        for name, idx in (("audio", a_idx), ("visual", v_idx)):
            FaissIndexDataset(filepath=str(tmp_path / f"{name}.faiss")).save(idx)
        a_idx = FaissIndexDataset(filepath=str(tmp_path / "audio.faiss")).load()
        v_idx = FaissIndexDataset(filepath=str(tmp_path / "visual.faiss")).load()
    out["audio_index"], out["visual_index"] = a_idx, v_idx
    out["neighbors"] = nodes.retrieve_neighbors(
        out["emb"], data["video_index"], a_idx, v_idx, params
    )
    out["quality_metrics"], out["quality"] = nodes.evaluate_retrieval(
        out["neighbors"], data["scene_metadata"], ext["meta"], out["emb"], params, 7
    )
    return out


@pytest.fixture(scope="module")
def data() -> dict:
    return make_inputs(n_videos=30, seed=3)


@pytest.fixture(scope="module")
def default_run(data, tmp_path_factory) -> dict:
    return _run(data, _params(), tmp_path_factory.mktemp("idx"))


def test_neighbor_table_shape_and_order(data, default_run):
    nb, n = default_run["neighbors"], 3
    assert {"query_video_id", "direction", "polarity", "rank", "neighbor_video_id", "score"} <= set(
        nb.columns
    )
    assert len(nb) == 30 * 2 * 2 * n  # every video, both directions, R+ and R-, n each
    counts = nb.groupby(["query_video_id", "direction", "polarity"]).size()
    assert len(counts) == 30 * 4 and (counts == n).all()
    assert set(nb["direction"]) == {"v2a", "a2v"} and set(nb["polarity"]) == {"pos", "neg"}
    assert set(nb["rank"]) == set(range(n))
    for (_, _, pol), g in nb.groupby(["query_video_id", "direction", "polarity"]):
        s = g.sort_values("rank")["score"].to_numpy()
        assert (np.diff(s) <= 1e-6).all() if pol == "pos" else (np.diff(s) >= -1e-6).all()
    # with 2n <= corpus - 1, every R+ scores above every R-
    wide = nb.pivot_table(
        index=["query_video_id", "direction"],
        columns="polarity",
        values="score",
        aggfunc=["min", "max"],
    )
    assert (wide[("min", "pos")] >= wide[("max", "neg")]).all()
    assert np.isfinite(nb["score"]).all() and nb["score"].between(-1.0001, 1.0001).all()


def test_no_leakage_only_training_videos_never_self(data, default_run):
    nb = default_run["neighbors"]
    split = dict(zip(data["video_index"]["video_id"], data["video_index"]["split"], strict=True))
    assert (nb["neighbor_video_id"] != nb["query_video_id"]).all()
    assert {split[v] for v in nb["neighbor_video_id"]} == {"train"}
    assert set(nb["query_splits"]) == {"train", "val", "test"}
    assert set(nb["protocol"]) == {"unrecorded"}  # no split_protocol given
    # the indices hold exactly the training videos
    train = sorted(v for v, s in split.items() if s == "train")
    assert default_run["audio_index"].ids == train == default_run["visual_index"].ids
    assert sorted(default_run["bank_a"]["video_id"].unique()) == train
    assert sorted(default_run["bank_v"]["video_id"].unique()) == train


def test_neighbors_are_the_exact_cosine_top_and_bottom_n(default_run):
    emb, nb = default_run["emb"], default_run["neighbors"]

    def mat(modality):
        rows = emb[emb["modality"] == modality].set_index("video_id")
        return rows

    a, v = mat("audio"), mat("visual")
    train = default_run["audio_index"].ids
    keys = np.stack(a.loc[train, "vector"].to_numpy())
    for qid in ["vid00000", "vid00025"]:  # a training and a test video
        q = np.asarray(v.loc[qid, "vector"])
        sims = keys @ q
        order = [train[i] for i in np.argsort(-sims) if train[i] != qid]
        got = nb[(nb.query_video_id == qid) & (nb.direction == "v2a")]
        pos = got[got.polarity == "pos"].sort_values("rank")
        neg = got[got.polarity == "neg"].sort_values("rank")
        assert pos["neighbor_video_id"].tolist() == order[:3]
        assert neg["neighbor_video_id"].tolist() == order[::-1][:3]
        np.testing.assert_allclose(
            pos["score"], np.sort(sims[[train.index(i) for i in order[:3]]])[::-1], rtol=1e-5
        )


def test_joint_space_learns_and_is_seeded(data, default_run):
    hist = {
        k: [x["value"] for x in v]
        for k, v in default_run["js_metrics"].items()
        if isinstance(v, list)
    }
    assert hist["joint_space.train_loss"][-1] < hist["joint_space.train_loss"][0]
    for key in ("val_a2v_recall_at_1", "val_v2a_recall_at_5", "val_loss"):
        assert len(hist[f"joint_space.{key}"]) == _params()["joint_space"]["epochs"]
    again = nodes.train_joint_space(
        data["audio_features"], data["visual_features"], data["video_index"], _params(), 7
    )[0]
    for k, t in default_run["joint_space"]["state_dicts"]["joint_space"].items():
        torch.testing.assert_close(again["state_dicts"]["joint_space"][k], t)
    emb = default_run["emb"]
    assert set(emb.columns) >= {"video_id", "modality", "vector"}
    assert len(emb) == 60 and set(emb["source"]) == {"dataset"}
    norms = np.linalg.norm(np.stack(emb["vector"].to_numpy()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_quality_beats_random_and_metrics_are_mlflow_ready(default_run):
    q = default_run["quality"].set_index(["split", "direction", "kind"])["overlap"]
    for direction in ("v2a", "a2v"):
        assert q[("all", direction, "pos")] > q[("all", direction, "random")]
    metrics = default_run["quality_metrics"]
    assert "quality.all.v2a.pos_overlap" in metrics
    assert all(set(v) == {"value", "step"} for v in metrics.values())


def test_user_supplied_embeddings_table(data, tmp_path):
    """embeddings.source=table: neighbours follow the given vectors; no training happens."""
    ids = data["video_index"]["video_id"].tolist()
    rng = np.random.default_rng(0)
    vec = {m: normalize(rng.normal(size=(30, 8))) for m in ("audio", "visual")}
    table = pd.concat(
        [pd.DataFrame({"video_id": ids, "modality": m, "vector": list(vec[m])}) for m in vec]
    )
    params = _params(embeddings={"source": "table"})
    out = _run(data, params, tmp_path, ext={"emb": table})
    assert out["joint_space"]["state_dicts"] == {} and out["js_metrics"] == {}
    nb = out["neighbors"]
    train = [i for i, s in zip(ids, data["video_index"]["split"], strict=True) if s == "train"]
    tr = [ids.index(t) for t in train]
    for qi in (0, 29):
        sims = vec["visual"][tr] @ vec["audio"][qi]
        expect = [train[j] for j in np.argsort(-sims) if train[j] != ids[qi]][:3]
        got = nb[
            (nb.query_video_id == ids[qi]) & (nb.direction == "a2v") & (nb.polarity == "pos")
        ].sort_values("rank")
        assert got["neighbor_video_id"].tolist() == expect
    with pytest.raises(
        ValueError, match=r"external_embeddings has no visual vector for 1 of the 30"
    ):
        _run(data, params, ext={"emb": table.iloc[:-1]})
    with pytest.raises(ValueError, match="catalog entry external_embeddings is empty"):
        _run(data, params)
    bad = table.copy()
    bad.iloc[4, bad.columns.get_loc("vector")] = np.full(8, np.nan, np.float32)
    with pytest.raises(ValueError, match=r"NaN or inf \(e.g. video_id \['vid00004'\]\)"):
        _run(data, params, ext={"emb": bad})
    short = table.copy()
    short["vector"] = [
        v[:4] if m == "visual" else v
        for v, m in zip(short["vector"], short["modality"], strict=True)
    ]
    with pytest.raises(ValueError, match="different dimensions"):
        _run(data, params, ext={"emb": short})


def test_external_corpus_with_colliding_ids(data, tmp_path):
    """corpus.source=external: only corpus videos are retrieved, and a corpus video sharing
    a query's video_id (here an exact copy of a test video) is never returned to it."""
    ext = make_inputs(n_videos=12, seed=9, prefix="ext", fractions=(1.0, 0.0, 0.0))
    # the external corpus holds an exact copy of dataset test video vid00029, same id
    a = pd.concat(
        [
            ext["audio_features"][ext["audio_features"].video_id != "ext00000"],
            data["audio_features"][data["audio_features"].video_id == "vid00029"],
        ]
    )
    v = pd.concat(
        [
            ext["visual_features"][ext["visual_features"].video_id != "ext00000"],
            data["visual_features"][data["visual_features"].video_id == "vid00029"],
        ]
    )
    params = _params(corpus={"source": "external"})
    out = _run(data, params, tmp_path, ext={"audio": a, "visual": v, "meta": ext["scene_metadata"]})
    corpus = sorted(set(a["video_id"]))
    nb = out["neighbors"]
    assert set(nb["neighbor_video_id"]) <= set(corpus)
    assert out["audio_index"].ids == corpus
    assert not (
        (nb["query_video_id"] == "vid00029") & (nb["neighbor_video_id"] == "vid00029")
    ).any()
    # other videos may retrieve the corpus copy
    assert (nb["neighbor_video_id"] == "vid00029").any()
    emb = out["emb"]
    assert set(emb["source"]) == {"dataset", "external_corpus"}
    assert not emb.loc[emb["source"] == "dataset", "in_corpus"].any()
    assert len(emb[(emb.video_id == "vid00029")]) == 4  # dataset + corpus row, 2 modalities
    assert sorted(out["bank_a"]["video_id"].unique()) == corpus


def test_external_corpus_errors(data):
    params = _params(corpus={"source": "external"})
    with pytest.raises(ValueError, match="external_corpus_audio_features is empty"):
        _run(data, params)
    x = np.zeros((3, 4, 5), np.float32)  # D=5, the dataset has D=16
    wrong = tensor_to_frame(["e1", "e2", "e3"], x)
    with pytest.raises(ValueError, match=r"\[T, S, D\] = \[4, 1, 5\] per video but audio_features"):
        _run(data, params, ext={"audio": wrong, "visual": wrong})


def test_bad_inputs_stop_with_clear_errors(data):
    with pytest.raises(ValueError, match=r"neighbors.n=21 but query .* can retrieve only 20"):
        _run(data, _params(neighbors={"n": 21}))
    with pytest.raises(ValueError, match=r"factory='IVF64,Flat'.*corpus of 21 keys"):
        _run(data, _params(index={"factory": "IVF64,Flat"}))
    with pytest.raises(ValueError, match="build_index.embeddings.source='imagebind'"):
        _run(data, _params(embeddings={"source": "imagebind"}))
    no_train = data["video_index"].assign(split="test")
    with pytest.raises(ValueError, match="videos with 'train' questions, 0 in video_index"):
        nodes.train_joint_space(
            data["audio_features"], data["visual_features"], no_train, _params(), 7
        )
    with pytest.raises(ValueError, match="the corpus is empty"):
        nodes.build_memory_banks(
            data["audio_features"], data["visual_features"], no_train, EMPTY, EMPTY, _params()
        )
    short = data["visual_features"][data["visual_features"].video_id != "vid00003"]
    with pytest.raises(ValueError, match=r"visual_features has no rows for 1 videos"):
        nodes.train_joint_space(data["audio_features"], short, data["video_index"], _params(), 7)


def test_index_from_another_run_is_refused(data, default_run):
    other = _run(make_inputs(n_videos=30, seed=4, prefix="oth"), _params())
    with pytest.raises(ValueError, match="comes from another run"):
        nodes.retrieve_neighbors(
            default_run["emb"],
            data["video_index"],
            other["audio_index"],
            other["visual_index"],
            _params(),
        )


@pytest.mark.parametrize("factory, search", [("HNSW16", "efSearch=64"), ("IVF4,Flat", "nprobe=4")])
def test_approximate_indices_keep_the_contract(data, factory, search):
    out = _run(data, _params(index={"factory": factory, "search_params": search}))
    nb = out["neighbors"]
    assert len(nb) == 30 * 2 * 2 * 3
    assert (nb["neighbor_video_id"] != nb["query_video_id"]).all()
    assert out["audio_index"].metadata["factory"] == factory


def test_shared_videos_official_protocol(data):
    """Official MUSIC-AVQA splits share videos: the corpus and the joint space are the videos
    with training questions, a shared test video is retrievable for others, never for itself,
    and a test-only video never; retrieval quality counts a shared video in each split."""
    vi = data["video_index"]
    split = vi["split"].tolist()
    shared = [i for i, s in enumerate(split) if s == "test"][:3]  # test videos with train questions
    index = pd.DataFrame(
        {
            "video_id": vi["video_id"],
            "splits": ["train+test" if i in shared else s for i, s in enumerate(split)],
            "in_train": [s == "train" or i in shared for i, s in enumerate(split)],
            "in_val": [s == "val" for s in split],
            "in_test": [s == "test" for s in split],
        }
    )
    out = _run({**data, "video_index": index}, _params())
    corpus = set(index.loc[index["in_train"], "video_id"])
    test_only = set(index.loc[index["in_test"] & ~index["in_train"], "video_id"])
    assert sorted(out["joint_space"]["train_video_ids"]) == sorted(corpus)
    assert out["audio_index"].ids == sorted(corpus) == out["visual_index"].ids
    nb = out["neighbors"]
    assert (nb["neighbor_video_id"] != nb["query_video_id"]).all()
    assert not set(nb["neighbor_video_id"]) & test_only
    shared_ids = set(index["video_id"].iloc[shared])
    assert shared_ids & set(nb["neighbor_video_id"])  # retrievable for other videos
    assert set(nb.loc[nb["query_video_id"].isin(shared_ids), "query_splits"]) == {"train+test"}
    q = out["quality"]
    n_test = q[(q["split"] == "test") & (q["direction"] == "v2a") & (q["kind"] == "pos")]
    n_train = q[(q["split"] == "train") & (q["direction"] == "v2a") & (q["kind"] == "pos")]
    n = _params()["neighbors"]["n"]
    assert int(n_test["n_pairs"].iloc[0]) == n * int(index["in_test"].sum())
    assert int(n_train["n_pairs"].iloc[0]) == n * len(corpus)
    # the joint space validates on val videos outside the corpus; none left -> no val history
    no_val = index.assign(in_train=True)
    _, metrics, _ = nodes.train_joint_space(
        data["audio_features"],
        data["visual_features"],
        no_val,
        _params(joint_space={"keep": "last"}),
        7,
    )
    assert not any("val" in k for k in metrics)
