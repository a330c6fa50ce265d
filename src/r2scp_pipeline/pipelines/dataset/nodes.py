"""Nodes of the ``dataset`` pipeline: get official-format annotations, ingest them, and report
the answer-prior baseline.

``dataset.source`` picks where the annotations come from:

* ``embedded``: the MiniMusic-AVQA generator (``generator/``) writes ``avqa-{train,val,test}.json``,
  ``audio/``, ``frames/`` and ``scenes.json`` under ``dataset.embedded.root``;
* ``music_avqa``: the official files already in ``dataset.music_avqa.annotations_dir`` (media,
  if any, under ``dataset.music_avqa.media_dir``);
* ``avqa``: the AVQA release's multiple-choice files (``train_qa.json``, ``val_qa.json``) in
  ``dataset.avqa.annotations_dir`` (media under ``dataset.avqa.media_dir``).

MUSIC-AVQA-format files go through ``ingestion.py``; AVQA-format files (``avqa`` and the
embedded generator with ``dataset.embedded.answer_format: multiple_choice``) through
``avqa_ingestion.py``, into the same ``qa_pairs`` contract plus ``choices`` / ``choice_idx``.
Every check runs inside :func:`ingest_annotations` before it returns, so Kedro saves nothing
from a bad input.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r2scp_pipeline import avqa
from r2scp_pipeline.multiple_choice import QUESTION_TYPES as AVQA_TYPES
from r2scp_pipeline.multiple_choice import choice_prior, is_multiple_choice
from r2scp_pipeline.splits import PROTOCOLS, SPLIT_FLAGS, SPLITS, join_splits, resolve_protocol

from . import avqa_ingestion
from .ingestion import (
    ANNOTATION_FILES,
    AnnotationError,
    ParsedSplit,
    ProtocolOutcome,
    apply_protocol,
    derive_instruments,
    is_unknown_template,
    parse_split,
    read_annotation_file,
    read_scenes,
    scene_tracks,
)

logger = logging.getLogger(__name__)

#: Valid values of ``dataset.source``.
SOURCES: tuple[str, ...] = ("embedded", "music_avqa", "avqa")
#: Valid values of ``dataset.embedded.answer_format``.
ANSWER_FORMATS: tuple[str, ...] = ("open_ended", "multiple_choice")
MANIFEST_COLUMNS: tuple[str, ...] = ("split", "annotations_path", "n_records")
QA_COLUMNS: tuple[str, ...] = (
    "question_id", "video_id", "split", "question", "template", "templ_values",
    "modality", "subtype", "answer", "answer_idx",
)  # fmt: skip
#: The columns multiple-choice data add to ``qa_pairs`` (``multiple_choice.py``).
CHOICE_COLUMNS: tuple[str, ...] = ("choices", "choice_idx")
#: ``video_index`` columns (see ``r2scp_pipeline.splits`` for the split columns).
VIDEO_INDEX_COLUMNS: tuple[str, ...] = (
    "video_id", "splits", *SPLIT_FLAGS.values(), "annotated_splits",
    "audio_path", "frames_dir", "video_path",
)  # fmt: skip
#: ``instrument_tracks`` columns: one row per instrument of a video (embedded data only). The
#: box is the instrument's resting bounding box as a fraction of the frame (NaN off-screen);
#: ``loudness_db`` / ``rhythm_score`` describe its stem (NaN when it never sounds).
TRACK_COLUMNS: tuple[str, ...] = (
    "video_id", "instrument", "visible", "x0", "y0", "x1", "y1", "seconds", "active_seconds",
    "loudness_db", "rhythm_score",
)  # fmt: skip


def _list_column(values: list[list[str]]) -> pd.Series:
    """Object column of Python lists: parquet ``list<string>`` (``list<null>`` if all empty).

    Not ``pd.ArrowDtype``: pandas 3.1 cannot read back the parquet metadata it writes for it.
    """
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = list(v)
    return pd.Series(out, dtype=object)


def as_mlflow_metrics(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{name: v}`` -> ``{name: {"value": v, "step": 0}}``, the item format that
    ``kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset`` (kedro-mlflow 2.0) saves."""
    return {k: {"value": float(v), "step": 0} for k, v in values.items()}


