"""Parsing and validation of annotation files in the official MUSIC-AVQA format.

One parsing path serves both the embedded MiniMusic-AVQA generator (which writes official-format
files) and the real benchmark. A split file ``avqa-<split>.json`` is a JSON list of records::

    {"video_id": "00000093", "question_id": 12, "type": "[\\"Audio\\", \\"Counting\\"]",
     "question_content": "Is the <Object> louder than the <Object>?",
     "templ_values": "[\\"violin\\", \\"piano\\"]", "question_deleted": 0, "anser": "yes"}

``type`` and ``templ_values`` are JSON *strings* in the official files (a native JSON list is
accepted too); ``anser`` is the official (misspelt) name of the answer field. Every problem is
reported as an :class:`AnnotationError` naming the file, the record index and the field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r2scp_pipeline import avqa
from r2scp_pipeline.splits import SPLITS, join_splits

logger = logging.getLogger(__name__)

#: Official annotation file name of each split.
ANNOTATION_FILES: dict[str, str] = {s: f"avqa-{s}.json" for s in SPLITS}
#: Fields every record must carry (``anser``: the official spelling of "answer").
REQUIRED_FIELDS: tuple[str, ...] = (
    "video_id", "question_id", "type", "question_content", "templ_values",
    "question_deleted", "anser",
)  # fmt: skip
#: The official placeholders, filled from ``templ_values`` in order of appearance.
PLACEHOLDERS: tuple[str, ...] = ("<Object>", "<LR>", "<FL>", "<LL>", "<TH>", "<BA>", "<LRer>")
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
_TAG_RE = re.compile(r"<[A-Za-z]+>")
_QUESTION_TYPES = frozenset(avqa.QUESTION_TYPES)
_KNOWN_TEMPLATES = frozenset(t[2] for t in avqa.TEMPLATES)
_INSTRUMENTS = frozenset(avqa.INSTRUMENTS)

#: Templates whose ``<Object>`` need not be in the video when the answer is "no"/"zero"
#: (existence and counting of a named instrument): their values are not taken as evidence of
#: the instrument when scene metadata is derived from the questions of a real video.
_PRESENCE_TEMPLATES = frozenset(
    {
        "Is there a <Object> sound?",
        "Is there a <Object> in the entire video?",
        "Are there <Object> and <Object> sound?",
        "Are there <Object> and <Object> instruments in the video?",
        "How many <Object> are in the entire video?",
        "How many sounding <Object> in the video\uff1f",
    }
)
_NEGATIVE_ANSWERS = frozenset({"no", "zero"})


class AnnotationError(ValueError):
    """A problem in an annotation file, located by file, record index and field."""

    def __init__(
        self, path: str | Path, problem: str, index: int | None = None, field: str | None = None
    ) -> None:
        where = str(path)
        if index is not None:
            where += f", record {index}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
        self.path, self.index, self.field = str(path), index, field


@dataclass
class ParsedSplit:
    """The validated content of one split file."""

    split: str
    path: str
    n_records: int
    n_deleted: int = 0
    questions: list[dict[str, Any]] = field(default_factory=list)  # kept records, qa_pairs rows
    video_ids: list[str] = field(default_factory=list)  # every video of the file, first-seen order
    question_index: dict[int, int] = field(default_factory=dict)  # question_id -> record index


def read_annotation_file(path: str | Path) -> list[Any]:
    """Load a split file: a JSON list of records. Errors name the file (and line for bad JSON)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, f"not UTF-8 text ({exc})") from None
    if not isinstance(data, list):
        raise AnnotationError(
            path, f"expected a JSON list of question records, got {type(data).__name__}"
        )
    return data


def find_placeholders(question_content: str) -> list[str]:
    """The placeholders of a template, in order of appearance."""
    return _PLACEHOLDER_RE.findall(question_content)


def fill_placeholders(question_content: str, values: Sequence[str]) -> str:
    """Replace the placeholders of ``question_content`` by ``values`` in order."""
    it = iter(values)
    return _PLACEHOLDER_RE.sub(lambda _: next(it), question_content)


