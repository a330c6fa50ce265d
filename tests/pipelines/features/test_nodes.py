"""Tests of the ``features`` nodes: shapes, T sampling, determinism, errors / skips, NaN, .npy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from r2scp_pipeline.encoders import LogMelEncoder, MediaError
from r2scp_pipeline.pipelines.features import create_pipeline
from r2scp_pipeline.pipelines.features.nodes import (
    align_media_features,
    extract_audio_features,
    extract_question_features,
    extract_visual_features,
    feature_report,
    segment_indices,
)
from r2scp_pipeline.tensors import frame_to_padded, frame_to_tokens

from .media import make_video, tone, write_frames, write_mp4, write_wav

# well separated tones: second s of a test clip plays FREQS[k] for a known k
FREQS = [300.0, 520.0, 800.0, 1150.0, 1600.0, 2150.0, 2800.0, 3600.0, 4600.0, 5800.0]
WRONG_FREQ = 7000.0  # seconds that must NOT be picked


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def _index(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _peak_band(freq: float) -> int:
    return int(LogMelEncoder(pooling="mean")(tone(freq, 1.0))[0, 0].argmax())


def _tensor(frame: pd.DataFrame, ids: list[str] | None = None) -> np.ndarray:
    """A feature table as ``[N, T, S, D]``."""
    return frame_to_tokens(frame, "video_id", ids=ids)[1]


# ---- T sampling ----------------------------------------------------------------------------


def test_segment_indices():
    np.testing.assert_array_equal(segment_indices(60, 10), np.arange(0, 60, 6))  # official [::6]
    np.testing.assert_array_equal(segment_indices(10, 10), np.arange(10))
    np.testing.assert_array_equal(segment_indices(4, 10), [0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(segment_indices(1, 3), [0, 0, 0])
    idx = segment_indices(25, 10)
    assert idx[0] == 0 and idx[-1] <= 24 and (np.diff(idx) > 0).all()
    with pytest.raises(ValueError):
        segment_indices(0, 10)
    with pytest.raises(ValueError, match="features.segments"):
        segment_indices(5, 0)


def test_audio_long_clip_samples_every_sixth_second(tmp_path, make_params):
    # 60 s: second 6k plays FREQS[k]; every other second plays WRONG_FREQ
    secs = [tone(FREQS[s // 6] if s % 6 == 0 else WRONG_FREQ, 1.0, seed=s) for s in range(60)]
    write_wav(tmp_path / "long.wav", np.concatenate(secs))
    # 4 s: FREQS[0..3] -> padded with the 4th second
    write_wav(
        tmp_path / "short.wav", np.concatenate([tone(FREQS[s], 1.0, seed=s) for s in range(4)])
    )
    vi = _index(
        [
            {"video_id": "long", "audio_path": "long.wav", "frames_dir": None},
            {"video_id": "short", "audio_path": "short.wav", "frames_dir": None},
        ]
    )
    frame, stats = extract_audio_features(vi, make_params())
    x = _tensor(frame, ["long", "short"])
    assert x.shape == (2, 10, 25, 64) and stats["dim"] == 64 and stats["tokens"] == 25
    assert stats["skipped"] == []
    bands = [_peak_band(f) for f in FREQS]
    assert len(set(bands)) == 10 and _peak_band(WRONG_FREQ) not in bands
    assert [int(b) for b in x[0].mean(axis=1).argmax(axis=1)] == bands
    assert [int(b) for b in x[1].mean(axis=1).argmax(axis=1)] == bands[:4] + [bands[3]] * 6
    np.testing.assert_array_equal(x[1, 3], x[1, 9])  # padding repeats the last second exactly


def test_visual_long_and_short_frame_sequences(tmp_path, make_params):
    # reference: a 10-frame video showing patterns 0..9 (one per second)
    write_frames(tmp_path / "ref", list(range(10)))
    # 60 frames: frame 6k shows pattern k, the others pattern 99
    write_frames(tmp_path / "long", [s // 6 if s % 6 == 0 else 99 for s in range(60)])
    write_frames(tmp_path / "short", [0, 1, 2, 3])
    vi = _index(
        [{"video_id": v, "audio_path": None, "frames_dir": v} for v in ("ref", "long", "short")]
    )
    frame, stats = extract_visual_features(vi, make_params())
    ref, long, short = _tensor(frame, ["ref", "long", "short"])
    assert ref.shape == (10, 3, 1280) and stats["dim"] == 1280 and stats["tokens"] == 3
    # distinct patterns give clearly distinct features, so the comparisons below can fail
    assert min(np.abs(ref[i] - ref[j]).max() for i in range(10) for j in range(i)) > 1e-2
    np.testing.assert_allclose(long, ref, atol=1e-4)
    np.testing.assert_allclose(short[:4], ref[:4], atol=1e-4)
    np.testing.assert_array_equal(short[4:], np.repeat(short[3:4], 6, axis=0))


def test_segments_parameter_changes_T(tmp_path, make_params):
    vi = _index([make_video(tmp_path, "v0")])
    params = make_params(segments=5)
    a, sa = extract_audio_features(vi, params)
    v, sv = extract_visual_features(vi, params)
    assert _tensor(a).shape == (1, 5, 25, 64) and _tensor(v).shape == (1, 5, 3, 1280)
    assert sa["segments"] == sv["segments"] == 5


# ---- shapes, determinism -------------------------------------------------------------------


def test_default_encoders_shapes_and_determinism(tmp_path, make_params):
    rows = [make_video(tmp_path, f"v{i}", freq=300.0 + 200 * i) for i in range(3)]
    vi = _index(rows)
    params = make_params()
    a1, _ = extract_audio_features(vi, params)
    v1, _ = extract_visual_features(vi, params)
    a2, _ = extract_audio_features(vi, params)
    v2, _ = extract_visual_features(
        vi, make_params(visual={"efficientnet_lite0": {"batch_size": 16}})
    )
    assert list(a1.columns) == list(v1.columns) == ["video_id", "t", "s", "feature"]
    assert set(a1["video_id"]) == {"v0", "v1", "v2"}
    assert _tensor(a1).shape == (3, 10, 25, 64) and _tensor(v1).shape == (3, 10, 3, 1280)
    # row-major long table: (video, t, s) with s = 0..S-1 inside each segment
    v0 = v1[v1["video_id"] == "v0"]
    assert v0["t"].tolist()[:4] == [0] * 3 + [1] and v0["s"].tolist()[:4] == [0, 1, 2, 0]
    np.testing.assert_array_equal(_tensor(a1), _tensor(a2))
    np.testing.assert_array_equal(_tensor(v1), _tensor(v2))
    # different videos -> different features (the equality above is not trivially true)
    xa = _tensor(a1)
    assert np.abs(xa[0] - xa[1]).max() > 0.1


def test_question_features_dedup_ragged_and_deterministic(make_params):
    qa = pd.DataFrame(
        {
            "question_id": [1, 2, 3, 4],
            "question": [
                "Is the violin playing?",
                "Is the violin playing?",
                "How many instruments are sounding?",
                "Where is the loudest instrument?",
            ],
        }
    )
    frame, stats = extract_question_features(qa, make_params())
    frame2, _ = extract_question_features(qa, make_params())
    assert list(frame.columns) == ["question", "t", "feature"]
    texts, x, mask = frame_to_padded(frame)
    assert sorted(texts) == sorted(set(qa["question"])) and stats["unique_texts"] == 3
    assert x.shape[2] == 384 == stats["dim"]
    assert mask[texts.index("Is the violin playing?")].sum() == 5  # is the violin playing ?
    np.testing.assert_array_equal(frame_to_padded(frame2)[1], x)
    assert np.isfinite(x).all()


def test_question_blank_text_raises(make_params):
    qa = pd.DataFrame({"question_id": [7, 8], "question": ["Is it loud?", "  "]})
    with pytest.raises(ValueError, match=r"question_id \[8\]"):
        extract_question_features(qa, make_params())


# ---- broken media: raise or skip -----------------------------------------------------------


@pytest.fixture
def broken_index(tmp_path):
    """One good video and one of each failure (audio corrupt / truncated / silent, no frames)."""
    rows = [make_video(tmp_path, v) for v in ("good", "corrupt", "trunc", "silent", "noframes")]
    (tmp_path / "audio" / "corrupt.wav").write_bytes(b"RIFF\x00\x01\x00\x00WAVEjunkjunkjunk" * 5)
    data = (tmp_path / "audio" / "trunc.wav").read_bytes()
    (tmp_path / "audio" / "trunc.wav").write_bytes(data[: len(data) // 3])
    write_wav(tmp_path / "audio" / "silent.wav", np.zeros(10 * 16000, np.float32))
    rows[4]["frames_dir"] = "frames/does_not_exist"
    return _index(rows)


@pytest.mark.parametrize(
    "video_id, node, path, reason",
    [
        ("corrupt", extract_audio_features, "audio/corrupt.wav", "truncated WAV|cannot decode"),
        ("trunc", extract_audio_features, "audio/trunc.wav", "truncated WAV"),
        ("silent", extract_audio_features, "audio/silent.wav", "silent audio"),
        (
            "noframes",
            extract_visual_features,
            "frames/does_not_exist",
            "frames directory not found",
        ),
    ],
)
def test_broken_media_raises_naming_video_and_file(
    broken_index, make_params, video_id, node, path, reason
):
    vi = broken_index[broken_index["video_id"].isin(["good", video_id])]
    with pytest.raises(MediaError, match=reason) as info:
        node(vi, make_params())
    assert repr(video_id) in str(info.value) and path in str(info.value)
    assert info.value.video_id == video_id


def test_broken_media_skipped_counted_and_dropped_everywhere(broken_index, make_params):
    params = make_params(on_error="skip")
    a_raw, a_stats = extract_audio_features(broken_index, params)
    v_raw, v_stats = extract_visual_features(broken_index, params)
    assert sorted(s["video_id"] for s in a_stats["skipped"]) == ["corrupt", "silent", "trunc"]
    assert [s["video_id"] for s in v_stats["skipped"]] == ["noframes"]
    assert set(a_raw["video_id"]) == {"good", "noframes"}
    audio, visual = align_media_features(a_raw, v_raw, a_stats, v_stats)
    assert set(audio["video_id"]) == set(visual["video_id"]) == {"good"}
    q_stats = {
        "encoder": "minilm",
        "dim": 384,
        "questions": 1,
        "unique_texts": 1,
        "tokens_mean": 3.0,
        "tokens_max": 3,
        "truncated": 0,
        "seconds": 0.1,
    }
    items, skips = feature_report(a_stats, v_stats, q_stats)
    assert all(set(item) == {"value", "step"} for item in items.values())
    metrics = {k: item["value"] for k, item in items.items()}
    assert metrics["videos_total"] == 5 and metrics["videos_skipped"] == 4
    assert metrics["videos_extracted"] == 1 and metrics["audio_skipped"] == 3
    assert metrics["audio_dim"] == 64 and metrics["visual_dim"] == 1280
    assert metrics["audio_tokens"] == 25 and metrics["visual_tokens"] == 3
    assert all(isinstance(v, float) for v in metrics.values())
    assert skips["skipped_video_ids"] == ["corrupt", "noframes", "silent", "trunc"]
    assert {s["path"].split("/")[-1] for s in skips["skipped"]} >= {"trunc.wav", "does_not_exist"}


def test_all_videos_failing_is_an_error(broken_index, make_params):
    vi = broken_index[broken_index["video_id"] == "silent"]
    with pytest.raises(RuntimeError, match="all 1 videos failed audio"):
        extract_audio_features(vi, make_params(on_error="skip"))


def test_near_silent_float_wav_and_min_rms_switch(tmp_path, make_params):
    write_wav(tmp_path / "quiet.wav", tone(440.0, 10.0, amp=1e-5) * 0.0 + 1e-6, subtype="FLOAT")
    vi = _index([{"video_id": "quiet", "audio_path": "quiet.wav", "frames_dir": None}])
    with pytest.raises(MediaError, match="silent audio"):
        extract_audio_features(vi, make_params())
    frame, _ = extract_audio_features(vi, make_params(audio={"min_rms": 0.0}))
    assert np.isfinite(_tensor(frame)).all()


def test_nan_is_never_written(tmp_path, make_params, monkeypatch):
    bad = tone(440.0, 10.0)
    bad[5000] = np.nan
    write_wav(tmp_path / "nan.wav", bad, subtype="FLOAT")
    write_wav(tmp_path / "ok.wav", tone(440.0, 10.0))
    vi = _index(
        [
            {"video_id": "nan", "audio_path": "nan.wav", "frames_dir": None},
            {"video_id": "ok", "audio_path": "ok.wav", "frames_dir": None},
        ]
    )
    with pytest.raises(MediaError, match="NaN"):
        extract_audio_features(vi, make_params())
    frame, stats = extract_audio_features(vi, make_params(on_error="skip"))
    assert list(frame["video_id"].unique()) == ["ok"] and np.isfinite(_tensor(frame)).all()
    # an encoder that returns NaN for finite input: caught before anything is written
    real_call = LogMelEncoder.__call__

    def nan_for_second_clip(self, wave, path=None):
        out = real_call(self, wave, path)
        if str(path).endswith("ok.wav"):
            out[2, 3, 5] = np.nan
        return out

    monkeypatch.setattr(LogMelEncoder, "__call__", nan_for_second_clip)
    vi_ok = vi[vi["video_id"] == "ok"]
    with pytest.raises(MediaError, match="NaN or inf features"):
        extract_audio_features(vi_ok, make_params())


def test_bad_parameters_are_named(tmp_path, make_params):
    vi = _index([make_video(tmp_path, "v0")])
    with pytest.raises(ValueError, match="features.on_error"):
        extract_audio_features(vi, make_params(on_error="ignore"))
    with pytest.raises(ValueError, match="features.audio.encoder"):
        extract_audio_features(vi, make_params(audio={"encoder": "vggish"}))
    with pytest.raises(ValueError, match="features.visual.precomputed.dir"):
        extract_visual_features(vi, make_params(visual={"encoder": "precomputed"}))
    with pytest.raises(ValueError, match="repeats video_id"):
        extract_audio_features(pd.concat([vi, vi]), make_params())


# ---- tokens per segment: visual grid, audio time bins --------------------------------------


def test_visual_grid_parameter(tmp_path, make_params):
    vi = _index([make_video(tmp_path, v) for v in ("a", "b")])
    pooled, stats = extract_visual_features(vi, make_params(visual={"grid": [1, 1]}))
    assert list(pooled.columns) == ["video_id", "t", "feature"]  # S = 1: today's layout
    assert _tensor(pooled).shape == (2, 10, 1, 1280) and stats["tokens"] == 1
    cells, stats = extract_visual_features(vi, make_params(visual={"grid": [3, 3]}))
    assert _tensor(cells).shape == (2, 10, 9, 1280) and stats["tokens"] == 9
    # a 3x3 grid of the 3x3 map (96 px) holds every position: its mean is the global pool
    np.testing.assert_allclose(_tensor(cells).mean(axis=2), _tensor(pooled)[:, :, 0], atol=1e-4)
    block, stats = extract_visual_features(
        vi, make_params(visual={"efficientnet_lite0": {"token": "block"}})
    )
    assert _tensor(block).shape == (2, 10, 3, 320) and stats["dim"] == 320


def test_visual_grid_must_fit_input_size_before_any_work(tmp_path, make_params):
    vi = _index([{"video_id": "x", "audio_path": None, "frames_dir": "frames/none"}])
    for grid, size in (([4, 3], 96), ([2, 3], 64), ([2, 5], 128)):
        params = make_params(visual={"grid": grid, "efficientnet_lite0": {"input_size": size}})
        with pytest.raises(ValueError, match="features.visual.grid") as info:
            extract_visual_features(vi, params)
        assert f"input_size {size}" in str(info.value)
    with pytest.raises(ValueError, match=r"features.visual.grid must be \[rows, cols\]"):
        extract_visual_features(vi, make_params(visual={"grid": 6}))
    # a malformed grid is a parameter error for precomputed files too, not a skipped video
    (tmp_path / "npy").mkdir()
    precomputed = {"encoder": "precomputed", "precomputed": {"dir": str(tmp_path / "npy")}}
    with pytest.raises(ValueError, match="features.visual.grid"):
        extract_visual_features(
            vi, make_params(on_error="skip", visual=precomputed | {"grid": [0, 2]})
        )


def test_audio_pooling_modes(tmp_path, make_params):
    vi = _index([make_video(tmp_path, "a", freq=440.0)])
    frames, stats = extract_audio_features(
        vi, make_params(audio={"logmel": {"frames_per_segment": 32}})
    )
    assert _tensor(frames).shape == (1, 10, 32, 64) and stats["tokens"] == 32
    for pooling, dim in (("mean_std", 128), ("mean", 64)):
        table, stats = extract_audio_features(
            vi, make_params(audio={"logmel": {"pooling": pooling}})
        )
        assert list(table.columns) == ["video_id", "t", "feature"]
        assert _tensor(table).shape == (1, 10, 1, dim) and stats["tokens"] == 1
    with pytest.raises(ValueError, match="features.audio.logmel.pooling"):
        extract_audio_features(vi, make_params(audio={"logmel": {"pooling": "max"}}))


# ---- the odd video out: the shape most videos share is the reference -----------------------


@pytest.fixture
def odd_first(tmp_path, make_params):
    """Precomputed audio where the FIRST video has D = 100 and the three others D = 128."""
    adir = tmp_path / "vggish"
    adir.mkdir()
    np.save(adir / "odd.npy", np.ones((60, 100), np.float32))
    for v in ("g1", "g2", "g3"):
        np.save(adir / f"{v}.npy", np.ones((60, 128), np.float32))
    vi = _index([{"video_id": v} for v in ("odd", "g1", "g2", "g3")])
    audio = {"encoder": "precomputed", "precomputed": {"dir": str(adir)}}
    return vi, lambda **over: make_params(audio=audio, **over)


def test_odd_first_video_is_blamed_on_raise(odd_first):
    vi, params = odd_first
    with pytest.raises(MediaError, match=r"D=100\].*D=128\] of 3 of 4 videos") as info:
        extract_audio_features(vi, params())
    assert info.value.video_id == "odd" and "odd.npy" in str(info.value)


def test_odd_first_video_is_skipped_and_the_good_ones_kept(odd_first):
    vi, params = odd_first
    frame, stats = extract_audio_features(vi, params(on_error="skip"))
    assert sorted(frame["video_id"].unique()) == ["g1", "g2", "g3"]
    assert [s["video_id"] for s in stats["skipped"]] == ["odd"]
    assert stats["skipped"][0]["path"].endswith("odd.npy") and stats["dim"] == 128


# ---- raw mp4 ---------------------------------------------------------------------------------


def _mp4_row(video_id: str, **paths: str | None) -> dict:
    return {
        "video_id": video_id,
        "audio_path": None,
        "frames_dir": None,
        "video_path": None,
    } | paths


def test_mp4_source_matches_extracted_media(tmp_path, make_params):
    """The same clip as wav + JPEG frames and as an mp4 gives (nearly) the same features."""
    patterns = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    wave = np.concatenate([tone(FREQS[s], 1.0, seed=s) for s in range(10)])
    write_wav(tmp_path / "clip.wav", wave)
    write_frames(tmp_path / "clip", patterns, size=96)
    write_mp4(tmp_path / "videos" / "clip.mp4", patterns, fps=2, size=96, wave=wave)
    vi = _index(
        [
            _mp4_row("files", audio_path="clip.wav", frames_dir="clip"),
            _mp4_row("mp4", video_path="videos/clip.mp4"),  # auto: no extracted files -> mp4
        ]
    )
    a, a_stats = extract_audio_features(vi, make_params())
    v, v_stats = extract_visual_features(vi, make_params())
    assert a_stats["skipped"] == v_stats["skipped"] == []
    xa, xv = _tensor(a, ["files", "mp4"]), _tensor(v, ["files", "mp4"])
    assert xa.shape == (2, 10, 25, 64) and xv.shape == (2, 10, 3, 1280)
    # audio: same peak band every second, log-mel close (AAC is lossy)
    bands = [_peak_band(f) for f in FREQS]
    assert [int(b) for b in xa[1].mean(axis=1).argmax(axis=1)] == bands
    assert np.abs(xa[1].mean(axis=1) - xa[0].mean(axis=1)).max() < 1.0
    # visual: each mp4 segment is nearest to the frame of the same second
    f, m = xv[0].reshape(10, -1), xv[1].reshape(10, -1)
    dist = ((m[:, None] - f[None]) ** 2).sum(-1)  # [mp4 t, files t]
    same = np.array(patterns)[dist.argmin(axis=1)] == np.array(patterns)
    assert same.all()


def test_mp4_source_parameter(tmp_path, make_params):
    make_video(tmp_path, "v")  # audio/v.wav, frames/v
    write_mp4(tmp_path / "videos" / "v.mp4", list(range(10)), fps=1, wave=tone(300.0, 10.0))
    row = _mp4_row("v", audio_path="audio/v.wav", frames_dir="frames/v", video_path="videos/v.mp4")
    vi = _index([row])
    for source in ("auto", "extracted", "mp4"):
        a, _ = extract_audio_features(vi, make_params(source=source))
        peak = _tensor(a)[0].mean(axis=1).argmax(axis=1)  # make_video plays 440 Hz, the mp4 300
        assert (peak == _peak_band(300.0 if source == "mp4" else 440.0)).all(), source
    only_mp4 = _index([_mp4_row("v", video_path="videos/v.mp4")])
    with pytest.raises(MediaError, match="gives no audio_path") as info:
        extract_audio_features(only_mp4, make_params(source="extracted"))
    assert "features.source" in str(info.value)
    with pytest.raises(ValueError, match="features.source"):
        extract_audio_features(only_mp4, make_params(source="webm"))
    with pytest.raises(ValueError, match="lacks column.*frames_dir or video_path"):
        extract_visual_features(_index([{"video_id": "v"}]), make_params())


def test_broken_mp4_raises_or_is_skipped(tmp_path, make_params):
    wave = tone(440.0, 10.0)
    write_mp4(tmp_path / "videos" / "good.mp4", list(range(10)), fps=1, wave=wave)
    write_mp4(tmp_path / "videos" / "mute.mp4", list(range(10)), fps=1)  # no audio stream
    data = (tmp_path / "videos" / "good.mp4").read_bytes()
    (tmp_path / "videos" / "cut.mp4").write_bytes(data[: len(data) // 2])
    vi = _index([_mp4_row(v, video_path=f"videos/{v}.mp4") for v in ("good", "mute", "cut")])
    with pytest.raises(MediaError, match="no audio stream") as info:
        extract_audio_features(vi[vi["video_id"] != "cut"], make_params())
    assert info.value.video_id == "mute" and "videos/mute.mp4" in str(info.value)
    with pytest.raises(MediaError, match="corrupt or truncated") as info:
        extract_visual_features(vi[vi["video_id"] != "mute"], make_params())
    assert info.value.video_id == "cut" and "videos/cut.mp4" in str(info.value)
    params = make_params(on_error="skip")
    a, a_stats = extract_audio_features(vi, params)
    v, v_stats = extract_visual_features(vi, params)
    assert sorted(s["video_id"] for s in a_stats["skipped"]) == ["cut", "mute"]
    assert [s["video_id"] for s in v_stats["skipped"]] == ["cut"]  # mute has frames
    audio, visual = align_media_features(a, v, a_stats, v_stats)
    assert set(audio["video_id"]) == set(visual["video_id"]) == {"good"}
    q_stats = dict.fromkeys(("dim", "questions", "unique_texts", "tokens_max", "truncated"), 1)
    q_stats |= {"encoder": "minilm", "tokens_mean": 1.0, "seconds": 0.0}
    metrics = {k: i["value"] for k, i in feature_report(a_stats, v_stats, q_stats)[0].items()}
    assert metrics["videos_skipped"] == 2 and metrics["audio_skipped"] == 2


# ---- precomputed ---------------------------------------------------------------------------


def test_precomputed_npy_sampling_padding_and_skip(tmp_path, make_params):
    adir, vdir = tmp_path / "vggish", tmp_path / "res18"
    adir.mkdir()
    vdir.mkdir()
    # row s of every official file holds the value s (so the picked seconds are visible)
    np.save(adir / "long.npy", np.repeat(np.arange(60, dtype=np.float32)[:, None], 128, axis=1))
    np.save(adir / "short.npy", np.repeat(np.arange(4, dtype=np.float32)[:, None], 128, axis=1))
    # spatial ResNet-18 layout [seconds, C, 14, 14] (C = 16 to stay small), pooled to the grid
    spatial = np.arange(60, dtype=np.float32)[:, None, None, None]
    np.save(vdir / "long.npy", np.broadcast_to(spatial, (60, 16, 14, 14)).copy())
    np.save(vdir / "short.npy", np.broadcast_to(spatial[:4], (4, 16, 14, 14)).copy())
    bad = np.ones((60, 128), np.float32)
    bad[10, 0] = np.nan
    np.save(adir / "nan.npy", bad)
    params = make_params(
        on_error="skip",
        audio={"encoder": "precomputed", "precomputed": {"dir": str(adir)}},
        visual={"encoder": "precomputed", "precomputed": {"dir": str(vdir)}},
    )
    vi = _index([{"video_id": v} for v in ("long", "short", "nan", "absent")])
    a, a_stats = extract_audio_features(vi, params)
    v, v_stats = extract_visual_features(vi, params)
    xa, xv = _tensor(a, ["long", "short"]), _tensor(v, ["long", "short"])
    assert xa.shape == (2, 10, 1, 128) and xv.shape == (2, 10, 3, 16)
    assert list(a.columns) == ["video_id", "t", "feature"]  # S = 1: no s column
    np.testing.assert_array_equal(xa[0, :, 0, 0], np.arange(0, 60, 6))
    np.testing.assert_array_equal(xa[1, :, 0, 0], [0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(xv[0, :, 1, 7], np.arange(0, 60, 6))
    np.testing.assert_array_equal(xv[1, :, 1, 7], [0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    assert sorted(s["video_id"] for s in a_stats["skipped"]) == ["absent", "nan"]
    assert sorted(s["video_id"] for s in v_stats["skipped"]) == ["absent", "nan"]
    assert np.isfinite(np.stack(a["feature"].to_numpy())).all()
    with pytest.raises(MediaError, match="absent.npy"):
        extract_audio_features(
            vi[vi["video_id"] == "absent"],
            make_params(audio={"encoder": "precomputed", "precomputed": {"dir": str(adir)}}),
        )


# ---- the pipeline --------------------------------------------------------------------------


def test_pipeline_contract():
    pipe = create_pipeline()
    assert pipe.inputs() == {"video_index", "qa_pairs", "instrument_tracks", "params:features"}
    assert {
        "grounding_labels",
        "audio_features",
        "visual_features",
        "question_features",
        "feature_report",
        "feature_skipped",
    } <= pipe.outputs()


def test_pipeline_runs_in_memory(tmp_path, make_params):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    vi = _index([make_video(tmp_path, v) for v in ("a", "b")])
    qa = pd.DataFrame(
        {
            "question_id": [0, 1, 2],
            "video_id": ["a", "a", "b"],
            "question": ["Is it loud?", "Is it loud?", "What plays first?"],
        }
    )
    catalog = DataCatalog(
        {
            "video_index": MemoryDataset(vi),
            "qa_pairs": MemoryDataset(qa),
            "instrument_tracks": MemoryDataset(pd.DataFrame()),  # no labels (not embedded data)
            "params:features": MemoryDataset(make_params()),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    assert catalog.load("grounding_labels").empty
    audio, visual = catalog.load("audio_features"), catalog.load("visual_features")
    report, skips = catalog.load("feature_report"), catalog.load("feature_skipped")
    assert _tensor(audio, ["a", "b"]).shape == (2, 10, 25, 64)
    assert _tensor(visual, ["a", "b"]).shape == (2, 10, 3, 1280)
    assert frame_to_padded(catalog.load("question_features"))[1].shape[0] == 2
    assert report["videos_extracted"]["value"] == 2.0 and report["question_texts"]["value"] == 2.0
    assert skips["skipped_video_ids"] == []
