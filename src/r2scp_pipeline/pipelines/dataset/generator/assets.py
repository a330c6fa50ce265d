"""Committed media of MiniMusic-AVQA and how each MUSIC-AVQA class maps onto it.

Everything the generator needs at run time lives in ``r2scp_pipeline/assets/`` (built once by
``scripts/build_assets.py`` from Debian packages, see ``assets/PROVENANCE.md``):

* ``note_bank/``: short mono 16 kHz FLAC notes rendered from the FluidR3_GM sound font (MIT),
  a few pitches per instrument, indexed by ``note_bank/index.json``;
* ``voice/``: spoken phrases rendered with espeak-ng, the voiceover (``voice/index.json``);
* ``images/``: one or more RGBA pictures per class (openclipart, Noto Color Emoji, or a drawn
  stand-in), indexed by ``images/index.json``.

A ``.sf2`` sound font given as ``sound_source`` is rendered into an in-memory bank with the
same layout (``soundfont.py``); that path needs pyfluidsynth and the fluidsynth library.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r2scp_pipeline import avqa

ASSETS_DIR = Path(__file__).resolve().parents[3] / "assets"
NOTE_BANK_DIR = ASSETS_DIR / "note_bank"
VOICE_DIR = ASSETS_DIR / "voice"
IMAGES_DIR = ASSETS_DIR / "images"
BANK_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class InstrumentSpec:
    """How one MUSIC-AVQA class sounds.

    ``program``: General-MIDI program (0-based) of its stand-in, or ``None`` for the GM
    percussion channel; ``keys``: the MIDI keys rendered into the note bank (pitches for
    melodic instruments, GM percussion keys for drums); ``family`` picks which rhythm styles it
    may play; ``pitched`` is False for drums/congas (no "lowest" questions about them).
    """

    name: str
    program: int | None
    keys: tuple[int, ...]
    family: str  # "percussion", "plucked", "sustained"
    gm_name: str

    @property
    def pitched(self) -> bool:
        return self.program is not None

    @property
    def melody_range(self) -> tuple[int, int]:
        return (min(self.keys) - 2, max(self.keys) + 2)


#: One entry per avqa.INSTRUMENTS class. guzheng/pipa/suona/erhu/ukulele have no GM program:
#: koto/shamisen/shanai/fiddle/nylon guitar (high register) stand in for them.
INSTRUMENT_SPECS: dict[str, InstrumentSpec] = {
    s.name: s
    for s in (
        InstrumentSpec("accordion", 21, (55, 60, 65, 70, 75), "sustained", "Accordion"),
        InstrumentSpec("acoustic_guitar", 25, (43, 49, 55, 61, 67), "plucked", "Acoustic Guitar (steel)"),
        InstrumentSpec("bagpipe", 109, (60, 63, 66, 69, 72), "sustained", "Bag pipe"),
        InstrumentSpec("banjo", 105, (55, 60, 65, 70, 75), "plucked", "Banjo"),
        InstrumentSpec("bassoon", 70, (36, 41, 46, 51, 56), "sustained", "Bassoon"),
        InstrumentSpec("cello", 42, (38, 43, 48, 53, 58), "sustained", "Cello"),
        InstrumentSpec("clarinet", 71, (53, 58, 63, 68, 73), "sustained", "Clarinet"),
        InstrumentSpec("congas", None, (62, 63, 64), "percussion", "Mute Hi / Open Hi / Low Conga"),
        InstrumentSpec("drum", None, (36, 38, 42, 46, 45, 48), "percussion", "Standard kit: kick, snare, hi-hats, toms"),
        InstrumentSpec("electric_bass", 33, (29, 34, 39, 44, 49), "plucked", "Electric Bass (finger)"),
        InstrumentSpec("erhu", 110, (62, 67, 72, 77, 82), "sustained", "Fiddle"),
        InstrumentSpec("flute", 73, (67, 72, 77, 82, 87), "sustained", "Flute"),
        InstrumentSpec("guzheng", 107, (55, 60, 65, 70, 75), "plucked", "Koto"),
        InstrumentSpec("piano", 0, (48, 55, 62, 69, 76), "plucked", "Acoustic Grand Piano"),
        InstrumentSpec("pipa", 106, (55, 59, 63, 67, 71), "plucked", "Shamisen"),
        InstrumentSpec("saxophone", 65, (53, 58, 63, 68, 73), "sustained", "Alto Sax"),
        InstrumentSpec("suona", 111, (62, 66, 70, 74, 78), "sustained", "Shanai"),
        InstrumentSpec("trumpet", 56, (57, 61, 65, 69, 73), "sustained", "Trumpet"),
        InstrumentSpec("tuba", 58, (31, 35, 39, 43, 47), "sustained", "Tuba"),
        InstrumentSpec("ukulele", 24, (60, 64, 68, 72, 76), "plucked", "Acoustic Guitar (nylon), high register"),
        InstrumentSpec("violin", 40, (62, 67, 72, 77, 82), "sustained", "Violin"),
        InstrumentSpec("xylophone", 13, (67, 72, 77, 82, 87), "percussion", "Xylophone"),
    )
}  # fmt: skip
assert tuple(sorted(INSTRUMENT_SPECS)) == avqa.INSTRUMENTS

#: Seconds rendered per note-bank clip (note held for all but the release tail).
MELODIC_CLIP_SECONDS = 1.6
MELODIC_HOLD_SECONDS = 1.45
PERCUSSION_CLIP_SECONDS = 0.7


def note_file_name(instrument: str, key: int) -> str:
    return f"{instrument}_{key:03d}.flac"


class AssetError(RuntimeError):
    """A committed asset is missing or unreadable."""


def _read_index(folder: Path) -> dict:
    path = folder / "index.json"
    if not path.is_file():
        raise AssetError(
            f"{path} is missing: the committed generator assets are incomplete; "
            "rebuild them with `python scripts/build_assets.py` (needs the apt packages listed in "
            "src/r2scp_pipeline/assets/PROVENANCE.md) or restore them from git"
        )
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _read_flac(path: Path) -> np.ndarray:
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise AssetError(f"cannot read audio asset {path}: {exc}") from exc
    if sr != BANK_SAMPLE_RATE:
        raise AssetError(f"{path} has sample rate {sr}, expected {BANK_SAMPLE_RATE}")
    if audio.ndim != 1:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling (only used when ``sample_rate`` != 16 kHz)."""
    if src_rate == dst_rate:
        return audio
    n_out = int(round(len(audio) * dst_rate / src_rate))
    x = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    return np.interp(x, np.arange(len(audio)), audio).astype(np.float32)


