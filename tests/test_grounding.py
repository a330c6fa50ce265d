"""Stage I's grounding heads: labels from the generator's scenes -> features -> tensors ->
training (docs/model.md "Grounding")."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from r2scp_pipeline import avqa
from r2scp_pipeline.data import build_tensors
from r2scp_pipeline.grounding import attribute_tags, audio_target, tag_target
from r2scp_pipeline.pipelines.dataset.ingestion import AnnotationError, scene_tracks
from r2scp_pipeline.pipelines.dataset.nodes import TRACK_COLUMNS, instrument_tracks
from r2scp_pipeline.pipelines.features.nodes import grounding_labels
from r2scp_pipeline.training import model_checkpoint, train_stage_one, train_stage_two
from tests.synthetic import make_synthetic_tables

torch.set_num_threads(1)
MODEL = {"d_model": 16, "n_heads": 2, "router_hidden": 8, "dropout": 0.0, "k_purge": 3,
         "n_retrieve": 2}  # fmt: skip
LOOP = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "patience": 9, "checkpoint_dir": None}


def _tracks(rows):
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


def test_labels_follow_the_segments_and_the_grid():
    tracks = _tracks([
        # sounds in seconds 0-2 of a 20 s clip, stands bottom left; 6 dB above the piano
        ("v1", "violin", True, 0.05, 0.6, 0.25, 0.95, 20.0, np.array([0, 1, 2], np.int32),
         -12.0, 1.0),
        # off screen, sounds in seconds 10-11, rhythmic
        ("v1", "piano", False, np.nan, np.nan, np.nan, np.nan, 20.0, np.array([10, 11], np.int32),
         -18.0, 2.0),
        # top right, silent
        ("v1", "drum", True, 0.7, 0.1, 0.9, 0.3, 20.0, np.array([], np.int32), np.nan, np.nan),
    ])  # fmt: skip
    out = grounding_labels(tracks, {"segments": 10, "visual": {"grid": [2, 2]}})
    audio = out[out["modality"] == "audio"].set_index("t")
    # 20 s -> 10 segments: segment t reads second 2t
    assert list(audio["instruments"][0]) == ["violin"] and list(audio["instruments"][1]) == ["violin"]
    assert list(audio["instruments"][2]) == [] and list(audio["instruments"][5]) == ["piano"]
    # how loud (against the mean of the two, +-3 dB) and rhythmic (score 1 -> 0.5), per class
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(list(audio["loud"][0]), [sig(1.0)], rtol=1e-3)
    np.testing.assert_allclose(list(audio["rhythmic"][0]), [0.5], rtol=1e-3)
    np.testing.assert_allclose(list(audio["loud"][5]), [sig(-1.0)], rtol=1e-3)
    np.testing.assert_allclose(list(audio["rhythmic"][5]), [sig(2 * np.log(2.0))], rtol=1e-3)
    assert audio["loud"][1][0] > 0.5 > audio["loud"][5][0]  # the violin is the louder one
    assert list(audio["loud"][2]) == []
    visual = out[(out["modality"] == "visual") & (out["t"] == 3)].set_index("s")["instruments"]
    assert list(visual[2]) == ["violin"]  # row 1 (bottom), col 0
    assert list(visual[1]) == ["drum"]  # row 0 (top), col 1
    assert list(visual[0]) == [] and list(visual[3]) == []
    assert len(out) == 10 + 10 * 4
    # who is being played: the violin in the segments that read seconds 0 and 2, never the
    # silent drum; audio rows carry no playing tags, visual rows no loud / rhythmic ones
    playing = out[out["modality"] == "visual"].set_index(["t", "s"])["playing"]
    assert [list(playing[(t, 2)]) for t in range(3)] == [[1.0], [1.0], [0.0]]
    assert all(list(playing[(t, 1)]) == [0.0] for t in range(10))
    assert list(playing[(0, 0)]) == []
    assert out.loc[out["modality"] == "audio", "playing"].map(len).eq(0).all()
    assert out.loc[out["modality"] == "visual", "loud"].map(len).eq(0).all()


def test_attribute_tags_are_relative_loudness_and_rhythm():
    assert attribute_tags([], []) == []
    (loud,) = attribute_tags([-20.0], [1.0])
    assert loud == pytest.approx((0.5, 0.5))  # alone: neither louder nor quieter
    a, b, c = attribute_tags([-10.0, -16.0, -13.0], [0.5, 3.0, 1.0])
    assert a[0] > c[0] > b[0] and c[0] == pytest.approx(0.5)  # -13 dB is the mean
    assert b[1] > c[1] > a[1]
    with pytest.raises(ValueError, match="2 loudness values for 1 rhythm"):
        attribute_tags([1.0, 2.0], [1.0])
    k = len(avqa.INSTRUMENTS)
    y = audio_target(["violin", "violin", "piano"], [0.2, 0.7, 0.4], [0.9, 0.1, 0.3])
    v, p = avqa.INSTRUMENTS.index("violin"), avqa.INSTRUMENTS.index("piano")
    assert y.shape == (3 * k,) and y[:k].sum() == 2 and y[v] == y[p] == 1
    assert y[k + v] == pytest.approx(0.7) and y[2 * k + v] == pytest.approx(0.9)  # the larger tag
    assert y[k + p] == pytest.approx(0.4) and y[k:].sum() == pytest.approx(0.7 + 0.9 + 0.4 + 0.3)
    assert audio_target(["piano"]).shape == (k,)
    with pytest.raises(ValueError, match="unknown instrument 'kazoo'"):
        audio_target(["kazoo"])
    # the visual head's target: presence, then the playing tag of each class
    y = tag_target(["piano", "violin"], [[0.0, 1.0]])
    assert y.shape == (2 * k,) and y[:k].sum() == 2 and y[k + v] == 1 and y[k + p] == 0
    with pytest.raises(ValueError, match="1 tags for 2 instruments"):
        tag_target(["piano", "violin"], [[1.0]])


def test_sources_without_labels_give_empty_tables():
    empty = instrument_tracks({"source": "music_avqa", "music_avqa": {}}, pd.DataFrame({"video_id": ["a"]}))
    assert list(empty.columns) == list(TRACK_COLUMNS) and len(empty) == 0
    assert len(grounding_labels(empty, {"segments": 10, "visual": {"grid": [1, 3]}})) == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"instruments": None}, "'instruments' must be"),
        ({"seconds": 0}, "'seconds' must be a positive number"),
        ({"instruments": [{"class": "kazoo", "visible": True}]}, "instruments[0].class"),
        ({"instruments": [{"class": "violin", "visible": True, "active_seconds": [12]}]},
         "instruments[0].active_seconds"),
        ({"instruments": [{"class": "violin", "visible": True, "active_seconds": [1]}]},
         "needs numbers x, y, size"),
        ({"instruments": [{"class": "violin", "visible": False, "active_seconds": [1],
                           "loudness_db": -10.0}]}, "needs a number loudness_db and a rhythm_score"),
        ({"instruments": [{"class": "violin", "visible": False, "active_seconds": [1],
                           "loudness_db": -10.0, "rhythm_score": -1.0}]}, "rhythm_score >= 0"),
    ],
)  # fmt: skip
def test_bad_scene_records_name_the_video_and_field(change, message):
    scene = {"seconds": 10, "instruments": [], **change}
    with pytest.raises(AnnotationError, match="video 'v7'") as err:
        scene_tracks("scenes.json", "v7", scene)
    assert message in str(err.value) and "scenes.json" in str(err.value)


@pytest.fixture(scope="module")
def tables():
    return make_synthetic_tables(n_videos=40, seed=5, visual_tokens=2)


def _labels(tables, seed=0):
    """Random but fixed labels per (video, token): enough to check the mechanics."""
    rng = np.random.default_rng(seed)
    vids = sorted(set(tables["qa_pairs"]["video_id"]))
    rows = []
    for v in vids:
        for t in range(10):
            rows.append((v, "audio", t, 0, list(rng.choice(avqa.INSTRUMENTS, 2, replace=False))))
            for s in range(2):
                rows.append((v, "visual", t, s, [str(rng.choice(avqa.INSTRUMENTS))]))
    return pd.DataFrame(rows, columns=["video_id", "modality", "t", "s", "instruments"])


def test_build_tensors_reads_the_labels(tables):
    labels = _labels(tables)
    tens = build_tensors(**tables, n_neighbors=2, grounding_labels=labels.iloc[10:])
    k = len(avqa.INSTRUMENTS)
    assert tens.grounding["audio"].shape == (len(tens.video_ids), 10, 1, k)
    assert tens.grounding["visual"].shape == (len(tens.video_ids), 10, 2, k)
    assert tens.grounding["audio"][1:].sum(-1).eq(2).all()  # two classes per segment
    assert bool(tens.grounding_known.all())  # video 0 keeps its visual rows
    bad = labels.copy()
    bad.loc[0, "t"] = 10
    with pytest.raises(ValueError, match="grounding_labels: video .* t=10"):
        build_tensors(**tables, grounding_labels=bad)
    bad = labels.copy()
    bad.at[0, "instruments"] = ["kazoo"]
    with pytest.raises(ValueError, match="unknown instrument 'kazoo'"):
        build_tensors(**tables, grounding_labels=bad)
    assert build_tensors(**tables).fingerprint() != tens.fingerprint()


def _tagged(labels, seed=0):
    """``labels`` with loud / rhythmic tags on the audio rows (empty lists on the visual)."""
    rng = np.random.default_rng(seed)
    audio = labels["modality"].eq("audio")
    out = labels.copy()
    for col in ("loud", "rhythmic"):
        out[col] = [list(rng.uniform(0, 1, len(n))) if a else []
                    for n, a in zip(labels["instruments"], audio, strict=True)]  # fmt: skip
    return out


def test_build_tensors_reads_the_loudness_and_rhythm_tags(tables):
    labels = _tagged(_labels(tables))
    tens = build_tensors(**tables, n_neighbors=2, grounding_labels=labels)
    k = len(avqa.INSTRUMENTS)
    audio = tens.grounding["audio"]
    assert audio.shape == (len(tens.video_ids), 10, 1, 3 * k)
    assert tens.grounding["visual"].shape == (len(tens.video_ids), 10, 2, k)
    row = labels.iloc[0]  # video 0's first audio segment
    v = tens.video_ids.index(row["video_id"])
    for name, loud, rhythm in zip(row["instruments"], row["loud"], row["rhythmic"], strict=True):
        c = avqa.INSTRUMENTS.index(name)
        assert audio[v, 0, 0, c] == 1
        assert audio[v, 0, 0, k + c] == pytest.approx(loud)
        assert audio[v, 0, 0, 2 * k + c] == pytest.approx(rhythm)
    assert audio[v, 0, 0].count_nonzero() == 3 * len(row["instruments"])  # silent classes: 0


def _playing(labels, seed=0):
    """``labels`` with playing tags on the visual rows (empty lists on the audio)."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    out["playing"] = [list(rng.integers(0, 2, len(n)).astype(float)) if m == "visual" else []
                      for n, m in zip(labels["instruments"], labels["modality"], strict=True)]  # fmt: skip
    return out


