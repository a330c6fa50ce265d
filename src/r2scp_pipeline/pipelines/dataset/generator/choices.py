"""MiniMusic-AVQA as 4-way multiple choice in the AVQA release's format (offline AVQA path).

``dataset.embedded.answer_format: multiple_choice`` rewrites the generated questions
(``avqa-{train,val,test}.json``, MUSIC-AVQA format) as AVQA records
(``avqa_ingestion.REQUIRED_FIELDS``) into ``<root>/multiple_choice/``:

* ``train_qa.json``: the train and val videos' questions, ``val_qa.json``: the test videos'
  (the release's two files; ingestion holds val out of train as for the real release);
* the candidates: the right answer and three distractors drawn from the same answer family
  (:data:`FAMILIES`: instruments, numbers, positions, ...); a family with fewer than four
  members (yes/no, indoor/outdoor) is completed from the rest of the 42-answer vocabulary, so
  those questions keep an easy pair of impossible candidates; the order is shuffled;
* ``question_type``: the AVQA type closest to the MUSIC-AVQA template (:func:`avqa_type`),
  ``question_relation``: Audio / Visual / Both from the template's modality.

Same generated data and seed -> byte-identical files; the media are the generator's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from r2scp_pipeline import avqa
from r2scp_pipeline.multiple_choice import N_CHOICES
from r2scp_pipeline.splits import SPLITS

from ..ingestion import parse_split

#: Answer families of the 42-answer vocabulary: distractors come from the answer's family.
FAMILIES: tuple[tuple[str, ...], ...] = (
    avqa.INSTRUMENTS,
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
     "more than ten"),
    ("left", "middle", "right"),
    ("indoor", "outdoor"),
    ("yes", "no"),
    ("simultaneously",),
)  # fmt: skip
FAMILY_OF: dict[str, tuple[str, ...]] = {a: f for f in FAMILIES for a in f}
#: MUSIC-AVQA question modality -> AVQA ``question_relation``.
RELATIONS: dict[str, str] = {"Audio": "Audio", "Visual": "Visual", "Audio-Visual": "Both"}
#: AVQA question type of each MUSIC-AVQA (modality, sub-type), before the template overrides.
_TYPE_BY_KIND: dict[tuple[str, str], str] = {
    ("Audio", "Counting"): "Happening",
    ("Audio", "Comparative"): "Happening",
    ("Visual", "Counting"): "Happening",
    ("Visual", "Location"): "Where",
    ("Audio-Visual", "Existential"): "Happening",
    ("Audio-Visual", "Counting"): "Happening",
    ("Audio-Visual", "Location"): "Where",
    ("Audio-Visual", "Comparative"): "Happening",
    ("Audio-Visual", "Temporal"): "Before Next",
}
_TYPE_BY_TEMPLATE: dict[str, str] = {
    "What kind of musical instrument is it?": "Which",
    "What kind of instrument is the <LRer> instrument?": "Which",
    "What is the instrument on the <LR> of <Object>?": "Which",
    "Is this sound from the instrument in the video?": "Come From",
    "Is the <FL> sound coming from the <LR> instrument?": "Come From",
    "What is the <LR> instrument of the <FL> sounding instrument?": "Which",
    "Which is the musical instrument that sounds at the same time as the <Object>?": "When",
    "Is the <Object> in the video always playing?": "When",
    "Where is the <FL> sounding instrument?": "Where",
    "Which <Object> makes the sound <FL>?": "Which",
}
FOLDER = "multiple_choice"
#: project split -> the generated file its questions go to
FILE_OF_SPLIT: dict[str, str] = {"train": "train_qa.json", "val": "train_qa.json",
                                 "test": "val_qa.json"}  # fmt: skip


def avqa_type(modality: str, subtype: str, template: str) -> str:
    """The AVQA question type standing for a MUSIC-AVQA template (module docstring)."""
    return _TYPE_BY_TEMPLATE.get(template, _TYPE_BY_KIND[(modality, subtype)])


def candidates(answer: str, rng: np.random.Generator) -> tuple[list[str], int]:
    """Four shuffled candidates for ``answer`` and the index of the right one."""
    family = [a for a in FAMILY_OF[answer] if a != answer]
    picked = list(rng.choice(family, size=min(N_CHOICES - 1, len(family)), replace=False))
    if len(picked) < N_CHOICES - 1:
        rest = [a for a in avqa.ANSWERS if a != answer and a not in FAMILY_OF[answer]]
        picked += list(rng.choice(rest, size=N_CHOICES - 1 - len(picked), replace=False))
    choices = [answer, *(str(p) for p in picked)]
    order = rng.permutation(N_CHOICES)
    return [choices[i] for i in order], int(np.flatnonzero(order == 0)[0])


def write_multiple_choice(root: str | Path, seed: int) -> list[dict[str, Any]]:
    """Rewrite the generated ``avqa-<split>.json`` under ``root`` as AVQA files in
    ``root/multiple_choice/``; returns the manifest rows (project split ``train`` <-
    ``train_qa.json``, ``test`` <- ``val_qa.json``)."""
    root = Path(root)
    rng = np.random.default_rng([int(seed), 3])
    out: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        parsed = parse_split(root / f"avqa-{split}.json", split)
        for q in parsed.questions:
            choices, right = candidates(q["answer"], rng)
            vid = q["video_id"]
            out.setdefault(FILE_OF_SPLIT[split], []).append({
                "id": q["question_id"], "video_name": vid,
                "video_id": int(vid) if vid.isdigit() else vid,
                "question_text": q["question"], "multi_choice": choices, "answer": right,
                "question_relation": RELATIONS[q["modality"]],
                "question_type": avqa_type(q["modality"], q["subtype"], q["template"]),
            })  # fmt: skip
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, name in (("train", "train_qa.json"), ("test", "val_qa.json")):
        records = out.get(name, [])
        tmp = folder / f".{name}.tmp"
        tmp.write_text(json.dumps(records, separators=(",", ":")) + "\n", encoding="utf-8")
        tmp.replace(folder / name)
        rows.append({"split": split, "annotations_path": str(folder / name),
                     "n_records": len(records)})  # fmt: skip
    return rows
