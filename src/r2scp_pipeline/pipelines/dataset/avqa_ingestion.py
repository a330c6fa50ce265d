"""Parsing and validation of annotation files in the AVQA release's format (multiple choice).

AVQA (Yang et al., ACM MM 2022) releases ``train_qa.json`` and ``val_qa.json``, each a JSON
list of records::

    {"id": 7, "video_name": "-2poGMEmbbk_000098", "video_id": 75,
     "question_text": "What is the man in the video doing?",
     "multi_choice": ["singing", "playing the drum", "cooking", "typing"], "answer": 1,
     "question_relation": "Both", "question_type": "Happening"}

``answer`` is the index of the right candidate in ``multi_choice`` (the official AVQA code
reads it with ``int()``, so an integer written as a string is accepted); ``question_type`` is
one of ``multiple_choice.QUESTION_TYPES``; ``question_relation`` is kept as written (the
project has not seen the release's full list of relations, so it checks only that there is
one). Media are named by ``video_name`` (VGGSound's ``<youtube id>_<start>``), which is the
project's ``video_id``; the release's numeric ``video_id`` must name one video only.

Every record becomes a ``qa_pairs`` row of the MUSIC-AVQA path's contract
(``nodes.QA_COLUMNS``) plus ``choices`` and ``choice_idx``: ``question`` = ``template`` = the
question text, ``templ_values`` = ``[]``, ``modality`` = the relation, ``subtype`` = the type,
``answer`` = the right candidate's text, ``answer_idx`` = its index in the 42-answer MUSIC-AVQA
vocabulary or -1. Every problem is an :class:`~.ingestion.AnnotationError` naming the file,
the record index and the field, as in the MUSIC-AVQA path (``ingestion.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2scp_pipeline import avqa
from r2scp_pipeline.multiple_choice import N_CHOICES, QUESTION_TYPES
from r2scp_pipeline.splits import SPLITS

from .ingestion import AnnotationError, ParsedSplit, read_annotation_file

logger = logging.getLogger(__name__)

#: Fields every record must carry.
REQUIRED_FIELDS: tuple[str, ...] = (
    "id", "video_name", "video_id", "question_text", "multi_choice", "answer",
    "question_relation", "question_type",
)  # fmt: skip
_TYPES = frozenset(QUESTION_TYPES)


def _check_text(value: Any, path: Path, index: int, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, f"expected a non-empty string, got {value!r}", index, name)
    return value.strip()


def _check_index(value: Any, path: Path, index: int, name: str) -> int:
    """An integer, or a string holding one (the official AVQA loader applies ``int()``)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(path, f"expected an integer, got {value!r}", index, name)
    return value


def parse_record(record: Any, path: str | Path, index: int, split: str) -> dict[str, Any]:
    """Validate one AVQA record and return its ``qa_pairs`` row (module docstring)."""
    path = Path(path)
    if not isinstance(record, dict):
        raise AnnotationError(path, f"expected a JSON object, got {type(record).__name__}", index)
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise AnnotationError(path, "missing field", index, name)
    qid = _check_index(record["id"], path, index, "id")
    name = record["video_name"]
    if not isinstance(name, str) or not name.strip() or name != name.strip() or "/" in name:
        raise AnnotationError(
            path,
            f"expected a non-empty string without '/' or surrounding spaces, got {name!r}",
            index,
            "video_name",
        )
    source_id = record["video_id"]
    if isinstance(source_id, bool) or not isinstance(source_id, int | str) or source_id == "":
        raise AnnotationError(
            path, f"expected an integer or a non-empty string, got {source_id!r}", index, "video_id"
        )
    question = _check_text(record["question_text"], path, index, "question_text")
    choices = record["multi_choice"]
    if not isinstance(choices, list) or len(choices) != N_CHOICES:
        got = f"{len(choices)} item(s)" if isinstance(choices, list) else repr(choices)
        raise AnnotationError(
            path, f"expected a list of {N_CHOICES} candidate answers, got {got}", index,
            "multi_choice",
        )  # fmt: skip
    for j, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise AnnotationError(
                path, f"candidate {j} is {c!r}: expected a non-empty string", index, "multi_choice"
            )
    choices = [c.strip() for c in choices]
    answer = _check_index(record["answer"], path, index, "answer")
    if not 0 <= answer < N_CHOICES:
        raise AnnotationError(
            path, f"answer index {answer} is outside 0..{N_CHOICES - 1} (multi_choice)", index,
            "answer",
        )  # fmt: skip
    relation = _check_text(record["question_relation"], path, index, "question_relation")
    qtype = _check_text(record["question_type"], path, index, "question_type")
    if qtype not in _TYPES:
        raise AnnotationError(
            path,
            f"unknown question type {qtype!r}; AVQA's types: {', '.join(QUESTION_TYPES)}",
            index,
            "question_type",
        )
    right = choices[answer]
    return {
        "question_id": qid,
        "video_id": name,
        "split": split,
        "question": question,
        "template": question,
        "templ_values": "[]",
        "modality": relation,
        "subtype": qtype,
        "answer": right,
        "answer_idx": avqa.ANSWER_TO_IDX.get(right, -1),
        "choices": choices,
        "choice_idx": answer,
        "source_video_id": str(source_id),
    }