def test_build_tensors_reads_the_playing_tags(tables):
    labels = _playing(_labels(tables))
    tens = build_tensors(**tables, n_neighbors=2, grounding_labels=labels)
    k = len(avqa.INSTRUMENTS)
    visual = tens.grounding["visual"]
    assert visual.shape == (len(tens.video_ids), 10, 2, 2 * k)
    assert tens.grounding["audio"].shape[-1] == k  # no loud / rhythmic columns: presence alone
    for row in labels[labels["modality"] == "visual"].head(20).itertuples():
        v = tens.video_ids.index(row.video_id)
        (name,), (tag,) = row.instruments, row.playing
        c = avqa.INSTRUMENTS.index(name)
        assert visual[v, row.t, row.s, c] == 1 and visual[v, row.t, row.s, k + c] == tag
        assert visual[v, row.t, row.s].sum() == 1 + tag  # other classes: 0
    bad = labels.copy()
    first = int(np.flatnonzero(labels["modality"].eq("visual"))[0])
    bad.at[first, "playing"] = [1.0, 0.0]
    with pytest.raises(ValueError, match=r"grounding_labels: video .* visual row t=0: 2 tags for 1"):
        build_tensors(**tables, grounding_labels=bad)


@pytest.mark.parametrize(
    ("switch", "modality", "field", "tags", "words"),
    [("grounding_attributes", "audio", "grounding_attributes", 2, "no loud / rhythmic tags"),
     ("grounding_playing", "visual", "grounding_visual_attributes", 1, "no playing tags")],
)  # fmt: skip
def test_stage_one_tags_more_than_presence_when_asked(tables, caplog, switch, modality, field, tags, words):
    k = len(avqa.INSTRUMENTS)
    other = "visual" if modality == "audio" else "audio"
    tens = build_tensors(**tables, n_neighbors=2, grounding_labels=_playing(_tagged(_labels(tables))))
    params = {**LOOP, "grounding_weight": 1.0, switch: True}
    model, summary = train_stage_one(tens, MODEL, params, {}, seed=0)
    assert getattr(model.cfg, field) == tags and model.cfg.n_grounding == k
    assert model.grounding.out[modality].out_features == (1 + tags) * k
    assert model.grounding.out[other].out_features == k  # the other switch is off
    loss = summary["history"][f"train_loss_grounding_{modality}"]
    assert loss[-1] < loss[0]
    # the switch off: presence alone, from the same labels
    plain, plain_summary = train_stage_one(tens, MODEL, {**params, switch: False}, {}, seed=0)
    assert getattr(plain.cfg, field) == 0 and plain.grounding.out[modality].out_features == k
    assert plain_summary["history"][f"train_loss_grounding_{modality}"][0] < loss[0]  # K tags, not more
    # asked for but the labels have no such tags: presence alone, with a warning that says why
    bare = build_tensors(**tables, n_neighbors=2, grounding_labels=_labels(tables))
    with caplog.at_level(logging.WARNING):
        model, _ = train_stage_one(bare, MODEL, {**params, "epochs": 1}, {}, seed=0)
    assert words in caplog.text and getattr(model.cfg, field) == 0