def _json_list(value: Any, path: Path, index: int, name: str) -> list[Any]:
    """A field holding a JSON list, as a JSON string (official) or a native list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AnnotationError(
                path, f"expected a JSON list in a string, got {value!r} ({exc.msg})", index, name
            ) from None
    if not isinstance(value, list):
        raise AnnotationError(path, f"expected a JSON list, got {value!r}", index, name)
    return value


def _check_int(value: Any, path: Path, index: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(path, f"expected an integer, got {value!r}", index, name)
    return value


def _check_video_id(record: dict[str, Any], path: Path, index: int) -> str:
    if "video_id" not in record:
        raise AnnotationError(path, "missing field", index, "video_id")
    vid = record["video_id"]
    if not isinstance(vid, str) or not vid.strip() or vid != vid.strip() or "/" in vid:
        raise AnnotationError(
            path,
            f"expected a non-empty string without '/' or surrounding spaces, got {vid!r}",
            index,
            "video_id",
        )
    return vid


def parse_record(
    record: Any, path: str | Path, index: int, split: str
) -> tuple[str, dict[str, Any] | None]:
    """Validate one record; return ``(video_id, qa_row)``, ``qa_row`` None if withdrawn.

    Withdrawn records (``question_deleted == 1``) are checked for ``video_id`` and
    ``question_deleted`` only: their content is never used.
    """
    path = Path(path)
    if not isinstance(record, dict):
        raise AnnotationError(path, f"expected a JSON object, got {type(record).__name__}", index)
    vid = _check_video_id(record, path, index)
    if "question_deleted" not in record:
        raise AnnotationError(path, "missing field", index, "question_deleted")
    deleted = record["question_deleted"]
    if deleted not in (0, 1) or not isinstance(deleted, int):
        raise AnnotationError(path, f"expected 0 or 1, got {deleted!r}", index, "question_deleted")
    if deleted == 1:
        return vid, None
    for name in REQUIRED_FIELDS:
        if name not in record:
            hint = " (the official files spell the answer field 'anser')" if name == "anser" else ""
            raise AnnotationError(path, f"missing field{hint}", index, name)

    qid = _check_int(record["question_id"], path, index, "question_id")

    qtype = _json_list(record["type"], path, index, "type")
    if len(qtype) != 2 or not all(isinstance(x, str) for x in qtype):
        raise AnnotationError(
            path, f"expected a two-item list [modality, subtype], got {qtype!r}", index, "type"
        )
    modality, subtype = qtype
    if (modality, subtype) not in _QUESTION_TYPES:
        valid = ", ".join(f"[{m}, {s}]" for m, s in avqa.QUESTION_TYPES)
        raise AnnotationError(
            path, f"unknown question type {qtype!r}; valid types: {valid}", index, "type"
        )

    content = record["question_content"]
    if not isinstance(content, str) or not content.strip():
        raise AnnotationError(
            path, f"expected a non-empty string, got {content!r}", index, "question_content"
        )
    template = content.strip()
    placeholders = find_placeholders(template)
    unknown = [t for t in _TAG_RE.findall(template) if t not in PLACEHOLDERS]
    if unknown:
        raise AnnotationError(
            path,
            f"unknown placeholder(s) {unknown} in {content!r}; known: {', '.join(PLACEHOLDERS)}",
            index,
            "question_content",
        )

    raw_values = record["templ_values"]
    values = _json_list(raw_values, path, index, "templ_values")
    if not all(isinstance(v, str) and v for v in values):
        raise AnnotationError(
            path, f"expected a list of non-empty strings, got {values!r}", index, "templ_values"
        )
    if len(values) != len(placeholders):
        raise AnnotationError(
            path,
            f"{len(values)} value(s) {values!r} for {len(placeholders)} placeholder(s) "
            f"{placeholders} in {content!r}",
            index,
            "templ_values",
        )

    answer = record["anser"]
    if not isinstance(answer, str) or answer not in avqa.ANSWER_TO_IDX:
        raise AnnotationError(
            path,
            f"answer {answer!r} is not in the 42-answer vocabulary (r2scp_pipeline.avqa.ANSWERS)",
            index,
            "anser",
        )

    row = {
        "question_id": qid,
        "video_id": vid,
        "split": split,
        "question": fill_placeholders(template, values),
        "template": template,
        "templ_values": raw_values if isinstance(raw_values, str) else json.dumps(values),
        "modality": modality,
        "subtype": subtype,
        "answer": answer,
        "answer_idx": avqa.ANSWER_TO_IDX[answer],
    }
    return vid, row


def parse_split(path: str | Path, split: str) -> ParsedSplit:
    """Read and validate a whole split file (see :func:`parse_record`)."""
    if split not in SPLITS:
        raise AnnotationError(path, f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    records = read_annotation_file(path)
    parsed = ParsedSplit(split=split, path=str(path), n_records=len(records))
    seen_videos: set[str] = set()
    for index, record in enumerate(
        tqdm(records, desc=f"parse {Path(path).name}", unit="q", leave=False, mininterval=1.0)
    ):
        vid, row = parse_record(record, path, index, split)
        if vid not in seen_videos:
            seen_videos.add(vid)
            parsed.video_ids.append(vid)
        if row is None:
            parsed.n_deleted += 1
            continue
        qid = row["question_id"]
        if qid in parsed.question_index:
            raise AnnotationError(
                path,
                f"question_id {qid} already used by record {parsed.question_index[qid]}",
                index,
                "question_id",
            )
        parsed.question_index[qid] = index
        parsed.questions.append(row)
    return parsed


def check_across_splits(parsed: Iterable[ParsedSplit], shared_videos: bool = False) -> None:
    """A question id may belong to one split file only; with ``shared_videos=False`` (protocol
    ``video_split``) a video may too. Errors name both files."""
    video_file: dict[str, ParsedSplit] = {}
    question_file: dict[int, ParsedSplit] = {}
    for p in parsed:
        for vid in p.video_ids if not shared_videos else ():
            other = video_file.setdefault(vid, p)
            if other is not p:
                raise AnnotationError(
                    p.path,
                    f"video {vid!r} appears in split '{other.split}' ({other.path}) and in split "
                    f"'{p.split}' ({p.path}); with dataset.protocol 'video_split' a video must "
                    "belong to one split only (the official files split by question: use "
                    "dataset.protocol 'official' or 'video_disjoint')",
                    field="video_id",
                )
        for qid, index in p.question_index.items():
            other = question_file.setdefault(qid, p)
            if other is not p:
                raise AnnotationError(
                    p.path,
                    f"question_id {qid} is also used in {other.path} "
                    f"(record {other.question_index[qid]}); question ids must be unique",
                    index,
                    "question_id",
                )


@dataclass
class ProtocolOutcome:
    """What a split protocol kept of the parsed split files.

    ``questions``: the kept ``qa_pairs`` rows (split order, then file order); ``video_ids``:
    every video, first-seen order over the files; ``annotated``: ``video_id -> the split files
    it has records in`` (withdrawn ones included); ``kept``: ``video_id -> the splits it has
    kept questions in`` after the protocol (empty for a video whose every question was
    withdrawn); ``removed_questions`` / ``removed_videos``: per split, how many questions and
    video memberships the protocol took away.
    """

    protocol: str
    questions: list[dict[str, Any]]
    video_ids: list[str]
    annotated: dict[str, set[str]]
    kept: dict[str, set[str]]
    removed_questions: dict[str, int]
    removed_videos: dict[str, int]


def apply_protocol(parsed: Sequence[ParsedSplit], protocol: str) -> ProtocolOutcome:
    """Apply a split protocol (``r2scp_pipeline.splits.PROTOCOLS``) to the parsed files.

    ``official`` and ``video_split`` keep every question (``video_split`` has checked that no
    video is shared); ``video_disjoint`` gives each video to the latest split it has a
    (not withdrawn) question in (test > val > train) and drops its questions of the others.
    """
    check_across_splits(parsed, shared_videos=protocol != "video_split")
    annotated: dict[str, set[str]] = {}
    for p in parsed:
        for vid in p.video_ids:
            annotated.setdefault(vid, set()).add(p.split)
    asked = {v: set() for v in annotated}  # splits with a kept (not withdrawn) question
    for p in parsed:
        for q in p.questions:
            asked[q["video_id"]].add(p.split)
    if protocol == "video_disjoint":
        kept = {v: {max(s, key=SPLITS.index)} if s else set() for v, s in asked.items()}
    else:
        kept = asked
    questions = [q for p in parsed for q in p.questions if p.split in kept[q["video_id"]]]
    n_all = {p.split: len(p.questions) for p in parsed}
    n_kept = {s: 0 for s in n_all}
    for q in questions:
        n_kept[q["split"]] += 1
    removed_videos = {s: sum(1 for v in asked if s in asked[v] and s not in kept[v]) for s in n_all}
    outcome = ProtocolOutcome(
        protocol=protocol,
        questions=questions,
        video_ids=list(annotated),
        annotated=annotated,
        kept=kept,
        removed_questions={s: n_all[s] - n_kept[s] for s in n_all},
        removed_videos=removed_videos,
    )
    shared = sum(1 for s in annotated.values() if len(s) > 1)
    logger.info(
        "split protocol %s: %d of %d videos have questions in several split files (%s); "
        "removed questions %s, removed video memberships %s",
        protocol, shared, len(annotated),
        ", ".join(f"{k}: {n}" for k, n in _shared_counts(annotated).items()) or "none",
        outcome.removed_questions, outcome.removed_videos,
    )  # fmt: skip
    return outcome


def _shared_counts(memberships: dict[str, set[str]]) -> dict[str, int]:
    """``{"train+test": n, ...}`` over the videos in more than one split."""
    counts: dict[str, int] = {}
    for s in memberships.values():
        if len(s) > 1:
            key = join_splits(s)
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def is_unknown_template(template: str) -> bool:
    """True for a template outside the 33 official ones (allowed, but counted and logged)."""
    return template not in _KNOWN_TEMPLATES


def derive_instruments(questions: Iterable[dict[str, Any]]) -> list[str]:
    """Instruments of a real video, from its questions (sorted, official names).

    Evidence: the ``<Object>`` values of its questions, and answers that are instruments.
    ``<Object>`` values of existence/counting questions answered "no"/"zero" (e.g. "Is there a
    <Object> sound?" -> "no") are skipped: the named instrument may be absent.
    """
    found: set[str] = set()
    for q in questions:
        if q["answer"] in _INSTRUMENTS:
            found.add(q["answer"])
        if q["template"] in _PRESENCE_TEMPLATES and q["answer"] in _NEGATIVE_ANSWERS:
            continue
        names = find_placeholders(q["template"])
        if "<Object>" not in names:
            continue
        values = json.loads(q["templ_values"])
        found.update(v for n, v in zip(names, values, strict=True) if n == "<Object>")
    return sorted(found & _INSTRUMENTS)


def read_scenes(path: str | Path, keep: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Read the embedded generator's ``scenes.json``: ``video_id -> {split, visible, sounding}``.

    The generator writes ``{"generator": {...}, "videos": [scene, ...]}``; a bare list of scenes
    or an object keyed by video id is read too. Each scene needs ``split``, ``visible`` and
    ``sounding``; the lists are kept as given (the generator lists the visible instruments left
    to right, a class twice when two are on stage). The fields named in ``keep`` (e.g. the
    generator's ``instruments`` records, checked by :func:`scene_tracks`) are kept as given
    (None when absent); other fields are ignored.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(
            path, "scene file not found: re-run the dataset pipeline to regenerate it"
        ) from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("videos"), list | dict):
        data = data["videos"]
    if isinstance(data, dict):
        items = [(i, vid, rec) for i, (vid, rec) in enumerate(data.items())]
    elif isinstance(data, list):
        items = []
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or "video_id" not in rec:
                raise AnnotationError(path, "expected an object with a 'video_id'", i, "video_id")
            items.append((i, rec["video_id"], rec))
    else:
        raise AnnotationError(path, f"expected a JSON object or list, got {type(data).__name__}")

    scenes: dict[str, dict[str, Any]] = {}
    for i, vid, rec in items:
        if not isinstance(rec, dict):
            raise AnnotationError(path, f"expected a JSON object, got {rec!r}", i)
        vid = str(vid)
        if vid in scenes:
            raise AnnotationError(path, f"video {vid!r} listed twice", i, "video_id")
        out: dict[str, Any] = {}
        if "split" not in rec:
            raise AnnotationError(path, "missing field", i, "split")
        if rec["split"] not in SPLITS:
            raise AnnotationError(
                path, f"unknown split {rec['split']!r}; valid: {', '.join(SPLITS)}", i, "split"
            )
        out["split"] = rec["split"]
        for key in ("visible", "sounding"):
            if key not in rec:
                raise AnnotationError(path, "missing field", i, key)
            value = rec[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AnnotationError(path, f"expected a list of strings, got {value!r}", i, key)
            unknown = sorted(set(value) - _INSTRUMENTS)
            if unknown:
                raise AnnotationError(
                    path, f"unknown instrument(s) {unknown} (see avqa.INSTRUMENTS)", i, key
                )
            out[key] = list(value)  # as given: visible is left to right, may repeat a class
        out.update({key: rec.get(key) for key in keep})
        scenes[vid] = out
    return scenes


def scene_tracks(path: str | Path, vid: str, scene: dict[str, Any]) -> list[dict[str, Any]]:
    """The instruments of one scene of ``scenes.json`` (the generator's full records), each
    checked: ``class`` a known instrument, ``visible`` a bool, ``active_seconds`` a list of
    whole seconds inside the clip, and a sounding one's ``loudness_db`` and ``rhythm_score``
    numbers. Errors name the file, the video and the field."""
    insts, seconds = scene.get("instruments"), scene.get("seconds")
    where = f"video {vid!r}"
    if not isinstance(insts, list):
        raise AnnotationError(path, f"{where}: 'instruments' must be the generator's list of "
                              "instrument records (regenerate the embedded dataset)")  # fmt: skip
    if not isinstance(seconds, int | float) or seconds <= 0:
        raise AnnotationError(path, f"{where}: 'seconds' must be a positive number, got {seconds!r}")
    for j, inst in enumerate(insts):
        field = f"{where} instruments[{j}]"
        if not isinstance(inst, dict) or inst.get("class") not in _INSTRUMENTS:
            raise AnnotationError(path, f"{field}.class: unknown instrument "
                                  f"{(inst or {}).get('class')!r} (see avqa.INSTRUMENTS)")  # fmt: skip
        if not isinstance(inst.get("visible"), bool):
            raise AnnotationError(path, f"{field}.visible: expected true or false")
        active = inst.get("active_seconds")
        if not isinstance(active, list) or not all(
            isinstance(t, int) and 0 <= t < seconds for t in active
        ):
            raise AnnotationError(
                path, f"{field}.active_seconds: expected whole seconds in 0..{int(seconds) - 1}, "
                f"got {active!r}"
            )  # fmt: skip
        if inst["visible"] and not all(isinstance(inst.get(k), int | float) for k in ("x", "y", "size")):
            raise AnnotationError(path, f"{field}: a visible instrument needs numbers x, y, size")
        if active and not (isinstance(inst.get("loudness_db"), int | float)
                           and isinstance(inst.get("rhythm_score"), int | float)
                           and inst["rhythm_score"] >= 0):  # fmt: skip
            raise AnnotationError(path, f"{field}: a sounding instrument needs a number "
                                  "loudness_db and a rhythm_score >= 0")  # fmt: skip
    return insts