#: A note bank: ``{instrument: {midi_key: clip(float32, sample_rate)}}``.
NoteBank = dict[str, dict[int, np.ndarray]]


@functools.lru_cache(maxsize=8)
def load_note_bank(
    sound_source: str = "note_bank", sample_rate: int = BANK_SAMPLE_RATE
) -> NoteBank:
    """The committed FLAC note bank (``"note_bank"``) or one rendered from a ``.sf2`` path."""
    if sound_source == "note_bank":
        index = _read_index(NOTE_BANK_DIR)
        bank: NoteBank = {name: {} for name in INSTRUMENT_SPECS}
        for entry in index["notes"]:
            clip = _read_flac(NOTE_BANK_DIR / entry["file"])
            bank[entry["instrument"]][int(entry["key"])] = resample(
                clip, BANK_SAMPLE_RATE, sample_rate
            )
    else:
        from .soundfont import render_note_bank

        bank = render_note_bank(sound_source, sample_rate)
    for name, spec in INSTRUMENT_SPECS.items():
        missing = sorted(set(spec.keys) - set(bank.get(name, {})))
        if missing:
            raise AssetError(
                f"note bank {sound_source!r} lacks {name} keys {missing}: rebuild it with "
                "`python scripts/build_assets.py`"
            )
    return bank


@functools.lru_cache(maxsize=2)
def load_voice_clips(sample_rate: int = BANK_SAMPLE_RATE) -> tuple[np.ndarray, ...]:
    """The committed voiceover phrases, in ``voice/index.json`` order."""
    index = _read_index(VOICE_DIR)
    return tuple(
        resample(_read_flac(VOICE_DIR / e["file"]), BANK_SAMPLE_RATE, sample_rate)
        for e in index["phrases"]
    )


@functools.lru_cache(maxsize=1)
def image_index() -> dict[str, list[dict]]:
    """``{instrument: [{"file", "source", ...}, ...]}`` from ``images/index.json``."""
    index = _read_index(IMAGES_DIR)["images"]
    missing = sorted(set(avqa.INSTRUMENTS) - set(index))
    if missing:
        raise AssetError(f"{IMAGES_DIR / 'index.json'} has no picture for {missing}")
    return index


@functools.lru_cache(maxsize=64)
def load_image(file_name: str):
    """An instrument picture as a Pillow RGBA image (cropped to its content)."""
    from PIL import Image

    path = IMAGES_DIR / file_name
    try:
        with Image.open(path) as im:
            im = im.convert("RGBA")
    except Exception as exc:  # noqa: BLE001
        raise AssetError(f"cannot read image asset {path}: {exc}") from exc
    bbox = im.getbbox()
    return im.crop(bbox) if bbox else im


def assets_fingerprint() -> str:
    """Hash of the committed asset indexes (names, sizes): part of the dataset config hash."""
    h = hashlib.sha256()
    for folder in (NOTE_BANK_DIR, VOICE_DIR, IMAGES_DIR):
        for path in sorted(folder.glob("*")):
            if path.is_file():
                h.update(f"{folder.name}/{path.name}:{path.stat().st_size};".encode())
    return h.hexdigest()[:16]