def _source(dataset_params: dict[str, Any]) -> str:
    source = dataset_params.get("source")
    if source not in SOURCES:
        raise ValueError(
            f"parameter dataset.source is {source!r}; valid values: {', '.join(SOURCES)}"
        )
    return source


def _manifest_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "split": pd.Series([r["split"] for r in rows], dtype="str"),
            "annotations_path": pd.Series([str(r["annotations_path"]) for r in rows], dtype="str"),
            "n_records": pd.Series([int(r["n_records"]) for r in rows], dtype="int64"),
        }
    )


def music_avqa_manifest(music_avqa_params: dict[str, Any] | None) -> pd.DataFrame:
    """Manifest of the official split files found in ``annotations_dir`` (nothing is written)."""
    annotations_dir = (music_avqa_params or {}).get("annotations_dir")
    if not annotations_dir:
        raise ValueError(
            "dataset.source is 'music_avqa' but parameter dataset.music_avqa.annotations_dir is "
            "not set: point it at the folder holding avqa-train.json / avqa-val.json / "
            "avqa-test.json, e.g. kedro run --pipelines=dataset "
            '--params="dataset.source=music_avqa,dataset.music_avqa.annotations_dir=DIR"'
        )
    folder = Path(annotations_dir)
    if not folder.is_dir():
        raise ValueError(
            f"dataset.music_avqa.annotations_dir={annotations_dir!r} is not a directory"
        )
    rows = []
    for split in SPLITS:
        path = folder / ANNOTATION_FILES[split]
        if path.is_file():
            rows.append(
                {
                    "split": split,
                    "annotations_path": str(path),
                    "n_records": len(read_annotation_file(path)),
                }
            )
    if not rows:
        raise ValueError(
            f"dataset.music_avqa.annotations_dir={annotations_dir!r} holds none of "
            f"{', '.join(ANNOTATION_FILES.values())}"
        )
    logger.info(
        "MUSIC-AVQA annotations in %s: %s",
        folder,
        ", ".join(f"{r['split']} ({r['n_records']} records)" for r in rows),
    )
    return _manifest_frame(rows)


def multiple_choice_source(dataset_params: dict[str, Any]) -> bool:
    """Whether the annotations are AVQA-format multiple choice: ``dataset.source: avqa``, or
    the embedded generator with ``dataset.embedded.answer_format: multiple_choice``."""
    source = _source(dataset_params)
    if source != "embedded":
        return source == "avqa"
    fmt = (dataset_params.get("embedded") or {}).get("answer_format", "open_ended")
    if fmt not in ANSWER_FORMATS:
        raise ValueError(
            f"parameter dataset.embedded.answer_format is {fmt!r}; valid values: "
            f"{', '.join(ANSWER_FORMATS)}"
        )
    return fmt == "multiple_choice"


def generate_embedded_dataset(dataset_params: dict[str, Any], seed: int) -> pd.DataFrame:
    """Produce the annotation files and return their manifest.

    ``embedded``: run the MiniMusic-AVQA generator with ``dataset.embedded`` and ``seed``;
    with ``answer_format: multiple_choice`` also rewrite its questions as AVQA files
    (``generator/choices.py``: ``train_qa.json`` -> train, ``val_qa.json`` -> test).
    ``music_avqa``: generate nothing; list the ``avqa-{train,val,test}.json`` that exist in
    ``dataset.music_avqa.annotations_dir``. ``avqa``: generate nothing; list the files of
    ``dataset.avqa.files`` in ``dataset.avqa.annotations_dir``.

    Returns:
        ``raw_dataset_manifest``: one row per split file, ``split, annotations_path, n_records``.
    """
    source = _source(dataset_params)
    if source == "music_avqa":
        return music_avqa_manifest(dataset_params.get("music_avqa"))
    if source == "avqa":
        return _manifest_frame(avqa_ingestion.avqa_manifest_rows(dataset_params.get("avqa")))
    from .generator import generate_dataset  # imported here: only the embedded source needs it

    mc = multiple_choice_source(dataset_params)
    embedded = {k: v for k, v in dict(dataset_params["embedded"]).items() if k != "answer_format"}
    manifest = generate_dataset(embedded, int(seed))  # same media for either answer format
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"the embedded generator returned a manifest without columns {missing}")
    if mc:
        from .generator.choices import write_multiple_choice

        return _manifest_frame(write_multiple_choice(embedded["root"], int(seed)))
    return _manifest_frame(manifest.to_dict("records"))


