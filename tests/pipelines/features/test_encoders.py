"""Unit tests of the encoders: log-mel frontend, media readers, EfficientNet, MiniLM, .npy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from r2scp_pipeline.encoders import (
    EfficientNetLite0Encoder,
    LogMelEncoder,
    MediaError,
    MiniLMQuestionEncoder,
    decode_frame,
    list_frames,
    load_precomputed,
    mel_filterbank,
    read_audio,
    read_mp4_audio,
    read_mp4_frames,
)

from .media import SR, frame_image, tone, write_frames, write_mp4, write_wav


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def visual_encoder() -> EfficientNetLite0Encoder:
    """EfficientNet-Lite0 loaded once for the module (64 px input, 2x2 map, keeps it fast)."""
    return EfficientNetLite0Encoder(input_size=64, grid=(1, 1))


# ---- log-mel -------------------------------------------------------------------------------


def test_mel_filterbank_matches_vggish_layout():
    w = mel_filterbank(64, 512, SR, 125.0, 7500.0)
    assert w.shape == (257, 64)
    assert (w >= 0).all() and w.max() <= 1.0 + 1e-6
    assert (w[0] == 0).all()  # DC bin carries no weight
    # every band gets some bin, band centres increase with the band index
    assert (w.sum(axis=0) > 0).all()
    assert (np.diff(w.argmax(axis=0)) >= 0).all()
    # no weight outside [125, 7500] Hz
    hz = np.linspace(0, SR / 2, 257)
    assert w[(hz < 125) | (hz > 7500)].sum() == 0


def test_logmel_framing_and_per_second_shape():
    enc = LogMelEncoder()
    wave = tone(440.0, 10.0)
    lm = enc.log_mel(wave)
    assert lm.shape == (1 + (len(wave) - 400) // 160, 64)  # VGGish framing: 998 frames
    enc = LogMelEncoder(pooling="mean_std")
    feats = enc(wave)
    assert feats.shape == (10, 1, 128) and feats.dtype == np.float32
    assert enc.dim == 128 and enc.tokens == 1
    feats = feats[:, 0]
    # a 440 Hz tone peaks in the band whose triangle covers 440 Hz
    band = int(np.argmax(mel_filterbank(64, 512, SR, 125.0, 7500.0)[round(440 / (SR / 512))]))
    assert abs(int(feats[:, :64].mean(axis=0).argmax()) - band) <= 1
    # std half: a steady tone varies little within a second, noise bands are ~flat but nonzero
    assert (feats[:, 64:] >= 0).all()
    assert LogMelEncoder(pooling="mean")(wave).shape == (10, 1, 64)


def test_logmel_frames_bins_are_means_of_their_frames():
    """pooling='frames' (default): S time bins per second, each the mean of its 10 ms frames."""
    enc = LogMelEncoder(frames_per_segment=25)
    assert enc.pooling == "frames" and enc.tokens == 25 and enc.dim == 64
    wave = tone(440.0, 10.0)
    feats = enc(wave)
    assert feats.shape == (10, 25, 64) and feats.dtype == np.float32
    lm = enc.log_mel(wave).numpy()
    centers = np.arange(len(lm)) * 160 + 200
    # bin 3 of second 2 = 40 ms from 2.12 s: frames whose centre lies in [2.12, 2.16) s
    sel = (centers >= 2.12 * SR) & (centers < 2.16 * SR)
    assert sel.sum() == 4
    np.testing.assert_allclose(feats[2, 3], lm[sel].mean(axis=0), atol=1e-5)
    # the mean over a second's bins is (nearly) the 'mean' pooling of that second
    np.testing.assert_allclose(
        feats.mean(axis=1), LogMelEncoder(pooling="mean")(wave)[:, 0], atol=0.05
    )


def test_logmel_frames_keep_loudness_and_onsets():
    """Raw log-mel bins: a louder clip is higher everywhere; a click shows in its own bin."""
    enc = LogMelEncoder(frames_per_segment=25)
    quiet, loud = enc(tone(440.0, 2.0, amp=0.05)), enc(tone(440.0, 2.0, amp=0.5))
    # the tone's band is ln(10) higher for a 10x louder tone: loudness is not normalised away
    assert (loud.max(axis=2) > quiet.max(axis=2) + 2.0).all()
    wave = tone(440.0, 2.0, amp=0.01)
    onset = int(1.5 * SR)  # second 1, bin 12 (1.48-1.52 s)
    wave[onset : onset + 320] += np.random.default_rng(0).uniform(-0.8, 0.8, 320).astype(np.float32)
    energy = enc(wave).mean(axis=2)  # [2, 25]
    assert np.unravel_index(energy.argmax(), energy.shape) == (1, 12)
    assert energy[1, 12] > energy[0].max() + 1.0


def test_logmel_frame_equals_manual_rfft():
    """torch.stft path == VGGish's frame -> periodic Hann -> |rfft(512)| -> mel -> log."""
    enc = LogMelEncoder()
    wave = tone(1000.0, 1.0, seed=3)
    k = 7
    frame = wave[k * 160 : k * 160 + 400].astype(np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    spec = np.abs(np.fft.rfft(frame * hann, n=512))
    expect = np.log(spec @ mel_filterbank(64, 512, SR, 125.0, 7500.0) + 0.01)
    np.testing.assert_allclose(enc.log_mel(wave)[k].numpy(), expect, atol=1e-4)


def test_logmel_short_clip_rounds_seconds_and_rejects_tiny():
    enc = LogMelEncoder(pooling="mean_std")
    assert enc(tone(440.0, 3.6)).shape == (4, 1, 128)
    assert enc(tone(440.0, 0.2)).shape == (1, 1, 128)
    # frames: the bins past the clip's end (3.6 s rounds to 4) take the nearest frame
    frames = LogMelEncoder(frames_per_segment=25)(tone(440.0, 3.6))
    assert frames.shape == (4, 25, 64) and np.isfinite(frames).all()
    np.testing.assert_allclose(frames[3, -1], frames[3, 14], atol=0.5)
    # 3.4 s rounds down to 3 s: the last bin holds only its own frames, not those of 3.0-3.4 s
    enc = LogMelEncoder(frames_per_segment=25)
    wave = tone(440.0, 3.4)
    wave[int(3.1 * SR) :] += 0.5  # a loud DC-free burst after the last whole second
    wave[int(3.1 * SR) :: 2] -= 1.0
    lm, frames = enc.log_mel(wave).numpy(), enc(wave)
    centers = np.arange(len(lm)) * 160 + 200
    own = (centers >= 2.96 * SR) & (centers < 3.0 * SR)
    assert frames.shape == (3, 25, 64)
    np.testing.assert_allclose(frames[2, 24], lm[own].mean(axis=0), atol=1e-5)
    with pytest.raises(MediaError, match="too short"):
        enc(np.zeros(100, np.float32))


def test_logmel_rejects_bad_parameters():
    with pytest.raises(ValueError, match="pooling"):
        LogMelEncoder(pooling="max")
    with pytest.raises(ValueError, match="fmax"):
        LogMelEncoder(fmax=9000.0)
    with pytest.raises(ValueError, match="frames_per_segment"):
        LogMelEncoder(frames_per_segment=0)
    with pytest.raises(ValueError, match="frames_per_segment"):
        LogMelEncoder(frames_per_segment=101)


# ---- audio reader --------------------------------------------------------------------------


def test_read_audio_ok_stereo_and_resample(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(440.0, 2.0))
    wave = read_audio(path, SR)
    assert wave.shape == (2 * SR,) and wave.dtype == np.float32
    import soundfile as sf

    stereo = np.stack([tone(440.0, 1.0), tone(440.0, 1.0)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, SR)
    assert read_audio(tmp_path / "s.wav", SR).shape == (SR,)
    sf.write(tmp_path / "r.wav", tone(440.0, 1.0), 8000)  # 2 s at 8 kHz -> 32000 samples
    assert read_audio(tmp_path / "r.wav", SR).shape == (2 * SR,)


def test_read_audio_errors_name_the_file(tmp_path):
    good = write_wav(tmp_path / "good.wav", tone(440.0, 2.0))
    data = open(good, "rb").read()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + b"\x13\x37" * 200)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "header_only.wav").write_bytes(data[:44])  # declares 2 s of data, holds none
    write_wav(tmp_path / "zero_frames.wav", np.zeros(0, np.float32))
    nan = tone(440.0, 1.0)
    nan[100] = np.nan
    write_wav(tmp_path / "nan.wav", nan, subtype="FLOAT")
    cases = {
        "trunc.wav": "truncated",
        "corrupt.wav": "cannot decode",
        "empty.wav": "cannot decode",
        "header_only.wav": "truncated",
        "zero_frames.wav": "no samples",
        "nan.wav": "NaN",
        "missing.wav": "not found",
    }
    for name, reason in cases.items():
        with pytest.raises(MediaError, match=reason) as info:
            read_audio(tmp_path / name, SR)
        assert name in str(info.value)


