"""MiniMusic-AVQA: the embedded default dataset, generated from a seed.

Small music videos (1 fps frames + a 16 kHz soundtrack) of 1-3 visible instruments at
left/middle/right, sampled-instrument audio (FluidR3_GM note bank), indoor/outdoor scenes,
optional voiceover and off-screen instruments, and questions from the 33 official MUSIC-AVQA
templates, written in the official annotation format. See ``docs/dataset_embedded.md``.

Entry point: :func:`generate_dataset`. Building blocks (used by the tests and the README
figure): :func:`sample_scenes`, :func:`render_stems`, :func:`render_audio`,
:func:`render_frames`, :func:`make_questions`, :func:`load_scenes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .assets import assets_fingerprint, load_note_bank, load_voice_clips
from .audio import mix_scene, render_audio, render_stems, render_voiceover
from .questions import make_questions
from .render import instrument_boxes, render_frames
from .scene import sample_scene

__all__ = [
    "DEFAULTS", "GENERATOR_VERSION", "SPLITS", "generate_dataset", "instrument_boxes",
    "load_scenes", "make_questions", "mix_scene", "render_audio", "render_frames",
    "render_stems", "render_voiceover", "resolve_config", "sample_scenes", "write_frames",
]  # fmt: skip

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Every key ``dataset.embedded`` may set. The first block is in parameters_dataset.yml; the
#: second are finer knobs with these defaults.
DEFAULTS: dict[str, Any] = {
    "root": "data/01_raw/embedded",
    "num_videos": 1000,
    "split_fractions": {"train": 0.7, "val": 0.1, "test": 0.2},
    "questions_per_video": [5, 8],
    # training videos only, instead of questions_per_video (null = the same): more supervision
    # from the same media, while val / test (and so evaluation's cost) stay as they are
    "train_questions_per_video": None,
    "seconds": 10,
    "sample_rate": 16000,
    "frame_size": 224,
    "sound_source": "note_bank",
    "splits_sound_source": {},
    # finer knobs
    "sounding_prob": 0.72,  # a visible instrument plays (else it stays silent)
    "offscreen_prob": 0.3,  # a scene has 1 (15 %: 2) off-screen sounding instrument(s)
    "duplicate_prob": 0.2,  # two visible instruments of one class
    "voiceover_prob": 0.4,
    "indoor_prob": 0.55,
    "jpeg_quality": 90,
    # the glow and hop on a visible instrument in each second it sounds (render.py); false =
    # frames show who stands where but not who plays: the sound alone says who plays
    "visual_cue": True,
    "num_workers": 1,  # processes rendering media (results do not depend on it)
}
#: Keys that do not change the generated files (left out of the config hash).
_NOT_HASHED = ("root", "num_workers")


def _fail(key: str, msg: str) -> None:
    raise ValueError(f"parameter dataset.embedded.{key}: {msg}")


def resolve_config(params: dict[str, Any]) -> dict[str, Any]:
    """``DEFAULTS`` overridden by ``params`` (the ``dataset.embedded`` dict), validated."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) dataset.embedded.{', '.join(unknown)}; "
            f"valid keys: {', '.join(DEFAULTS)}"
        )
    cfg = {**DEFAULTS, **{k: v for k, v in params.items()}}
    cfg["split_fractions"] = {k: float(v) for k, v in dict(cfg["split_fractions"]).items()}
    cfg["splits_sound_source"] = {
        k: str(v) for k, v in dict(cfg["splits_sound_source"] or {}).items()
    }
    cfg["questions_per_video"] = [int(x) for x in cfg["questions_per_video"]]
    for key in (
        "num_videos",
        "seconds",
        "sample_rate",
        "frame_size",
        "jpeg_quality",
        "num_workers",
    ):
        if (
            not isinstance(cfg[key], (int, np.integer))
            or isinstance(cfg[key], bool)
            or cfg[key] < 1
        ):
            _fail(key, f"expected a positive integer, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    if cfg["seconds"] < 4:
        _fail("seconds", f"videos must last at least 4 s, got {cfg['seconds']}")
    if cfg["frame_size"] < 32:
        _fail("frame_size", f"frames must be at least 32 px, got {cfg['frame_size']}")
    fr = cfg["split_fractions"]
    if (
        set(fr) != set(SPLITS)
        or any(v < 0 for v in fr.values())
        or abs(sum(fr.values()) - 1) > 1e-6
    ):
        _fail(
            "split_fractions",
            f"expected non-negative train/val/test fractions summing to 1, got {fr}",
        )
    if cfg["train_questions_per_video"] is not None:
        cfg["train_questions_per_video"] = [int(x) for x in cfg["train_questions_per_video"]]
    for key in ("questions_per_video", "train_questions_per_video"):
        qpv = cfg[key]
        if qpv is not None and (len(qpv) != 2 or not 1 <= qpv[0] <= qpv[1]):
            _fail(key, f"expected [min, max] with 1 <= min <= max, got {qpv}")
    bad = sorted(set(cfg["splits_sound_source"]) - set(SPLITS))
    if bad:
        _fail("splits_sound_source", f"unknown split(s) {bad}; valid: {', '.join(SPLITS)}")
    if not isinstance(cfg["visual_cue"], bool):
        _fail("visual_cue", f"expected true or false, got {cfg['visual_cue']!r}")
    for key in (
        "sounding_prob",
        "offscreen_prob",
        "duplicate_prob",
        "voiceover_prob",
        "indoor_prob",
    ):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            _fail(key, f"expected a probability in [0, 1], got {cfg[key]!r}")
        cfg[key] = float(cfg[key])
    sources = {s: cfg["splits_sound_source"].get(s, str(cfg["sound_source"])) for s in SPLITS}
    for split, src in sources.items():
        if src != "note_bank" and not (Path(src).suffix.lower() == ".sf2" and Path(src).is_file()):
            key = (
                f"splits_sound_source.{split}"
                if split in cfg["splits_sound_source"]
                else "sound_source"
            )
            _fail(key, f"{src!r} is neither 'note_bank' nor an existing .sf2 sound font")
    cfg["_sound_source_by_split"] = sources
    return cfg


def _split_of_videos(n: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    counts = {s: int(round(n * fractions[s])) for s in ("val", "test")}
    for s in ("val", "test"):  # every split with a positive fraction gets a video when it can
        if fractions[s] > 0 and counts[s] == 0 and n >= 3:
            counts[s] = 1
    counts["train"] = n - counts["val"] - counts["test"]
    if counts["train"] < 0:
        raise ValueError(f"num_videos={n} is too small for split_fractions {fractions}")
    labels = ["train"] * counts["train"] + ["val"] * counts["val"] + ["test"] * counts["test"]
    return [labels[int(i)] for i in np.argsort(rng.permutation(n), kind="stable")]


def sample_scenes(cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """All scene specifications, video ids ``00000001`` ... in order (``cfg`` resolved)."""
    n = cfg["num_videos"]
    cfg = {**cfg, "_n_voice_clips": len(load_voice_clips(cfg["sample_rate"]))}
    splits = _split_of_videos(n, cfg["split_fractions"], np.random.default_rng([seed, 0]))
    return [
        sample_scene(np.random.default_rng([seed, 1, i]), f"{i + 1:08d}", splits[i], cfg)
        for i in range(n)
    ]


def config_hash(cfg: dict[str, Any], seed: int) -> str:
    payload = {k: v for k, v in cfg.items() if k not in _NOT_HASHED and not k.startswith("_")}
    if payload.get("train_questions_per_video") is None:  # unset: the hash of earlier folders
        payload.pop("train_questions_per_video", None)
    payload |= {"seed": int(seed), "generator_version": GENERATOR_VERSION,
                "assets": assets_fingerprint()}  # fmt: skip
    for src in sorted(set(cfg["_sound_source_by_split"].values()) - {"note_bank"}):
        st = Path(src).stat()
        payload[f"sf2:{src}"] = [st.st_size, int(st.st_mtime)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )


def write_media(scene: dict[str, Any], root: Path, frame_size: int, jpeg_quality: int,
                cue: bool = True) -> None:  # fmt: skip
    """``audio/<video_id>.wav`` and ``frames/<video_id>/*.jpg`` of one scene under ``root``
    (``cue``: draw the visual cue, see :func:`render_frames`)."""
    import soundfile as sf

    vid = scene["video_id"]
    audio = render_audio(scene)
    sf.write(str(root / "audio" / f"{vid}.wav"), audio, int(scene["sample_rate"]), subtype="PCM_16")
    folder = root / "frames" / vid
    folder.mkdir()
    write_frames(scene, folder, frame_size, jpeg_quality, cue)


def write_frames(scene: dict[str, Any], folder: Path, frame_size: int, jpeg_quality: int,
                 cue: bool = True) -> None:  # fmt: skip
    """The scene's frames as JPEG files ``{k+1:06d}.jpg`` (frame ``k`` = second ``[k, k+1)``)
    in the existing ``folder``."""
    for k, frame in enumerate(render_frames(scene, frame_size, cue=cue)):
        frame.save(folder / f"{k + 1:06d}.jpg", quality=jpeg_quality)


def _write_media_batch(args: tuple[list[dict], str, int, int, bool]) -> int:
    scenes, root, frame_size, quality, cue = args
    for scene in scenes:
        write_media(scene, Path(root), frame_size, quality, cue)
    return len(scenes)


def _expected_files(root: Path, manifest: dict[str, Any]) -> list[Path]:
    files = [root / f"avqa-{s}.json" for s in SPLITS] + [root / "scenes.json"]
    for vid in manifest["video_ids"]:
        files.append(root / "audio" / f"{vid}.wav")
        files += [root / "frames" / vid / f"{k + 1:06d}.jpg" for k in range(manifest["seconds"])]
    return files


def _up_to_date(root: Path, digest: str) -> dict[str, Any] | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("config_hash") != digest:
        return None
    if not all(p.is_file() for p in _expected_files(root, manifest)):
        return None
    return manifest


def _manifest_frame(root_param: str, manifest: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({
        "split": pd.Series(list(SPLITS), dtype="str"),
        "annotations_path": pd.Series([str(Path(root_param) / f"avqa-{s}.json") for s in SPLITS], dtype="str"),
        "n_records": pd.Series([int(manifest["questions"][s]) for s in SPLITS], dtype="int64"),
    })  # fmt: skip


def generate_dataset(params: dict, seed: int) -> pd.DataFrame:
    """Generate MiniMusic-AVQA into ``params["root"]`` and return its manifest.

    Args:
        params: the ``dataset.embedded`` parameters (keys of ``DEFAULTS``).
        seed: the project seed; the same ``params`` + ``seed`` give byte-identical JSON and
            identical audio samples.

    Writes (built in a temporary folder next to ``root``, then swapped in):
        ``avqa-{train,val,test}.json`` (official fields), ``audio/<video_id>.wav`` (mono PCM16),
        ``frames/<video_id>/000001.jpg ...`` (1 fps), ``scenes.json`` (generator bookkeeping,
        ``{"generator": {...}, "videos": [scene, ...]}``), ``manifest.json`` (config hash and
        counts). An existing ``root`` with the same config hash and every file is reused.

    Returns:
        One row per split: ``split``, ``annotations_path`` (``root``/avqa-<split>.json),
        ``n_records`` (questions in that file).
    """
    cfg = resolve_config(dict(params))
    root = Path(cfg["root"])
    digest = config_hash(cfg, seed)
    existing = _up_to_date(root, digest)
    if existing is not None:
        logger.info("MiniMusic-AVQA in %s is up to date (config hash %s): skipping generation",
                    root, digest)  # fmt: skip
        return _manifest_frame(str(cfg["root"]), existing)
    if root.exists() and any(root.iterdir()) and not (root / "manifest.json").is_file():
        raise FileExistsError(
            f"{root} exists, is not empty and holds no MiniMusic-AVQA manifest.json: refusing to "
            "replace it; point dataset.embedded.root at an empty or generated folder"
        )
    logger.info("generating MiniMusic-AVQA: %d videos into %s (config hash %s)",
                cfg["num_videos"], root, digest)  # fmt: skip

    scenes = sample_scenes(cfg, seed)
    train_qpv = cfg["train_questions_per_video"]
    records = make_questions(scenes, np.random.default_rng([seed, 2]),
                             tuple(cfg["questions_per_video"]),
                             tuple(train_qpv) if train_qpv else None)  # fmt: skip
    for src in set(cfg["_sound_source_by_split"].values()):  # fail early on a bad sound font
        load_note_bank(src, cfg["sample_rate"])

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "audio").mkdir(parents=True)
        (tmp / "frames").mkdir()
        batches = [scenes[i : i + 16] for i in range(0, len(scenes), 16)]
        jobs = [(b, str(tmp), cfg["frame_size"], cfg["jpeg_quality"], cfg["visual_cue"])
                for b in batches]  # fmt: skip
        with tqdm(total=len(scenes), desc="MiniMusic-AVQA videos", unit="video") as bar:
            if cfg["num_workers"] > 1 and len(batches) > 1:
                import multiprocessing as mp

                ctx = mp.get_context("spawn")  # no fork of a process that may hold threads
                with ProcessPoolExecutor(cfg["num_workers"], mp_context=ctx) as pool:
                    for done in pool.map(_write_media_batch, jobs):
                        bar.update(done)
            else:
                for job in jobs:
                    bar.update(_write_media_batch(job))

        split_of = {sc["video_id"]: sc["split"] for sc in scenes}
        by_split = {s: [r for r in records if split_of[r["video_id"]] == s] for s in SPLITS}
        for s in SPLITS:
            _write_json(tmp / f"avqa-{s}.json", by_split[s])
        public = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _NOT_HASHED}
        _write_json(tmp / "scenes.json", {
            "generator": {"name": "MiniMusic-AVQA", "version": GENERATOR_VERSION, "seed": int(seed),
                          "config": public},
            "videos": scenes,
        })  # fmt: skip
        manifest = {
            "name": "MiniMusic-AVQA", "generator_version": GENERATOR_VERSION,
            "config_hash": digest, "seed": int(seed), "config": public,
            "seconds": cfg["seconds"],
            "videos": {s: sum(1 for sc in scenes if sc["split"] == s) for s in SPLITS},
            "questions": {s: len(by_split[s]) for s in SPLITS},
            "video_ids": [sc["video_id"] for sc in scenes],
        }  # fmt: skip
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    logger.info("MiniMusic-AVQA written to %s: %s videos, %s questions", root,
                manifest["videos"], manifest["questions"])  # fmt: skip
    return _manifest_frame(str(cfg["root"]), manifest)


def load_scenes(root: str | Path) -> list[dict[str, Any]]:
    """The scene specifications written to ``root/scenes.json`` (video order)."""
    with (Path(root) / "scenes.json").open(encoding="utf-8") as f:
        return json.load(f)["videos"]
