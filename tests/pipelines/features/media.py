"""Tiny synthetic media for the ``features`` tests: wavs (soundfile), JPEG frames (Pillow) and
mp4s (PyAV)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

SR = 16000


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A sine tone with a little noise (float32, 16 kHz)."""
    t = np.arange(int(round(seconds * SR))) / SR
    noise = 0.001 * np.random.default_rng(seed).standard_normal(len(t))
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, subtype: str = "PCM_16") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SR, subtype=subtype)
    return str(path)


def frame_image(index: int, size: int = 32) -> np.ndarray:
    """A frame that differs clearly per ``index``: a background colour and a moving square."""
    rng = np.random.default_rng(1000 + index)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    y, x = rng.integers(0, size // 2, 2)
    img[y : y + size // 2, x : x + size // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def write_frames(frames_dir: Path, indices: list[int], size: int = 32) -> str:
    """``000001.jpg ...`` where frame ``s`` shows ``frame_image(indices[s])``."""
    frames_dir.mkdir(parents=True, exist_ok=True)
    for s, index in enumerate(indices):
        Image.fromarray(frame_image(index, size)).save(frames_dir / f"{s + 1:06d}.jpg", quality=95)
    return str(frames_dir)


def make_video(root: Path, video_id: str, seconds: int = 10, freq: float = 440.0) -> dict[str, Any]:
    """A good video: a ``seconds``-long tone and ``seconds`` frames; paths relative to ``root``."""
    write_wav(root / "audio" / f"{video_id}.wav", tone(freq, seconds, seed=sum(map(ord, video_id))))
    write_frames(root / "frames" / video_id, list(range(seconds)))
    return {
        "video_id": video_id,
        "split": "train",
        "audio_path": f"audio/{video_id}.wav",
        "frames_dir": f"frames/{video_id}",
        "video_path": None,
    }


def write_mp4(
    path: Path,
    patterns: list[int],
    fps: int = 4,
    size: int = 32,
    wave: np.ndarray | None = None,
    audio_rate: int = SR,
    channels: int = 1,
    faststart: bool = False,
) -> str:
    """A small mp4 (MPEG-4 part 2 video, AAC audio) encoded with PyAV: second ``s`` shows
    ``frame_image(patterns[s], size)`` for ``fps`` frames; ``wave`` (mono, ``audio_rate``; copied
    to every channel) is the audio track, none when ``None``. ``faststart`` puts the index
    (moov) before the data, as web-ready files do, so a cut-off copy still opens."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.bit_rate = 2_000_000  # near-lossless at this size: decoded frames ~ the images
        if wave is not None:
            audio = out.add_stream("aac", rate=audio_rate)
            audio.layout = "mono" if channels == 1 else "stereo"
        for index in patterns:
            img = frame_image(index, size)
            for _ in range(fps):
                for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if wave is not None:
            planar = np.repeat(np.asarray(wave, np.float32)[None], channels, axis=0)
            frame = av.AudioFrame.from_ndarray(
                planar, format="fltp", layout="mono" if channels == 1 else "stereo"
            )
            frame.sample_rate = audio_rate
            for packet in audio.encode(frame):
                out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return str(path)