# ---- frames and EfficientNet ---------------------------------------------------------------


def test_list_frames_natural_order_and_errors(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    for name in ("10.jpg", "2.jpg", "1.jpg", "notes.txt"):
        (d / name).write_bytes(b"x")
    assert [p.name for p in list_frames(d)] == ["1.jpg", "2.jpg", "10.jpg"]
    with pytest.raises(MediaError, match="not found"):
        list_frames(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no .jpg"):
        list_frames(tmp_path / "empty")


def test_decode_frame_sizes_and_corrupt(tmp_path):
    write_frames(tmp_path / "f", [0], size=224)
    path = tmp_path / "f" / "000001.jpg"
    assert decode_frame(path, 112).shape == (112, 112, 3)
    assert decode_frame(path, 64).shape == (64, 64, 3)
    from PIL import Image

    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "wide.png")
    assert decode_frame(tmp_path / "wide.png", 32).shape == (32, 32, 3)
    data = path.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated") as info:
        decode_frame(tmp_path / "trunc.jpg", 64)
    assert "trunc.jpg" in str(info.value)
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MediaError, match="cannot decode"):
        decode_frame(tmp_path / "junk.jpg", 64)


def test_efficientnet_features_shape_determinism_and_content(visual_encoder):
    frames = np.stack([frame_image(i, 64) for i in range(4)])
    a = visual_encoder(frames)
    assert a.shape == (4, 1, 1280) and a.dtype == np.float32
    a = a[:, 0]
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, visual_encoder(frames)[:, 0])  # same input -> identical
    batch_of_one = visual_encoder(frames[:1])[0, 0]
    np.testing.assert_allclose(batch_of_one, a[0], atol=1e-4)  # batch-independent
    assert np.abs(a[0] - a[1]).max() > 1e-2  # different frames -> different features
    # pretrained weights, not a random init: relu6 features are >= 0 and not all tiny
    assert (a >= 0).all() and a.max() > 0.5


