"""Audio of a scene: per-instrument stems from the note bank, then the room, voice and noise.

``render_stems`` is the ground truth of every audio question: the answers' definitions
(``docs/dataset_embedded.md``) are measured on these stems, *before* mixing. ``mix_scene`` then
makes the task harder: a synthetic room (convolution with exponentially decaying noise),
an optional voiceover, coloured background noise, and a peak limit.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .assets import INSTRUMENT_SPECS, NoteBank, load_note_bank, load_voice_clips

FADE_IN_S = 0.002
FADE_OUT_S = 0.015
PEAK_LIMIT = 0.95


def _shifted(clip: np.ndarray, semitones: float, n_out: int) -> np.ndarray:
    """``n_out`` samples of ``clip`` pitch-shifted by resampling (linear interpolation)."""
    if abs(semitones) < 1e-9:
        return clip[:n_out].astype(np.float64)
    ratio = 2.0 ** (semitones / 12.0)
    n_out = min(n_out, int((len(clip) - 1) / ratio))
    pos = np.arange(n_out, dtype=np.float64) * ratio
    i = pos.astype(np.int64)
    frac = pos - i
    return clip[i] * (1.0 - frac) + clip[i + 1] * frac


def _nearest_key(keys: tuple[int, ...], key: int) -> int:
    return min(keys, key=lambda k: (abs(k - key), k))


def render_stem(inst: dict[str, Any], bank: NoteBank, sample_rate: int, seconds: int) -> np.ndarray:
    """One instrument's dry stem (float32, ``seconds * sample_rate``), zero outside its notes,
    scaled so that its RMS over ``[onset, offset]`` is ``loudness_db`` dBFS."""
    n = seconds * sample_rate
    stem = np.zeros(n, dtype=np.float64)
    spec = INSTRUMENT_SPECS[inst["class"]]
    clips = bank[inst["class"]]
    fade_in = max(1, int(FADE_IN_S * sample_rate))
    fade_out = max(1, int(FADE_OUT_S * sample_rate))
    for start, dur, key, gain_db in inst["notes"]:
        src = int(key) if spec.program is None else _nearest_key(spec.keys, int(key))
        i0 = int(round(start * sample_rate))
        m = min(int(round(dur * sample_rate)), n - i0)
        seg = _shifted(clips[src], float(key) - src, m)
        m = len(seg)
        fi, fo = min(fade_in, m // 2), min(fade_out, m // 2)
        seg[:fi] *= np.linspace(0.0, 1.0, fi, endpoint=False)
        seg[m - fo :] *= np.linspace(1.0, 0.0, fo)
        stem[i0 : i0 + m] += seg * 10.0 ** (gain_db / 20.0)
    a = int(round(inst["onset"] * sample_rate))
    b = int(round(inst["offset"] * sample_rate))
    rms = float(np.sqrt(np.mean(stem[a:b] ** 2))) if b > a else 0.0
    if rms <= 0.0:
        raise RuntimeError(
            f"instrument {inst['id']} ({inst['class']}) rendered silence; the note bank is broken"
        )
    stem *= 10.0 ** (inst["loudness_db"] / 20.0) / rms
    return stem.astype(np.float32)


def render_stems(scene: dict[str, Any], bank: NoteBank | None = None) -> dict[int, np.ndarray]:
    """Per-instrument dry stems, ``{instrument id: float32 waveform}``, for *every* instrument
    of the scene (a silent one gets zeros): whether it sounds is a property of its stem.

    Uses the scene's own ``sound_source`` (the committed note bank unless a ``.sf2`` was asked
    for) at the scene's ``sample_rate``; deterministic, no random draw.
    """
    sr, seconds = int(scene["sample_rate"]), int(scene["seconds"])
    if bank is None:
        bank = load_note_bank(scene["sound_source"], sr)
    return {
        inst["id"]: render_stem(inst, bank, sr, seconds)
        if inst["sounding"]
        else np.zeros(seconds * sr, dtype=np.float32)
        for inst in scene["instruments"]
    }


def render_voiceover(scene: dict[str, Any]) -> np.ndarray | None:
    """The voiceover track at unit scale (phrases placed and pitch-shifted), or None."""
    vo = scene.get("voiceover")
    if not vo:
        return None
    sr, n = int(scene["sample_rate"]), int(scene["seconds"]) * int(scene["sample_rate"])
    clips = load_voice_clips(sr)
    out = np.zeros(n, dtype=np.float64)
    for clip_idx, start, shift in vo["phrases"]:
        clip = clips[int(clip_idx)]
        i0 = int(round(start * sr))
        seg = _shifted(clip, shift, min(n - i0, len(clip)))
        out[i0 : i0 + len(seg)] += seg
    return out


def _room_ir(rng: np.random.Generator, rt60: float, sr: int) -> np.ndarray:
    """Exponentially decaying noise (-60 dB at ``rt60``), unit energy, no direct path."""
    n = max(16, int(min(rt60, 1.5) * sr))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    ir[: int(0.005 * sr)] = 0.0  # 5 ms pre-delay
    return ir / np.sqrt(np.sum(ir**2))


@functools.lru_cache(maxsize=32)
def _fast_len(m: int) -> int:
    """Smallest even 5-smooth integer >= ``m`` (a fast FFT size for pocketfft)."""
    best, p2 = 2 * m, 2  # even: the last rfft bin is the Nyquist bin
    while p2 < 2 * m:
        p3 = p2
        while p3 < 2 * m:
            p5 = p3
            while p5 < m:
                p5 *= 5
            best = min(best, p5)
            p3 *= 3
        p2 *= 2
    return best


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def mix_scene(
    scene: dict[str, Any], stems: dict[int, np.ndarray], voice: np.ndarray | None
) -> np.ndarray:
    """The video's soundtrack (float32 in [-0.95, 0.95]) from its stems and voiceover.

    ``dry + 10**(wet_db/20) * (dry * room_ir)`` plus noise with power ~ 1/f**noise_tilt (room
    tone indoors, rumble outdoors) at ``snr_db`` below the dry music, both built in one
    spectrum (one inverse FFT); the voiceover at ``level_db`` relative to the dry music; then a
    peak limit.
    """
    sr, n = int(scene["sample_rate"]), int(scene["seconds"]) * int(scene["sample_rate"])
    m = scene["mix"]
    rng = np.random.default_rng(m["seed"])
    dry = np.zeros(n, dtype=np.float64)
    for stem in stems.values():
        dry += stem
    level = max(_rms(dry), 1e-4)
    ir = _room_ir(rng, m["rt60"], sr)
    size = _fast_len(n + len(ir) - 1)
    spec = np.fft.rfft(dry, size)
    spec *= 1.0 + 10.0 ** (m["wet_db"] / 20.0) * np.fft.rfft(ir, size)
    nb = size // 2 + 1
    noise = rng.standard_normal(nb) + 1j * rng.standard_normal(nb)
    f = np.fft.rfftfreq(size, 1.0 / sr)
    f[0] = f[1]
    noise *= f ** (-m["noise_tilt"] / 2.0)
    noise[0] = 0.0
    power = (
        2.0 * np.sum(np.abs(noise) ** 2) - np.abs(noise[-1]) ** 2
    )  # Parseval: sum of x**2 * size
    spec += noise * (level * 10.0 ** (-m["snr_db"] / 20.0) / np.sqrt(power / size**2))
    out = np.fft.irfft(spec, size)[:n]
    if voice is not None:
        talking = np.abs(voice) > 1e-4
        v_rms = float(np.sqrt(np.mean(voice[talking] ** 2))) if talking.any() else 0.0
        if v_rms > 0:
            out += voice * (level * 10.0 ** (scene["voiceover"]["level_db"] / 20.0) / v_rms)
    peak = float(np.max(np.abs(out)))
    if peak > PEAK_LIMIT:
        out *= PEAK_LIMIT / peak
    return out.astype(np.float32)


def render_audio(scene: dict[str, Any], bank: NoteBank | None = None) -> np.ndarray:
    """Stems -> mix, in one call (what the generator writes to ``audio/<video_id>.wav``)."""
    return mix_scene(scene, render_stems(scene, bank), render_voiceover(scene))