def instrument_tracks(dataset_params: dict[str, Any], video_index: pd.DataFrame) -> pd.DataFrame:
    """Where and when each instrument of each video is, from the embedded generator's
    ``scenes.json``: the ground truth of its questions, used by stage I's grounding heads.

    Returns ``instrument_tracks``, one row per instrument (``TRACK_COLUMNS``): class, whether
    it is on screen, its resting box ``x0, y0, x1, y1`` (fractions of the square frame), the
    clip length, the whole seconds in which it sounds and its stem's level (dB) and rhythm
    score (what the comparative questions compare). Real MUSIC-AVQA and AVQA have no
    such labels: the table is then empty (and stage I trains on eq. 10 alone).
    """
    source = _source(dataset_params)
    empty = pd.DataFrame({c: [] for c in TRACK_COLUMNS})
    if source != "embedded":
        return empty
    from .generator.render import instrument_boxes

    root = Path(str(_media_root(dataset_params, source)))
    path = root / "scenes.json"
    scenes = read_scenes(path, keep=("instruments", "seconds"))
    size = int(dataset_params["embedded"]["frame_size"])
    rows = []
    for vid in video_index["video_id"].astype(str):
        scene = scenes.get(vid)
        if scene is None:
            raise AnnotationError(path, f"no scene for video {vid!r} (listed in video_index)")
        insts = scene_tracks(path, vid, scene)
        try:
            boxes = instrument_boxes({"instruments": insts}, size)
        except (KeyError, OSError, ValueError) as exc:
            raise AnnotationError(path, f"video {vid!r}: cannot place its instruments ({exc!r})") from exc
        for j, inst in enumerate(insts):
            box = [c / size for c in boxes[inst.get("id", j)]] if inst["visible"] else [np.nan] * 4
            sound = [float(inst[k]) if inst["active_seconds"] else np.nan
                     for k in ("loudness_db", "rhythm_score")]  # fmt: skip
            rows.append((vid, inst["class"], inst["visible"], *box, float(scene["seconds"]),
                         np.asarray(inst["active_seconds"], dtype=np.int32), *sound))  # fmt: skip
    if not rows:
        return empty
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


def _read_manifest(manifest: pd.DataFrame) -> list[tuple[str, str, int]]:
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(
            f"raw_dataset_manifest lacks columns {missing}: re-run node generate_embedded_dataset"
        )
    rows = []
    for r in manifest.itertuples(index=False):
        if r.split not in SPLITS:
            raise ValueError(
                f"raw_dataset_manifest names split {r.split!r} ({r.annotations_path}); "
                f"valid splits: {', '.join(SPLITS)}"
            )
        rows.append((str(r.split), str(r.annotations_path), int(r.n_records)))
    splits = [r[0] for r in rows]
    if len(set(splits)) != len(splits) or not rows:
        raise ValueError(f"raw_dataset_manifest must list each split once, got {splits}")
    return sorted(rows, key=lambda r: SPLITS.index(r[0]))


def _media_root(dataset_params: dict[str, Any], source: str) -> str | None:
    if source == "embedded":
        return str(dataset_params["embedded"]["root"])
    return (dataset_params.get(source) or {}).get("media_dir") or None