def test_efficientnet_grid_cells_are_row_major_and_average_to_the_global_token():
    frames = np.stack([frame_image(i, 96) for i in range(2)])
    frames[1, :, :48] = 0  # left half black in frame 1 only
    pooled = EfficientNetLite0Encoder(96, grid=(1, 1))  # 3x3 map
    grid = EfficientNetLite0Encoder(96, grid=(3, 3))
    cells = grid(frames)
    assert cells.shape == (2, 9, 1280) and grid.tokens == 9
    # 3x3 cells of a 3x3 map are its positions; their mean is the global pool ([1, 1])
    np.testing.assert_allclose(cells.mean(axis=1), pooled(frames)[:, 0], atol=1e-4)
    # row-major: cell r*3+c = map position (r, c); the blacked-out left column changes most
    change = np.abs(cells[1] - cells[0]).mean(axis=1).reshape(3, 3)
    assert change[:, 0].min() > change[:, 2].max()
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    fmap = grid.feature_map((x - grid.mean) / grid.std)  # [2, 1280, 3, 3]
    np.testing.assert_allclose(cells[:, 1], fmap[:, :, 0, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(cells[:, 3], fmap[:, :, 1, 0].numpy(), atol=1e-5)
    # the 320-d block token: same map, before the head
    block = EfficientNetLite0Encoder(96, grid=(2, 3), token="block")
    assert block(frames).shape == (2, 6, 320) and block.dim == 320


def test_efficientnet_grid_must_fit_the_map():
    for grid in ([2, 3], [0, 1], [1]):
        with pytest.raises(ValueError, match="features.visual.grid") as info:
            EfficientNetLite0Encoder(64, grid=grid)  # 2x2 map
    assert "input_size 64" in str(info.value) or "rows, cols" in str(info.value)
    with pytest.raises(ValueError, match="input_size 64"):
        EfficientNetLite0Encoder(64, grid=(2, 3))
    with pytest.raises(ValueError, match="token"):
        EfficientNetLite0Encoder(64, token="logits")


# ---- MiniLM --------------------------------------------------------------------------------


def test_minilm_real_tokens_only():
    enc = MiniLMQuestionEncoder(batch_size=2)
    texts = ["Is the violin playing?", "How many instruments are sounding in the video?", "Hi"]
    xs = enc(texts)
    assert enc.dim == 384
    for text, x in zip(texts, xs, strict=True):
        assert x.shape == (len(enc.tokenizer.tokenize(text)), 384)
    with_special = MiniLMQuestionEncoder(keep_special_tokens=True)(texts)
    assert [len(x) for x in with_special] == [len(x) + 2 for x in xs]
    np.testing.assert_allclose(with_special[0][1:-1], xs[0], atol=1e-5)  # same tokens, no pads
    # output order = input order, whatever the length-sorted batching did
    again = enc(texts[::-1])
    for x, y in zip(xs, again[::-1], strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_minilm_counts_truncation():
    enc = MiniLMQuestionEncoder(max_tokens=6)
    xs = enc(["one two three four five six seven eight", "short"])
    assert enc.truncated == 1
    assert len(xs[0]) == 4  # 6 minus [CLS], [SEP]


# ---- precomputed ---------------------------------------------------------------------------


def test_load_precomputed_shapes_and_errors(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((60, 128), np.float64))
    x = load_precomputed(tmp_path / "a.npy")
    assert x.shape == (60, 1, 128) and x.dtype == np.float32
    assert load_precomputed(tmp_path / "a.npy", grid=(2, 3)).shape == (60, 1, 128)  # pooled: S=1
    spatial = np.random.default_rng(0).standard_normal((60, 8, 14, 14)).astype(np.float32)
    np.save(tmp_path / "s.npy", spatial)
    np.testing.assert_allclose(
        load_precomputed(tmp_path / "s.npy")[:, 0], spatial.mean(axis=(2, 3)), atol=1e-5
    )
    cells = load_precomputed(tmp_path / "s.npy", grid=(2, 3))
    assert cells.shape == (60, 6, 8)
    # cell (row 1, col 2) of a 2x3 grid over 14x14: rows 7..13, cols 9..13 (adaptive pooling)
    np.testing.assert_allclose(cells[:, 5], spatial[:, :, 7:14, 9:14].mean(axis=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(cells[:, 1], spatial[:, :, 0:7, 4:10].mean(axis=(2, 3)), atol=1e-5)
    with pytest.raises(MediaError, match="features.visual.grid") as info:
        load_precomputed(tmp_path / "s.npy", grid=(15, 1))
    assert "s.npy" in str(info.value)
    bad = np.ones((60, 4), np.float32)
    bad[3, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    np.save(tmp_path / "vec.npy", np.ones(5))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    for name, reason in {
        "inf.npy": "NaN or inf",
        "vec.npy": "shape",
        "junk.npy": "cannot read",
        "missing.npy": "not found",
    }.items():
        with pytest.raises(MediaError, match=reason) as info:
            load_precomputed(tmp_path / name)
        assert name in str(info.value)


# ---- mp4 -------------------------------------------------------------------------------------


def _peak_hz(wave: np.ndarray, rate: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spec.argmax()])


def test_read_mp4_audio_mono_16k_and_resampled(tmp_path):
    path = write_mp4(tmp_path / "a.mp4", [0, 1, 2], wave=tone(440.0, 3.0))
    wave = read_mp4_audio(path, SR)
    assert wave.dtype == np.float32 and abs(len(wave) - 3 * SR) <= 2048  # AAC frame padding
    assert abs(_peak_hz(wave) - 440.0) < 2.0 and 0.1 < np.abs(wave).max() < 0.5
    # stereo 44.1 kHz -> mono 16 kHz, same tone
    t = np.arange(3 * 44100) / 44100
    stereo = write_mp4(
        tmp_path / "s.mp4",
        [0, 1, 2],
        wave=(0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32),
        audio_rate=44100,
        channels=2,
    )
    wave = read_mp4_audio(stereo, SR)
    assert abs(len(wave) - 3 * SR) <= 2048 and abs(_peak_hz(wave) - 1000.0) < 2.0


def test_read_mp4_frames_one_per_second(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", [5, 6, 7, 8], fps=4, size=32)
    frames, n = read_mp4_frames(path, 32, lambda n: np.array([3, 0, 2]))
    assert n == 4 and frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    for frame, pattern in zip(frames, [8, 5, 7], strict=True):
        err = np.abs(frame.astype(int) - frame_image(pattern, 32).astype(int)).mean()
        others = [
            np.abs(frame.astype(int) - frame_image(p, 32).astype(int)).mean()
            for p in {5, 6, 7, 8} - {pattern}
        ]
        assert err < 8 and err < min(others) / 3
    # resized like decode_frame: shorter side to the size, centre crop
    assert read_mp4_frames(path, 16, lambda n: np.arange(n))[0].shape == (4, 16, 16, 3)


def test_mp4_errors_name_the_file(tmp_path):
    good = write_mp4(tmp_path / "good.mp4", list(range(4)), wave=tone(440.0, 4.0))
    data = open(good, "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # index at the end: lost
    fast = write_mp4(tmp_path / "fast.mp4", list(range(4)), wave=tone(440.0, 4.0), faststart=True)
    data = open(fast, "rb").read()
    (tmp_path / "cut_fast.mp4").write_bytes(data[: len(data) // 2])  # index kept, data cut
    write_mp4(tmp_path / "mute.mp4", list(range(4)))  # no audio stream
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 50)
    audio_cases = {
        "cut.mp4": "corrupt or truncated",
        "cut_fast.mp4": "truncated",
        "mute.mp4": "no audio stream",
        "junk.mp4": "cannot open mp4",
        "missing.mp4": "not found",
    }
    for name, reason in audio_cases.items():
        with pytest.raises(MediaError, match=reason) as info:
            read_mp4_audio(tmp_path / name, SR)
        assert name in str(info.value)
    for name in ("cut.mp4", "cut_fast.mp4", "junk.mp4"):
        with pytest.raises(MediaError, match="truncated|cannot open") as info:
            read_mp4_frames(tmp_path / name, 32, lambda n: np.arange(n))
        assert name in str(info.value)
