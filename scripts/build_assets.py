#!/usr/bin/env python
"""Rebuild the committed MiniMusic-AVQA assets (``src/r2scp_pipeline/assets/``).

Needs the Debian packages (not needed at run time; the outputs are committed):

    apt-get update && apt-get install -y fluidsynth fluid-soundfont-gm espeak-ng \
        fonts-noto-color-emoji
    pip install pyfluidsynth

and downloads (does not install) ``openclipart-png`` with ``apt-get download``, extracting only
``recreation/music/``. Steps (each can be run alone with ``--only``):

* ``notes``:  the note bank, every key of ``INSTRUMENT_SPECS`` rendered from FluidR3_GM
  (mono 16 kHz FLAC);
* ``voice``:  voiceover phrases spoken by espeak-ng (mono 16 kHz FLAC);
* ``images``: instrument pictures (openclipart, Noto Color Emoji, drawn stand-ins), RGBA PNG,
  longest side <= 128 px;
* ``figure``: the README figure ``docs/img/embedded_example.png`` (generates a small dataset).

    python scripts/build_assets.py                 # notes, voice, images
    python scripts/build_assets.py --only figure
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from r2scp_pipeline import avqa  # noqa: E402
from r2scp_pipeline.pipelines.dataset.generator.assets import (  # noqa: E402
    ASSETS_DIR,
    BANK_SAMPLE_RATE,
    IMAGES_DIR,
    INSTRUMENT_SPECS,
    NOTE_BANK_DIR,
    VOICE_DIR,
    note_file_name,
)

FLUID_SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
MAX_SIDE = 128

# ---------------------------------------------------------------------------------------------
# note bank


def build_notes() -> None:
    from r2scp_pipeline.pipelines.dataset.generator.soundfont import render_note_bank

    if not FLUID_SF2.is_file():
        sys.exit(f"{FLUID_SF2} not found: apt-get install fluid-soundfont-gm")
    bank = render_note_bank(FLUID_SF2, BANK_SAMPLE_RATE)
    if NOTE_BANK_DIR.exists():
        shutil.rmtree(NOTE_BANK_DIR)
    NOTE_BANK_DIR.mkdir(parents=True)
    notes = []
    for name, spec in INSTRUMENT_SPECS.items():
        for key in spec.keys:
            file = note_file_name(name, key)
            sf.write(
                NOTE_BANK_DIR / file,
                bank[name][key],
                BANK_SAMPLE_RATE,
                subtype="PCM_16",
                format="FLAC",
            )
            notes.append({
                "instrument": name, "key": key, "file": file,
                "gm_program": spec.program, "gm_bank": 128 if spec.program is None else 0,
                "gm_name": spec.gm_name,
            })  # fmt: skip
    _copy_licence(Path("/usr/share/doc/fluid-soundfont-gm/copyright"), "FluidR3_GM-copyright.txt")
    index = {"source": "FluidR3_GM.sf2 (Debian fluid-soundfont-gm, MIT)",
             "sample_rate": BANK_SAMPLE_RATE, "notes": notes}  # fmt: skip
    (NOTE_BANK_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"note bank: {len(notes)} clips, {_size(NOTE_BANK_DIR)}")


# ---------------------------------------------------------------------------------------------
# voiceover

#: (text, espeak-ng voice, words per minute, pitch 0-99)
PHRASES: tuple[tuple[str, str, int, int], ...] = (
    ("Good evening everyone, and welcome to the concert.", "en-us", 150, 45),
    ("This next piece is one of my favourites.", "en+f3", 160, 60),
    ("Thank you all so much for coming tonight.", "en-gb", 145, 35),
    ("Listen closely to the melody in this part.", "en+m3", 155, 40),
    ("We practised this song for a very long time.", "en-us+f2", 150, 70),
    ("Please give them a warm round of applause.", "en-gb-scotland", 150, 50),
    ("Here is a short tune from our new album.", "en+m7", 165, 30),
    ("Can everybody at the back hear the music?", "en-us+f4", 155, 65),
)


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(rate, BANK_SAMPLE_RATE)
    return resample_poly(audio, BANK_SAMPLE_RATE // g, rate // g)


def build_voice() -> None:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found: apt-get install espeak-ng")
    if VOICE_DIR.exists():
        shutil.rmtree(VOICE_DIR)
    VOICE_DIR.mkdir(parents=True)
    phrases = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (text, voice, wpm, pitch) in enumerate(PHRASES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch),
                            "-w", str(wav), text], check=True)  # fmt: skip
            audio, rate = sf.read(wav, dtype="float64")
            audio = _to_16k(audio, rate)
            nz = np.flatnonzero(np.abs(audio) > 1e-3 * np.abs(audio).max())
            audio = audio[nz[0] : nz[-1] + 1]
            audio = 0.9 * audio / np.abs(audio).max()
            file = f"phrase_{i:02d}.flac"
            sf.write(VOICE_DIR / file, audio.astype(np.float32), BANK_SAMPLE_RATE,
                     subtype="PCM_16", format="FLAC")  # fmt: skip
            phrases.append(
                {
                    "file": file,
                    "text": text,
                    "voice": voice,
                    "wpm": wpm,
                    "pitch": pitch,
                    "seconds": round(len(audio) / BANK_SAMPLE_RATE, 2),
                }
            )
    index = {"source": "espeak-ng " + _espeak_version(), "sample_rate": BANK_SAMPLE_RATE,
             "phrases": phrases}  # fmt: skip
    (VOICE_DIR / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"voice: {len(phrases)} phrases, {_size(VOICE_DIR)}")


def _espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    return out.split(":")[1].split()[0] if ":" in out else "unknown"


# ---------------------------------------------------------------------------------------------
# images

#: openclipart-png, recreation/music/ (public domain). The package has no per-file metadata: the
#: author is the artist name embedded in the file name.
CLIPART: dict[str, list[tuple[str, str]]] = {
    "acoustic_guitar": [("guitar_jarno_vasamaa1.png", "Jarno Vasamaa")],
    "cello": [("cello_ganson.png", "ganson")],
    "clarinet": [("oboe_ganson.png", "ganson (an oboe: stand-in for clarinet)")],
    "congas": [("africandrum_benji_park1.png", "Benji Park")],
    "drum": [("drums_jarno_vasamaa_.png", "Jarno Vasamaa")],
    "electric_bass": [("bass_guitar_a.j._ashton_.png", "A.J. Ashton")],
    "flute": [("flute_ganson.png", "ganson")],
    "piano": [("piano_geraint_luff_01.png", "Geraint Luff")],
    "saxophone": [("saxophone_jarno_vasamaa_.png", "Jarno Vasamaa")],
    "trumpet": [("trumpet_b_flat_colour_ganso.png", "ganson")],
    "tuba": [("french_horn_ganson.png", "ganson (a French horn: stand-in for tuba)")],
    "ukulele": [("guitar_profile_philippe__01.png", "philippe (a small guitar: stand-in for ukulele)")],
    "violin": [("violin_colour_ganson.png", "ganson")],
    "xylophone": [("xylophone_ganson.png", "ganson")],
}  # fmt: skip

#: Noto Color Emoji (SIL OFL 1.1), rendered at its only bitmap size, 109 px.
EMOJI: dict[str, list[tuple[str, str]]] = {
    "accordion": [("\U0001fa97", "U+1FA97 ACCORDION")],
    "banjo": [("\U0001fa95", "U+1FA95 BANJO")],
    "congas": [("\U0001fa98", "U+1FA98 LONG DRUM")],
    "drum": [("\U0001f941", "U+1F941 DRUM WITH DRUMSTICKS")],
    "piano": [("\U0001f3b9", "U+1F3B9 MUSICAL KEYBOARD")],
    "saxophone": [("\U0001f3b7", "U+1F3B7 SAXOPHONE")],
    "trumpet": [("\U0001f3ba", "U+1F3BA TRUMPET")],
    "violin": [("\U0001f3bb", "U+1F3BB VIOLIN")],
}


def _fetch_clipart(dest: Path) -> Path:
    """``apt-get download openclipart-png`` and extract only ``recreation/music``."""
    subprocess.run(["apt-get", "download", "openclipart-png"], cwd=dest, check=True)
    deb = next(dest.glob("openclipart-png*.deb"))
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "--wildcards", "*recreation/music*", "*doc/openclipart-png/*"],
                   stdin=tar.stdout, cwd=dest, check=True)  # fmt: skip
    tar.wait()
    deb.unlink()
    return next(dest.rglob("recreation/music"))


def _fit(im: Image.Image) -> Image.Image:
    im = im.convert("RGBA")
    bbox = im.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    im = im.crop(bbox)
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return im


def _emoji(char: str) -> Image.Image:
    font = ImageFont.truetype(str(EMOJI_FONT), 109)  # the only size NotoColorEmoji supports
    im = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((10, 10), char, font=font, embedded_color=True)
    return _fit(im)


# --- drawn stand-ins (no free picture found): simple but distinct silhouettes ----------------

S = 512  # drawing canvas


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    return im, ImageDraw.Draw(im)


def draw_guzheng() -> Image.Image:
    im, d = _canvas()
    board = [(40, 300), (470, 150), (490, 210), (60, 380)]
    d.polygon(board, fill=(150, 82, 38), outline=(70, 35, 10), width=6)
    d.polygon([(60, 380), (490, 210), (492, 236), (64, 404)], fill=(95, 50, 20))
    for i in range(13):
        f = (i + 0.5) / 13
        a = (40 + 20 * f, 300 + 80 * f)
        b = (470 + 20 * f, 150 + 60 * f)
        d.line([a, b], fill=(235, 230, 210), width=2)
        t = 0.35 + 0.35 * math.sin(f * math.pi)  # curved row of bridges
        x, y = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        d.polygon([(x - 7, y + 6), (x + 7, y + 6), (x, y - 8)], fill=(245, 245, 240),
                  outline=(120, 120, 120))  # fmt: skip
    d.ellipse([380, 175, 420, 200], outline=(70, 35, 10), width=4)
    return im


def draw_pipa() -> Image.Image:
    im, d = _canvas()
    d.ellipse([150, 230, 370, 500], fill=(205, 150, 80), outline=(110, 65, 25), width=6)
    d.polygon([(200, 260), (320, 260), (290, 120), (230, 120)], fill=(205, 150, 80))
    d.rectangle([238, 40, 282, 130], fill=(120, 70, 30))
    d.polygon([(238, 40), (282, 40), (300, 10), (250, 20)], fill=(90, 50, 20))
    for y in range(60, 250, 22):  # frets
        w = 26 + (y - 60) * 0.25
        d.rectangle([260 - w, y, 260 + w, y + 6], fill=(240, 225, 190))
    for x in (246, 255, 265, 274):
        d.line([(x, 50), (x + (x - 260) * 0.8, 430)], fill=(250, 250, 250), width=2)
    d.rectangle([215, 420, 305, 436], fill=(90, 50, 20))
    for x, y in ((228, 30), (292, 30), (228, 80), (292, 80)):
        d.ellipse([x - 12, y - 8, x + 12, y + 8], fill=(70, 40, 15))
    return im


def draw_erhu() -> Image.Image:
    im, d = _canvas()
    d.line([(250, 20), (250, 430)], fill=(60, 30, 15), width=14)
    d.polygon([(200, 400), (300, 400), (315, 440), (300, 480), (200, 480), (185, 440)],
              fill=(40, 25, 20), outline=(160, 110, 60))  # fmt: skip
    d.ellipse([205, 405, 295, 475], fill=(235, 225, 200))  # snake-skin face
    for y in (60, 110):
        d.rectangle([235, y, 300, y + 12], fill=(90, 50, 20))
        d.ellipse([292, y - 4, 312, y + 16], fill=(70, 40, 15))
    d.line([(255, 60), (255, 420)], fill=(230, 230, 230), width=2)
    d.line([(262, 110), (262, 420)], fill=(230, 230, 230), width=2)
    d.line([(60, 330), (470, 250)], fill=(120, 80, 40), width=7)  # bow stick
    d.line([(70, 345), (462, 266)], fill=(245, 240, 225), width=4)  # bow hair
    return im


def draw_suona() -> Image.Image:
    im, d = _canvas()
    d.polygon([(240, 70), (272, 70), (300, 360), (212, 360)], fill=(140, 60, 30),
              outline=(70, 30, 10), width=4)  # fmt: skip
    for i in range(7):
        y = 110 + i * 34
        d.ellipse([249, y, 263, y + 14], fill=(30, 15, 5))
    d.polygon([(212, 350), (300, 350), (400, 490), (112, 490)], fill=(225, 180, 50),
              outline=(140, 100, 20), width=5)  # fmt: skip
    d.ellipse([110, 470, 402, 505], fill=(240, 200, 80), outline=(140, 100, 20), width=4)
    d.rectangle([248, 30, 264, 72], fill=(200, 200, 205))
    d.ellipse([226, 55, 286, 70], fill=(215, 215, 220), outline=(120, 120, 120))
    d.polygon([(252, 30), (260, 30), (258, 5), (254, 5)], fill=(190, 160, 100))
    return im


def draw_bagpipe() -> Image.Image:
    im, d = _canvas()
    for x0, x1, top in ((230, 120, 20), (260, 200, 40), (290, 290, 70)):  # drones
        d.line([(x0, 250), (x1, top)], fill=(30, 30, 30), width=16)
        d.ellipse([x1 - 14, top - 10, x1 + 14, top + 10], fill=(235, 225, 200))
        mx, my = (x0 + x1) / 2, (250 + top) / 2
        d.ellipse([mx - 12, my - 8, mx + 12, my + 8], fill=(235, 225, 200))
    bag = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    bd = ImageDraw.Draw(bag)
    bd.ellipse([130, 200, 400, 400], fill=(170, 25, 35))
    mask = bag.getchannel("A")
    tartan = Image.new("RGBA", (S, S), (170, 25, 35, 255))
    td = ImageDraw.Draw(tartan)
    for k in range(0, S, 36):
        td.line([(k, 0), (k, S)], fill=(20, 60, 30), width=9)
        td.line([(0, k), (S, k)], fill=(20, 60, 30), width=9)
        td.line([(k + 18, 0), (k + 18, S)], fill=(230, 200, 60), width=2)
    im.paste(tartan, (0, 0), mask)
    d.ellipse([130, 200, 400, 400], outline=(80, 10, 15), width=5)
    d.line([(330, 370), (360, 500)], fill=(25, 25, 25), width=18)  # chanter
    d.line([(390, 250), (480, 170)], fill=(40, 40, 40), width=10)  # blowpipe
    return im


def draw_bassoon() -> Image.Image:
    im, d = _canvas()
    d.rounded_rectangle([215, 40, 265, 480], radius=18, fill=(120, 45, 25), outline=(60, 20, 10),
                        width=4)  # fmt: skip
    d.rounded_rectangle([265, 190, 305, 480], radius=16, fill=(105, 38, 20), outline=(60, 20, 10),
                        width=4)  # fmt: skip
    d.rectangle([212, 40, 268, 56], fill=(215, 215, 220))
    d.rectangle([212, 300, 308, 316], fill=(215, 215, 220))
    d.arc([280, 140, 420, 300], start=180, end=300, fill=(200, 200, 210), width=7)  # bocal
    d.line([(380, 160), (420, 150)], fill=(190, 160, 100), width=7)  # reed
    for y in range(230, 440, 34):
        d.ellipse([276, y, 294, y + 18], fill=(215, 215, 220))
        d.ellipse([230, y + 10, 248, y + 28], fill=(215, 215, 220))
    return im


DRAWN = {
    "bagpipe": draw_bagpipe, "bassoon": draw_bassoon, "erhu": draw_erhu,
    "guzheng": draw_guzheng, "pipa": draw_pipa, "suona": draw_suona,
}  # fmt: skip


def build_images(clipart_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if clipart_dir is None:
            clipart_dir = _fetch_clipart(Path(tmp))
        docs = [p for p in clipart_dir.parents if (p / "doc/openclipart-png/copyright").is_file()]
        if docs:
            _copy_licence(docs[0] / "doc/openclipart-png/copyright", "openclipart-copyright.txt")
        _copy_licence(Path("/usr/share/doc/fonts-noto-color-emoji/copyright"),
                      "NotoColorEmoji-copyright.txt")  # fmt: skip
        if IMAGES_DIR.exists():
            shutil.rmtree(IMAGES_DIR)
        IMAGES_DIR.mkdir(parents=True)
        index: dict[str, list[dict]] = {name: [] for name in avqa.INSTRUMENTS}

        def save(name: str, im: Image.Image, entry: dict) -> None:
            file = f"{name}_{len(index[name]) + 1}.png"
            im.save(IMAGES_DIR / file, optimize=True)
            index[name].append({"file": file, **entry})

        for name, items in CLIPART.items():
            for file, author in items:
                src = clipart_dir / file
                save(name, _fit(Image.open(src)), {
                    "source": "openclipart", "original": f"openclipart-png recreation/music/{file}",
                    "author": author, "license": "public domain (openclipart)"})  # fmt: skip
        for name, items in EMOJI.items():
            for char, label in items:
                save(
                    name,
                    _emoji(char),
                    {
                        "source": "noto-color-emoji",
                        "original": label,
                        "license": "SIL OFL 1.1 (Noto Color Emoji)",
                    },
                )
        for name, fn in DRAWN.items():
            im = fn().filter(ImageFilter.SMOOTH)
            save(name, _fit(im), {"source": "drawn", "original": f"scripts/build_assets.py:draw_{name}",
                                  "license": "MIT (this project)"})  # fmt: skip
    (IMAGES_DIR / "index.json").write_text(json.dumps({"images": index}, indent=1) + "\n")
    n = sum(len(v) for v in index.values())
    print(
        f"images: {n} pictures for {sum(1 for v in index.values() if v)} classes, {_size(IMAGES_DIR)}"
    )


# ---------------------------------------------------------------------------------------------
# README figure


def build_figure(out: Path) -> None:
    from r2scp_pipeline.pipelines.dataset.generator.figure import make_example_figure

    with tempfile.TemporaryDirectory() as tmp:
        make_example_figure(Path(tmp) / "embedded", out)
    print(f"figure: {out}")


def _copy_licence(src: Path, name: str) -> None:
    if not src.is_file():
        print(f"warning: {src} not found, licence text {name} not refreshed")
        return
    (ASSETS_DIR / "licenses").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, ASSETS_DIR / "licenses" / name)


def _apt_version(package: str) -> str:
    """Installed version, else the apt candidate (openclipart-png is only downloaded)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True,
                         text=True)  # fmt: skip
    if out.stdout.strip():
        return out.stdout.strip()
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