def parse_split(path: str | Path, split: str) -> ParsedSplit:
    """Read and validate one AVQA file as project split ``split`` (see :func:`parse_record`).

    Errors: a duplicate ``id`` (naming the first record that used it), a ``video_name`` with
    two numeric ``video_id`` values or the reverse."""
    if split not in SPLITS:
        raise AnnotationError(path, f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    records = read_annotation_file(path)
    parsed = ParsedSplit(split=split, path=str(path), n_records=len(records))
    seen: set[str] = set()
    names: dict[str, tuple[str, int]] = {}  # video_name -> (source video_id, record)
    ids: dict[str, tuple[str, int]] = {}  # source video_id -> (video_name, record)
    n_repeated = 0
    for index, record in enumerate(
        tqdm(records, desc=f"parse {Path(path).name}", unit="q", leave=False, mininterval=1.0)
    ):
        row = parse_record(record, path, index, split)
        qid, vid, src = row["question_id"], row["video_id"], row.pop("source_video_id")
        if qid in parsed.question_index:
            raise AnnotationError(
                path, f"id {qid} already used by record {parsed.question_index[qid]}", index, "id"
            )
        other = names.setdefault(vid, (src, index))
        if other[0] != src:
            raise AnnotationError(
                path,
                f"video_name {vid!r} has video_id {src!r} here but {other[0]!r} in record "
                f"{other[1]}",
                index,
                "video_id",
            )
        other = ids.setdefault(src, (vid, index))
        if other[0] != vid:
            raise AnnotationError(
                path,
                f"video_id {src!r} names video {vid!r} here but {other[0]!r} in record {other[1]}",
                index,
                "video_name",
            )
        n_repeated += len(set(row["choices"])) < N_CHOICES
        if vid not in seen:
            seen.add(vid)
            parsed.video_ids.append(vid)
        parsed.question_index[qid] = index
        parsed.questions.append(row)
    if n_repeated:
        logger.warning("%s: %d question(s) list the same candidate twice", path, n_repeated)
    return parsed


def _held_out(video_id: str, fraction: float) -> bool:
    """Whether a training video goes to ``val``: a hash of its id below ``fraction`` (the
    same videos for any seed, run or machine)."""
    h = int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


def hold_out_val(parsed: Sequence[ParsedSplit], fraction: float) -> list[ParsedSplit]:
    """Give ``fraction`` of the training *videos* (all their questions) to a ``val`` split,
    when no file was read as ``val``: the release has no file for early stopping
    (``multiple_choice.RELEASE_FILES``). Returns the splits in train/val/test order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"parameter dataset.avqa.val_fraction must be in [0, 1), got {fraction}")
    splits = {p.split: p for p in parsed}
    if "val" in splits or "train" not in splits or fraction == 0.0:
        return sorted(parsed, key=lambda p: SPLITS.index(p.split))
    train = splits["train"]
    moved = {v for v in train.video_ids if _held_out(v, fraction)}
    if len(moved) == len(train.video_ids):
        moved = set()  # a tiny file: keep something to train on
    if not moved and len(train.video_ids) > 1:
        moved = {train.video_ids[-1]}  # early stopping needs a val question
    keep = ParsedSplit(split="train", path=train.path, n_records=train.n_records)
    val = ParsedSplit(split="val", path=train.path, n_records=0)
    for vid in train.video_ids:
        (val if vid in moved else keep).video_ids.append(vid)
    for row in train.questions:
        target = val if row["video_id"] in moved else keep
        target.questions.append({**row, "split": target.split})
        target.question_index[row["question_id"]] = train.question_index[row["question_id"]]
    logger.info(
        "AVQA: %d of %d training videos (%d questions) held out as val (val_fraction %g)",
        len(val.video_ids), len(train.video_ids), len(val.questions), fraction,
    )  # fmt: skip
    out = [p for p in parsed if p.split != "train"] + [keep, val]
    return sorted(out, key=lambda p: SPLITS.index(p.split))


def avqa_manifest_rows(avqa_params: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The release's files found in ``dataset.avqa.annotations_dir``: one row per split
    (``split, annotations_path, n_records``) as ``dataset.avqa.files`` maps them."""
    params = dict(avqa_params or {})
    folder_param = params.get("annotations_dir")
    if not folder_param:
        raise ValueError(
            "dataset.source is 'avqa' but parameter dataset.avqa.annotations_dir is not set: "
            "point it at the folder holding train_qa.json / val_qa.json, e.g. kedro run "
            '--params="dataset.source=avqa,dataset.avqa.annotations_dir=DIR"'
        )
    folder = Path(folder_param)
    if not folder.is_dir():
        raise ValueError(f"dataset.avqa.annotations_dir={folder_param!r} is not a directory")
    files = params.get("files") or {}
    unknown = sorted(set(files) - set(SPLITS))
    if unknown:
        raise ValueError(f"dataset.avqa.files names unknown split(s) {unknown}; valid: {SPLITS}")
    rows = []
    for split in SPLITS:
        name = files.get(split)
        if not name:
            continue
        path = folder / str(name)
        if not path.is_file():
            raise ValueError(
                f"dataset.avqa.files.{split}={name!r}: {path} does not exist "
                f"(set it to null to read no file as {split})"
            )
        rows.append(
            {
                "split": split,
                "annotations_path": str(path),
                "n_records": len(read_annotation_file(path)),
            }
        )
    if not any(r["split"] == "train" for r in rows):
        raise ValueError("dataset.avqa.files.train must name the training file (train_qa.json)")
    logger.info(
        "AVQA annotations in %s: %s", folder,
        ", ".join(f"{r['split']} <- {Path(r['annotations_path']).name} ({r['n_records']} records)"
                  for r in rows),
    )  # fmt: skip
    return rows
