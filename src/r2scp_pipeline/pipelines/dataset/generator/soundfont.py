"""Render a note bank from a ``.sf2`` sound font with FluidSynth (pyfluidsynth).

Used by ``scripts/build_assets.py`` (FluidR3_GM -> the committed FLAC bank) and at generation
time when ``sound_source`` / ``splits_sound_source`` names a ``.sf2`` file (domain-shift
studies). Only this module needs pyfluidsynth and the system library ``libfluidsynth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .assets import (
    INSTRUMENT_SPECS,
    MELODIC_CLIP_SECONDS,
    MELODIC_HOLD_SECONDS,
    PERCUSSION_CLIP_SECONDS,
    NoteBank,
)

PERCUSSION_CHANNEL = 9
VELOCITY = 100


def _import_fluidsynth():
    try:
        import fluidsynth  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(
            "a .sf2 sound_source needs pyfluidsynth and the FluidSynth library, which could not "
            f"be loaded ({exc}). Install them with `pip install pyfluidsynth` and "
            "`apt-get install fluidsynth` (Debian/Ubuntu), or set dataset.embedded.sound_source "
            "(and splits_sound_source) to `note_bank` to use the committed note bank."
        ) from exc
    return fluidsynth


def _trim_and_normalise(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop leading silence (attack at t = 0) and scale the peak to 0.9."""
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak <= 0.0:
        return clip.astype(np.float32)
    start = int(np.argmax(np.abs(clip) > 1e-3 * peak))
    start = max(0, start - int(0.002 * sample_rate))
    out = clip[start:]
    return (0.9 * out / peak).astype(np.float32)


def render_note_bank(sf2_path: str | Path, sample_rate: int = 16000) -> NoteBank:
    """Render every ``INSTRUMENT_SPECS`` key of ``sf2_path`` as a dry mono clip.

    Melodic notes: held ``MELODIC_HOLD_SECONDS`` then released, ``MELODIC_CLIP_SECONDS`` long;
    percussion keys on the GM drum channel, ``PERCUSSION_CLIP_SECONDS`` long. Reverb and
    chorus are off (the generator adds its own room).
    """
    path = Path(sf2_path)
    if not path.is_file() or path.suffix.lower() != ".sf2":
        raise FileNotFoundError(
            f"sound_source {str(sf2_path)!r} is not an existing .sf2 file; use `note_bank` or the "
            "path of a General-MIDI sound font (e.g. /usr/share/sounds/sf2/FluidR3_GM.sf2)"
        )
    fluidsynth = _import_fluidsynth()
    synth = fluidsynth.Synth(
        gain=0.5,
        samplerate=float(sample_rate),
        **{"synth.reverb.active": 0, "synth.chorus.active": 0},
    )
    try:
        sfid = synth.sfload(str(path))
        if sfid < 0:
            raise RuntimeError(f"FluidSynth could not load sound font {path}")
        bank: NoteBank = {}
        for name, spec in INSTRUMENT_SPECS.items():
            bank[name] = {}
            if spec.program is None:
                chan = PERCUSSION_CHANNEL
                synth.program_select(chan, sfid, 128, 0)
                hold, total = PERCUSSION_CLIP_SECONDS * 0.6, PERCUSSION_CLIP_SECONDS
            else:
                chan = 0
                synth.program_select(chan, sfid, 0, spec.program)
                hold, total = MELODIC_HOLD_SECONDS, MELODIC_CLIP_SECONDS
            n_hold = int(round(hold * sample_rate))
            n_total = int(round(total * sample_rate))
            for key in spec.keys:
                synth.noteon(chan, key, VELOCITY)
                a = synth.get_samples(n_hold)
                synth.noteoff(chan, key)
                b = synth.get_samples(n_total - n_hold + int(0.05 * sample_rate))
                stereo = np.concatenate([a, b]).astype(np.float64).reshape(-1, 2)
                clip = _trim_and_normalise(stereo.mean(axis=1) / 32768.0, sample_rate)[:n_total]
                if not np.any(clip):
                    raise RuntimeError(
                        f"sound font {path} rendered silence for {name} (GM program "
                        f"{spec.program}, key {key}): it is probably not a General-MIDI font"
                    )
                bank[name][key] = clip
                synth.all_sounds_off(chan)
                synth.get_samples(int(0.3 * sample_rate))  # let voices die before the next note
        return bank
    finally:
        synth.delete()