PROVENANCE_HEAD = """# Provenance of the MiniMusic-AVQA assets

Everything here is produced by `scripts/build_assets.py` from Debian packages (this file too;
edit the script, not this file). Nothing here is needed from the network at run time.

| folder | what | source | licence |
|---|---|---|---|
| `note_bank/` | {n_notes} mono 16 kHz FLAC notes, {n_inst} instruments | FluidR3_GM.sf2 from `fluid-soundfont-gm` {v_fluid}, rendered with FluidSynth (`libfluidsynth3` {v_synth}, pyfluidsynth), reverb and chorus off | MIT (Frank Wen), `licenses/FluidR3_GM-copyright.txt` |
| `voice/` | {n_voice} spoken phrases (the voiceover) | our sentences spoken by `espeak-ng` {v_espeak} | program output of espeak-ng (GPL-3.0-or-later program; the sentences are ours, MIT) |
| `images/` | {n_img} RGBA pictures, longest side <= 128 px | `openclipart-png` {v_clip} (`recreation/music/` only), `fonts-noto-color-emoji` {v_emoji}, or drawn by the script | see the table below; `licenses/openclipart-copyright.txt`, `licenses/NotoColorEmoji-copyright.txt` |

## Sound: General-MIDI stand-ins

MUSIC-AVQA classes without a GM program use the closest one: guzheng = Koto, pipa = Shamisen,
suona = Shanai, erhu = Fiddle, ukulele = nylon-string guitar in a high register; drum = the GM
standard kit (kick, snare, hi-hats, toms), congas = GM conga keys.

| class | GM program (0-based) / keys | GM name |
|---|---|---|
"""


