"""Nodes of the ``corpus`` pipeline: a retrieval corpus for the corpus study (paper Table 4).

The paper compares memory banks: the dataset's own training split (in-domain) against external
corpora (other scenes, other datasets). Here the external corpus is made by the embedded
MiniMusic-AVQA generator with another seed (``seed + corpus.seed_offset``: other scenes,
backgrounds, melodies) and optionally another sound font (``corpus.sound_source``: another
timbre domain), then encoded with the dataset's ``params:features`` by the shared extraction
code (:mod:`r2scp_pipeline.media`), so its ``[T, S, D]`` is the dataset's.

::

    params:corpus, params:dataset, params:seed
      -> generate_corpus          -> corpus_video_index          (media under corpus.root)
      -> extract_corpus_features  -> external_corpus_audio_features, external_corpus_visual_features
      -> corpus_metadata          -> external_corpus_metadata    (video_id, instruments)
      -> corpus_report            -> external_corpus_report      (counts, shapes, provenance)

Corpus video ids are ``corpus.id_prefix`` + the generator's id (``corpus_00000001``), so they
never equal a dataset id: build_index never drops a corpus video as "the query itself".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from r2scp_pipeline.media import (
    align_media_features,
    extract_audio_features,
    extract_visual_features,
)
from r2scp_pipeline.pipelines.dataset.generator import DEFAULTS, generate_dataset, load_scenes
from r2scp_pipeline.tensors import frame_to_tokens

logger = logging.getLogger(__name__)

#: ``corpus_video_index`` columns (``features.source: extracted`` reads the two paths)
VIDEO_INDEX_COLUMNS = ("video_id", "generator_video_id", "audio_path", "frames_dir")
#: ``external_corpus_metadata`` columns (build_index reads ``video_id, instruments``)
METADATA_COLUMNS = ("video_id", "instruments", "visible", "sounding", "background")
#: ``dataset.embedded`` knobs the corpus sets itself (``corpus.<key>``), or that mean nothing
#: for a corpus (its videos have no split and no questions are read)
_OWN_KEYS = {
    "root": "corpus.root",
    "num_videos": "corpus.num_videos",
    "sound_source": "corpus.sound_source",
    "split_fractions": "(every corpus video is one corpus: no splits)",
    "splits_sound_source": "corpus.sound_source (one sound source for the whole corpus)",
    "answer_format": "(no questions are read from the corpus)",
}


def _param(params: dict[str, Any], key: str) -> Any:
    if not isinstance(params, dict) or key not in params:
        raise ValueError(f"missing parameter corpus.{key} (see conf/base/parameters_corpus.yml)")
    return params[key]


def corpus_seed(corpus_params: dict[str, Any], seed: int) -> int:
    """The generator seed of the corpus: ``seed + corpus.seed_offset``.

    ``seed_offset`` must be >= 1: with 0 the generator would draw the dataset's own scenes
    (video ``i`` is seeded by ``[seed, 1, i]``), i.e. copy its val / test videos into the bank.
    """
    offset = _param(corpus_params, "seed_offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
        raise ValueError(
            f"parameter corpus.seed_offset must be an integer >= 1, got {offset!r}: with 0 the "
            "corpus would repeat the dataset's own scenes (its test videos included)"
        )
    return int(seed) + offset


def generator_config(corpus_params: dict[str, Any], dataset_params: dict[str, Any]) -> dict[str, Any]:
    """The generator parameters of the corpus: the dataset's ``dataset.embedded`` knobs (media
    sizes, scene probabilities, ...) with ``corpus.embedded`` on top, and the corpus' own
    ``root``, ``num_videos`` and ``sound_source``; every video in one split (``train``).

    Raises ``ValueError`` naming ``corpus.<key>`` for a missing or bad value, an unknown
    ``corpus.embedded`` key, or one the corpus sets itself.
    """
    overrides = _param(corpus_params, "embedded") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"parameter corpus.embedded must be a mapping, got {overrides!r}")
    for key in overrides:
        if key in _OWN_KEYS:
            raise ValueError(
                f"parameter corpus.embedded.{key} cannot be overridden for the corpus: "
                f"set {_OWN_KEYS[key]}"
            )
        if key not in DEFAULTS:
            valid = ", ".join(k for k in DEFAULTS if k not in _OWN_KEYS)
            raise ValueError(f"unknown parameter corpus.embedded.{key}; valid keys: {valid}")
    num_videos = _param(corpus_params, "num_videos")
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
        raise ValueError(f"parameter corpus.num_videos must be an integer >= 1, got {num_videos!r}")
    root, source = str(_param(corpus_params, "root")), str(_param(corpus_params, "sound_source"))
    if source != "note_bank" and not (Path(source).suffix.lower() == ".sf2" and Path(source).is_file()):
        raise ValueError(
            f"parameter corpus.sound_source is {source!r}: neither 'note_bank' nor an existing "
            ".sf2 sound font"
        )
    dataset_root = str(((dataset_params or {}).get("embedded") or {}).get("root", ""))
    if dataset_root and Path(dataset_root).resolve() == Path(root).resolve():
        raise ValueError(
            f"parameter corpus.root is {root!r}, the dataset's own folder (dataset.embedded.root): "
            "the corpus needs a folder of its own"
        )
    base = {k: v for k, v in ((dataset_params or {}).get("embedded") or {}).items()
            if k not in _OWN_KEYS}  # fmt: skip
    return {
        **base,
        **overrides,
        "root": root,
        "num_videos": num_videos,
        "sound_source": source,
        "split_fractions": {"train": 1.0, "val": 0.0, "test": 0.0},
        "splits_sound_source": {},
    }


def _id_prefix(corpus_params: dict[str, Any]) -> str:
    prefix = _param(corpus_params, "id_prefix")
    if not isinstance(prefix, str) or not prefix.strip() or prefix.strip().isdigit():
        raise ValueError(
            f"parameter corpus.id_prefix must be a non-empty, non-numeric string (e.g. 'corpus_'), "
            f"got {prefix!r}: the corpus ids would look like (or be) the dataset's video ids"
        )
    return prefix


def generate_corpus(
    corpus_params: dict[str, Any], dataset_params: dict[str, Any], seed: int
) -> pd.DataFrame:
    """Generate the corpus media with the embedded generator and index them.

    The generator writes ``audio/<id>.wav``, ``frames/<id>/*.jpg`` and ``scenes.json`` under
    ``corpus.root`` (skipped when the folder is up to date, like the dataset), from
    :func:`generator_config` and :func:`corpus_seed`.

    Returns:
        ``corpus_video_index``: one row per corpus video, ``VIDEO_INDEX_COLUMNS``: the prefixed
        ``video_id``, the generator's ``generator_video_id``, ``audio_path`` and ``frames_dir``
        (under ``corpus.root``, as given).
    """
    prefix = _id_prefix(corpus_params)
    cfg = generator_config(corpus_params, dataset_params)
    generator_seed = corpus_seed(corpus_params, seed)
    try:
        generate_dataset(cfg, generator_seed)
    except ValueError as exc:  # the generator names dataset.embedded.<key>: say where it came from
        raise ValueError(
            f"corpus generation failed: {exc} (for the corpus: corpus.embedded or the "
            "dataset.embedded value it inherits)"
        ) from exc
    root = Path(cfg["root"])
    ids = [str(scene["video_id"]) for scene in load_scenes(root)]
    return pd.DataFrame(
        {
            "video_id": pd.Series([f"{prefix}{v}" for v in ids], dtype="str"),
            "generator_video_id": pd.Series(ids, dtype="str"),
            "audio_path": pd.Series([(root / "audio" / f"{v}.wav").as_posix() for v in ids], dtype="str"),
            "frames_dir": pd.Series([(root / "frames" / v).as_posix() for v in ids], dtype="str"),
        }
    )[list(VIDEO_INDEX_COLUMNS)]


def extract_corpus_features(
    corpus_video_index: pd.DataFrame, features_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Audio and visual features of the corpus with the dataset's ``params:features``.

    The same functions as the ``features`` pipeline (:mod:`r2scp_pipeline.media`), on the
    generated wav + JPEG files (``features.source`` and ``media_root`` are fixed to those; every
    encoder setting is the dataset's). With ``features.on_error: skip`` a video that fails in
    either modality leaves both tables.

    Returns:
        ``external_corpus_audio_features``, ``external_corpus_visual_features`` (the long
        layout of ``audio_features`` / ``visual_features``) and the extraction stats.
    """
    for modality in ("audio", "visual"):
        encoder = ((features_params or {}).get(modality) or {}).get("encoder")
        if encoder == "precomputed":
            raise ValueError(
                f"parameter features.{modality}.encoder is 'precomputed': the corpus pipeline "
                "renders media and encodes them, so it needs the media encoders (logmel, "
                "efficientnet_lite0); make the corpus' .npy files yourself instead and put "
                f"the tables at the external_corpus_{modality}_features catalog entry"
            )
    params = {**features_params, "source": "extracted", "media_root": None}
    audio_raw, audio_stats = extract_audio_features(corpus_video_index, params)
    visual_raw, visual_stats = extract_visual_features(corpus_video_index, params)
    audio, visual = align_media_features(audio_raw, visual_raw, audio_stats, visual_stats)
    return audio, visual, {"audio": audio_stats, "visual": visual_stats}


def corpus_metadata(
    corpus_params: dict[str, Any],
    corpus_video_index: pd.DataFrame,
    external_corpus_audio_features: pd.DataFrame,
) -> pd.DataFrame:
    """Instrument labels of the corpus videos that have features, for build_index's
    retrieval-quality metric: ``instruments`` = on-screen or sounding classes (as the dataset's
    ``scene_metadata``), plus ``visible``, ``sounding`` and ``background`` (indoor / outdoor).

    Raises ``ValueError`` naming ``scenes.json`` when a video of the index has no scene there.
    """
    path = Path(str(_param(corpus_params, "root"))) / "scenes.json"
    scenes = {str(s["video_id"]): s for s in load_scenes(path.parent)}
    kept = set(external_corpus_audio_features["video_id"].astype(str))
    rows = []
    for vid, gen in zip(corpus_video_index["video_id"], corpus_video_index["generator_video_id"],
                        strict=True):  # fmt: skip
        if vid not in kept:
            continue
        scene = scenes.get(str(gen))
        if scene is None:
            raise ValueError(f"{path}: no scene for corpus video {vid!r} (generator id {gen!r})")
        visible, sounding = list(scene["visible"]), list(scene["sounding"])
        rows.append((vid, sorted(set(visible) | set(sounding)), visible, sounding,
                     str(scene["background"]["kind"])))  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    frame["video_id"] = frame["video_id"].astype("str")
    return frame


def corpus_report(
    corpus_params: dict[str, Any],
    seed: int,
    corpus_video_index: pd.DataFrame,
    external_corpus_audio_features: pd.DataFrame,
    external_corpus_visual_features: pd.DataFrame,
    external_corpus_metadata: pd.DataFrame,
    feature_stats: dict[str, Any],
) -> dict[str, Any]:
    """What the corpus is: its generator seed and sound source, videos generated / encoded /
    skipped, ``[T, S, D]`` per modality, scene mix (indoor share, mean instruments per video)."""
    shapes = {m: list(frame_to_tokens(t)[1].shape[1:]) for m, t in
              (("audio", external_corpus_audio_features), ("visual", external_corpus_visual_features))}  # fmt: skip
    skipped = sorted({s["video_id"] for m in ("audio", "visual") for s in feature_stats[m]["skipped"]})
    meta = external_corpus_metadata
    report = {
        "root": str(corpus_params["root"]),
        "id_prefix": str(corpus_params["id_prefix"]),
        "seed": corpus_seed(corpus_params, seed),
        "seed_offset": int(corpus_params["seed_offset"]),
        "sound_source": str(corpus_params["sound_source"]),
        "embedded_overrides": dict(corpus_params.get("embedded") or {}),
        "videos_generated": len(corpus_video_index),
        "videos_encoded": int(external_corpus_audio_features["video_id"].nunique()),
        "skipped_video_ids": skipped,
        "shapes": shapes,
        "encoders": {m: feature_stats[m]["encoder"] for m in ("audio", "visual")},
        "indoor_share": float((meta["background"] == "indoor").mean()) if len(meta) else None,
        "instruments_per_video": float(meta["instruments"].map(len).mean()) if len(meta) else None,
    }
    logger.info("corpus: %d of %d videos encoded, audio %s, visual %s", report["videos_encoded"],
                report["videos_generated"], shapes["audio"], shapes["visual"])  # fmt: skip
    return report