def _entries(folder: Path, want_dirs: bool) -> set[str]:
    """Names of the files (or directories) directly in ``folder``; empty if it does not exist."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if (e.is_dir() if want_dirs else e.is_file())}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _video_index(outcome: ProtocolOutcome, media_root: str | None) -> pd.DataFrame:
    videos = outcome.video_ids
    root = Path(media_root) if media_root else None
    audio = _entries(root / "audio", False) if root else set()
    frames = _entries(root / "frames", True) if root else set()
    mp4 = _entries(root / "videos", False) if root else set()

    def path(kind: str, name: str, present: set[str]) -> str | None:
        return (root / kind / name).as_posix() if name in present else None

    columns: dict[str, pd.Series] = {
        "video_id": pd.Series(videos, dtype="str"),
        "splits": pd.Series([join_splits(outcome.kept[v]) for v in videos], dtype="str"),
    }
    for split, flag in SPLIT_FLAGS.items():
        columns[flag] = pd.Series([split in outcome.kept[v] for v in videos], dtype="bool")
    columns["annotated_splits"] = pd.Series(
        [join_splits(outcome.annotated[v]) for v in videos], dtype="str"
    )
    columns["audio_path"] = pd.Series(
        [path("audio", f"{v}.wav", audio) for v in videos], dtype="str"
    )
    columns["frames_dir"] = pd.Series([path("frames", v, frames) for v in videos], dtype="str")
    columns["video_path"] = pd.Series(
        [path("videos", f"{v}.mp4", mp4) for v in videos], dtype="str"
    )
    return pd.DataFrame(columns)[list(VIDEO_INDEX_COLUMNS)]


def _scene_metadata(
    video_index: pd.DataFrame,
    qa_rows: list[dict[str, Any]],
    source: str,
    media_root: str | None,
    multiple_choice: bool = False,
) -> pd.DataFrame:
    ids, splits = video_index["video_id"].tolist(), video_index["splits"].tolist()
    if source == "embedded":
        scenes_path = Path(str(media_root)) / "scenes.json"
        scenes = read_scenes(scenes_path)
        visible, sounding = [], []
        files = video_index["annotated_splits"].tolist()  # the generator splits by video
        for vid, split in zip(ids, files, strict=True):
            scene = scenes.get(vid)
            if scene is None:
                raise AnnotationError(scenes_path, f"no scene for video {vid!r} (split {split})")
            # multiple choice: the generator's val videos are in train_qa.json, then held out
            same = scene["split"] == split or (multiple_choice and {scene["split"], split} <= {"train", "val"})
            if not same:
                raise AnnotationError(
                    scenes_path,
                    f"video {vid!r} has split {scene['split']!r} here but is in the {split} "
                    "annotations",
                )
            visible.append(scene["visible"])
            sounding.append(scene["sounding"])
        instruments = [sorted(set(v) | set(s)) for v, s in zip(visible, sounding, strict=True)]
    elif multiple_choice:  # AVQA: real-life videos, no instrument labels
        instruments = visible = sounding = [[] for _ in ids]
    else:
        by_video: dict[str, list[dict[str, Any]]] = {v: [] for v in ids}
        for q in qa_rows:
            by_video[q["video_id"]].append(q)
        instruments = [derive_instruments(by_video[v]) for v in ids]
        visible = [[] for _ in ids]
        sounding = [[] for _ in ids]
    return pd.DataFrame(
        {
            "video_id": pd.Series(ids, dtype="str"),
            "splits": pd.Series(splits, dtype="str"),
            "instruments": _list_column(instruments),
            "visible": _list_column(visible),
            "sounding": _list_column(sounding),
        }
    )


def _qa_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame({c: [r[c] for r in rows] for c in QA_COLUMNS})
    dtypes = {c: "str" for c in QA_COLUMNS} | {"question_id": "int64", "answer_idx": "int64"}
    frame = frame.astype(dtypes)
    if rows and "choices" in rows[0]:
        frame["choices"] = _list_column([r["choices"] for r in rows])
        frame["choice_idx"] = pd.Series([r["choice_idx"] for r in rows], dtype="int64")
    return frame


def _dataset_metrics(
    parsed: list[ParsedSplit],
    outcome: ProtocolOutcome,
    qa_pairs: pd.DataFrame,
    n_unknown_templates: int,
) -> dict[str, float]:
    """Counts after the protocol (``questions.*``, ``videos.*``, ``type.*``), per split and
    type (``split_type.<split>.<modality>.<subtype>``), videos in several splits
    (``shared_videos.total``, ``shared_videos.train_test``, ...) and what the protocol removed
    (``protocol.removed_{questions,videos}.<split>``)."""
    metrics: dict[str, float] = {
        "questions.total": float(len(qa_pairs)),
        "videos.total": float(len(outcome.video_ids)),
        "deleted_questions.total": float(sum(p.n_deleted for p in parsed)),
        "unknown_templates": float(n_unknown_templates),
        "shared_videos.total": float(sum(len(s) > 1 for s in outcome.kept.values())),
    }
    by_split = qa_pairs["split"].value_counts()
    for p in parsed:
        metrics[f"questions.{p.split}"] = float(by_split.get(p.split, 0))
        metrics[f"videos.{p.split}"] = float(sum(p.split in s for s in outcome.kept.values()))
        metrics[f"deleted_questions.{p.split}"] = float(p.n_deleted)
        metrics[f"protocol.removed_questions.{p.split}"] = float(outcome.removed_questions[p.split])
        metrics[f"protocol.removed_videos.{p.split}"] = float(outcome.removed_videos[p.split])
    shared: Counter[str] = Counter(join_splits(s) for s in outcome.kept.values() if len(s) > 1)
    for key, n in sorted(shared.items()):
        metrics[f"shared_videos.{key.replace('+', '_')}"] = float(n)  # MLflow: no "+"
    counts = Counter(zip(qa_pairs["modality"], qa_pairs["subtype"], strict=True))
    per_split = Counter(
        zip(qa_pairs["split"], qa_pairs["modality"], qa_pairs["subtype"], strict=True)
    )
    kinds = avqa.QUESTION_TYPES
    if is_multiple_choice(qa_pairs):  # AVQA: (relation, type) pairs as they occur
        order = {t: i for i, t in enumerate(AVQA_TYPES)}
        kinds = tuple(sorted(counts, key=lambda k: (order.get(k[1], 99), k)))
    for modality, subtype in kinds:
        metrics[f"type.{modality}.{subtype}"] = float(counts.get((modality, subtype), 0))
        for p in parsed:
            metrics[f"split_type.{p.split}.{modality}.{subtype}"] = float(
                per_split.get((p.split, modality, subtype), 0)
            )
    return metrics


def _protocol_report(
    outcome: ProtocolOutcome, source: str, parsed: list[ParsedSplit]
) -> dict[str, Any]:
    """``split_protocol``: the protocol, what it means, and per split the questions and videos
    annotated, kept and removed (the report downstream pipelines name)."""
    report: dict[str, Any] = {
        "protocol": outcome.protocol,
        "source": source,
        "description": PROTOCOLS[outcome.protocol],
        "corpus": "videos with training questions (video_index.in_train)",
        "splits": {},
        "shared_videos": {
            "annotated": {
                k: v
                for k, v in sorted(
                    Counter(
                        join_splits(s) for s in outcome.annotated.values() if len(s) > 1
                    ).items()
                )
            },
            "kept": {
                k: v
                for k, v in sorted(
                    Counter(join_splits(s) for s in outcome.kept.values() if len(s) > 1).items()
                )
            },
        },  # fmt: skip
    }
    kept_q = Counter(q["split"] for q in outcome.questions)
    for p in parsed:
        report["splits"][p.split] = {
            "questions_annotated": len(p.questions),
            "questions_kept": kept_q.get(p.split, 0),
            "questions_removed": outcome.removed_questions[p.split],
            "videos_annotated": sum(p.split in s for s in outcome.annotated.values()),
            "videos_kept": sum(p.split in s for s in outcome.kept.values()),
            "videos_removed": outcome.removed_videos[p.split],
        }
    report["videos_total"] = len(outcome.video_ids)
    report["questions_total"] = len(outcome.questions)
    return report


def ingest_annotations(
    dataset_params: dict[str, Any], manifest: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]], dict[str, Any]]:
    """Parse and validate the manifest's split files into the project's tables.

    Placeholders are filled from ``templ_values`` in order, withdrawn questions
    (``question_deleted == 1``) are dropped and counted, answers are mapped to ``avqa.ANSWERS``.
    AVQA-format files (:func:`multiple_choice_source`) are read by ``avqa_ingestion`` instead,
    and ``dataset.avqa.val_fraction`` of the training videos become the ``val`` split when no
    file was read as val. The split protocol ``dataset.protocol`` (``r2scp_pipeline.splits``; null = the source's
    default) then decides which questions of videos shared between splits are kept. Any
    problem raises an error naming the file, record index and field.

    Returns:
        ``qa_pairs`` (one row per kept question), ``video_index`` (one row per video with the
        splits it has questions in and the media paths that exist), ``scene_metadata``
        (instruments per video: from ``scenes.json`` for the embedded data, derived from the
        questions for MUSIC-AVQA, none for AVQA), ``dataset_metrics`` (counts for MLflow,
        ``{name: {"value": v, "step": 0}}``) and ``split_protocol`` (the protocol report).
    """
    source = _source(dataset_params)
    protocol = resolve_protocol(dataset_params.get("protocol"), source)
    mc = multiple_choice_source(dataset_params)
    parse = avqa_ingestion.parse_split if mc else parse_split
    parsed: list[ParsedSplit] = []
    for split, path, n_records in _read_manifest(manifest):
        p = parse(path, split)
        if p.n_records != n_records:
            raise AnnotationError(
                path,
                f"holds {p.n_records} records but raw_dataset_manifest says {n_records}: the "
                "file changed since the manifest was written; re-run the dataset pipeline",
            )
        parsed.append(p)
    if mc:
        fraction = float((dataset_params.get("avqa") or {}).get("val_fraction", 0.1))
        parsed = avqa_ingestion.hold_out_val(parsed, fraction)
    outcome = apply_protocol(parsed, protocol)

    rows = outcome.questions
    if not rows:
        raise ValueError(
            "no questions left in " + ", ".join(p.path for p in parsed) + " (all withdrawn?)"
        )
    qa_pairs = _qa_frame(rows)
    unknown = (
        []
        if mc  # AVQA has no templates
        else sorted({t for t in qa_pairs["template"].unique() if is_unknown_template(t)})
    )
    n_unknown = int(qa_pairs["template"].isin(unknown).sum())
    if unknown:
        logger.warning(
            "%d question(s) use %d template(s) outside the 33 official ones: %s",
            n_unknown, len(unknown), unknown[:5],
        )  # fmt: skip
    n_deleted = sum(p.n_deleted for p in parsed)
    logger.info(
        "Ingested %d questions over %d videos (%s; protocol %s); dropped %d withdrawn question(s)",
        len(qa_pairs),
        len(outcome.video_ids),
        ", ".join(f"{s}: {n}" for s, n in qa_pairs["split"].value_counts().items()),
        protocol,
        n_deleted,
    )

    media_root = _media_root(dataset_params, source)
    video_index = _video_index(outcome, media_root)
    scene_metadata = _scene_metadata(video_index, rows, source, media_root, mc)
    metrics = _dataset_metrics(parsed, outcome, qa_pairs, n_unknown)
    report = _protocol_report(outcome, source, parsed)
    return qa_pairs, video_index, scene_metadata, as_mlflow_metrics(metrics), report


# ---- answer prior ----------------------------------------------------------------------------


def _most_frequent(answers: pd.Series) -> str:
    """Most frequent answer; ties go to the earliest answer in ``avqa.ANSWERS`` (deterministic)."""
    counts = Counter(answers)
    return min(counts, key=lambda a: (-counts[a], avqa.ANSWER_TO_IDX[a]))


def _pick_splits(splits: set[str]) -> tuple[str, str]:
    fit = "train" if "train" in splits else next(s for s in SPLITS if s in splits)
    evaluate = next(s for s in ("test", "val", "train") if s in splits)
    return fit, evaluate


def answer_prior_report(
    qa_pairs: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Accuracy of the answer prior: the most frequent training answer of each template.

    The prior is fit on ``train`` (else the first split present) and scored on ``test`` (else
    ``val``, else ``train``: then in-sample, shown in the table). A template unseen in the fit
    split gets its question type's most frequent answer (else the overall one).

    Returns:
        ``answer_prior_table``: rows for ``overall``, each ``modality``, each paper column
        (``paper``, pooled by sub-type as in ``avqa.PAPER_COLUMNS``), each question ``type`` and
        each ``template``, with ``prior_answer`` (templates), ``n_questions``, ``n_correct``,
        ``accuracy_pct``, ``fit_split``, ``eval_split``.
        ``answer_prior_metrics``: accuracy in percent, ``overall``, ``<modality>``,
        ``paper.<column>`` and ``<modality>.<subtype>`` (``{name: {"value": v, "step": 0}}``).

    Multiple-choice data (AVQA): the prior picks, among a question's candidates, the one most
    often right for its question type in the fit split (``multiple_choice.choice_prior``); rows
    for ``overall``, each relation (``modality``) and each (relation, type); no templates.
    """
    if qa_pairs.empty:
        raise ValueError("qa_pairs is empty: nothing to compute the answer prior on")
    fit_split, eval_split = _pick_splits(set(qa_pairs["split"]))
    fit = qa_pairs[qa_pairs["split"] == fit_split]
    ev = qa_pairs[qa_pairs["split"] == eval_split].copy()

    mc = is_multiple_choice(qa_pairs)
    if mc:
        pick = choice_prior(fit, ev)
        ev["prior"] = [list(c)[i] for c, i in zip(ev["choices"], pick, strict=True)]
        ev["correct"] = pick == ev["choice_idx"].to_numpy()
    else:
        by_template = fit.groupby("template")["answer"].agg(_most_frequent).to_dict()
        by_type = fit.groupby(["modality", "subtype"])["answer"].agg(_most_frequent).to_dict()
        overall = _most_frequent(fit["answer"])
        ev["prior"] = [
            by_template.get(t, by_type.get((m, s), overall))
            for t, m, s in zip(ev["template"], ev["modality"], ev["subtype"], strict=True)
        ]
        ev["correct"] = ev["prior"] == ev["answer"]
    pooled = dict(avqa.PAPER_COLUMNS)

    rows: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}

    def add(
        level: str, name: str, mask: pd.Series, metric: str | None = None, **extra: Any
    ) -> None:
        n = int(mask.sum())
        if n == 0:
            return
        correct = int(ev.loc[mask, "correct"].sum())
        if metric is not None:
            metrics[metric] = round(100.0 * correct / n, 4)
        rows.append(
            {"level": level, "group": name, **extra, "n_questions": n, "n_correct": correct,
             "accuracy_pct": round(100.0 * correct / n, 2)}
        )  # fmt: skip

    everything = pd.Series(True, index=ev.index)
    add("overall", "overall", everything, "overall")
    if mc:
        _choice_prior_rows(ev, add)
    for modality in () if mc else avqa.QUESTION_MODALITIES:
        add("modality", modality, ev["modality"] == modality, modality, modality=modality)
    for column, subtype in () if mc else pooled.items():
        add("paper", column, ev["subtype"] == subtype, f"paper.{column}", subtype=subtype)
    for modality, subtype in () if mc else avqa.QUESTION_TYPES:
        mask = (ev["modality"] == modality) & (ev["subtype"] == subtype)
        add(
            "type",
            f"{modality}/{subtype}",
            mask,
            f"{modality}.{subtype}",
            modality=modality,
            subtype=subtype,
        )
    type_order = {qt: i for i, qt in enumerate(avqa.QUESTION_TYPES)}
    templates = sorted(
        set(zip(ev["modality"], ev["subtype"], ev["template"], strict=True)),
        key=lambda mst: (type_order.get(mst[:2], len(type_order)), mst),
    )
    for m, s, t in () if mc else templates:
        add(
            "template", t, ev["template"] == t, modality=m, subtype=s,
            prior_answer=by_template.get(t, by_type.get((m, s), overall)),
        )  # fmt: skip

    table = pd.DataFrame(
        rows,
        columns=["level", "group", "modality", "subtype", "prior_answer", "n_questions",
                 "n_correct", "accuracy_pct"],
    )  # fmt: skip
    table = table.astype({"n_questions": "int64", "n_correct": "int64", "accuracy_pct": "float64"})
    table["fit_split"] = fit_split
    table["eval_split"] = eval_split
    logger.info(
        "Answer prior (fit on %s, scored on %s): %.2f%% over %d questions",
        fit_split, eval_split, rows[0]["accuracy_pct"], rows[0]["n_questions"],
    )  # fmt: skip
    return table, as_mlflow_metrics(metrics)


def _choice_prior_rows(ev: pd.DataFrame, add: Any) -> None:
    """The relation and (relation, type) rows of the multiple-choice answer prior."""
    for relation in sorted(ev["modality"].unique()):
        add("modality", relation, ev["modality"] == relation, relation, modality=relation)
    order = {t: i for i, t in enumerate(AVQA_TYPES)}
    kinds = sorted(set(zip(ev["modality"], ev["subtype"], strict=True)),
                   key=lambda k: (order.get(k[1], 99), k))  # fmt: skip
    for relation, qtype in kinds:
        mask = (ev["modality"] == relation) & (ev["subtype"] == qtype)
        add("type", f"{relation}/{qtype}", mask, f"{relation}.{qtype}", modality=relation,
            subtype=qtype)  # fmt: skip