def write_provenance() -> None:
    notes = json.loads((NOTE_BANK_DIR / "index.json").read_text())["notes"]
    voice = json.loads((VOICE_DIR / "index.json").read_text())["phrases"]
    images = json.loads((IMAGES_DIR / "index.json").read_text())["images"]
    text = PROVENANCE_HEAD.format(
        n_notes=len(notes), n_inst=len({n["instrument"] for n in notes}), n_voice=len(voice),
        n_img=sum(len(v) for v in images.values()), v_fluid=_apt_version("fluid-soundfont-gm"),
        v_synth=_apt_version("libfluidsynth3"), v_espeak=_apt_version("espeak-ng"),
        v_clip=_apt_version("openclipart-png"),
        v_emoji=_apt_version("fonts-noto-color-emoji"),
    )  # fmt: skip
    for name, spec in INSTRUMENT_SPECS.items():
        prog = "percussion (bank 128)" if spec.program is None else str(spec.program)
        text += f"| {name} | {prog}; keys {', '.join(map(str, spec.keys))} | {spec.gm_name} |\n"
    text += "\n## Pictures\n\n| file | class | source | original | author (openclipart: from the file name) | licence |\n|---|---|---|---|---|---|\n"
    for name, entries in images.items():
        for e in entries:
            text += (f"| `images/{e['file']}` | {name} | {e['source']} | {e['original']} | "
                     f"{e.get('author', '-')} | {e['license']} |\n")  # fmt: skip
    text += (
        "\nStand-ins: `clarinet_1` is an oboe, `tuba_1` a French horn and `ukulele_1` a small "
        "guitar (the closest free pictures); bagpipe, bassoon, erhu, guzheng, pipa and suona "
        "are simple drawings made by the script (no free picture was found).\n"
    )
    text += "\n## Voiceover phrases\n\n| file | voice | text |\n|---|---|---|\n"
    for p in voice:
        text += f"| `voice/{p['file']}` | {p['voice']} | {p['text']} |\n"
    (ASSETS_DIR / "PROVENANCE.md").write_text(text)


def _size(folder: Path) -> str:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return f"{total / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["notes", "voice", "images", "figure"], action="append")
    parser.add_argument(
        "--clipart-dir",
        type=Path,
        default=None,
        help="an extracted openclipart-png recreation/music folder (else apt-get download)",
    )
    parser.add_argument(
        "--figure-out", type=Path, default=ROOT / "docs" / "img" / "embedded_example.png"
    )
    args = parser.parse_args(argv)
    steps = args.only or ["notes", "voice", "images"]
    ASSETS_DIR.mkdir(parents=True, exist_ok=True)
    if "notes" in steps:
        build_notes()
    if "voice" in steps:
        build_voice()
    if "images" in steps:
        build_images(args.clipart_dir)
    if set(steps) & {"notes", "voice", "images"}:
        write_provenance()
    if "figure" in steps:
        build_figure(args.figure_out)
    print(f"assets total: {_size(ASSETS_DIR)}")


if __name__ == "__main__":
    main()