def test_stage_one_trains_the_grounding_heads_and_stage_two_drops_them(tables):
    tens = build_tensors(**tables, n_neighbors=2, grounding_labels=_labels(tables))
    model, summary = train_stage_one(tens, MODEL, {**LOOP, "grounding_weight": 1.0}, {}, seed=0)
    hist = summary["history"]
    for m in ("audio", "visual"):
        loss = hist[f"train_loss_grounding_{m}"]
        assert len(loss) == 4 and loss[-1] < loss[0]
    assert model.grounding is not None and model.cfg.n_grounding == len(avqa.INSTRUMENTS)
    plain, _ = train_stage_one(tens, MODEL, {**LOOP, "grounding_weight": 0.0}, {}, seed=0)
    assert plain.grounding is None  # weight 0: the paper's stage I, no heads
    assert not torch.equal(plain.phi["audio"].proj.weight, model.phi["audio"].proj.weight)
    ckpt = model_checkpoint(model, {"stage_one": True})
    mixed, _ = train_stage_two(ckpt, tens, MODEL, {**LOOP, "epochs": 1}, {}, seed=0)
    assert mixed.grounding is None
    for name, p in mixed.experts.named_parameters():
        assert torch.equal(p, model.experts.get_parameter(name))  # frozen experts kept


def test_grounding_without_labels_warns_and_trains_the_paper_stage_one(tables, caplog):
    tens = build_tensors(**tables)
    with caplog.at_level(logging.WARNING):
        model, summary = train_stage_one(tens, MODEL, {**LOOP, "epochs": 1, "grounding_weight": 1.0},
                                         {}, seed=0)  # fmt: skip
    assert "no grounding labels" in caplog.text
    assert model.grounding is None and "train_loss_grounding_audio" not in summary["history"]
    with pytest.raises(ValueError, match="grounding_weight must be >= 0"):
        train_stage_one(tens, MODEL, {**LOOP, "grounding_weight": -1.0}, {}, seed=0)
