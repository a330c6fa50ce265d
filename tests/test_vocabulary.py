"""The shared words live in ``r2scp_pipeline.vocabulary`` only, and agree with each other."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from r2scp_pipeline import avqa, vocabulary
from r2scp_pipeline.vocabulary import (
    DIRECTION_FOR_MISSING,
    DIRECTIONS,
    EXPERTS,
    MISSING_CODES,
    MODALITIES,
    OTHER,
    SETTINGS,
    Missing,
)

SRC = Path(vocabulary.__file__).resolve().parent
#: name -> the one module allowed to assign it (old spellings included, so they do not return)
HOMES = {
    **{name: "vocabulary.py" for name in (
        "MODALITIES", "EXPERTS", "OTHER", "DIRECTIONS", "DIRECTION_FOR_MISSING", "MISSING_CODES",
        "SETTINGS", "Missing", "MISSING_CODE", "MISSING", "MISSING_CHOICES",
    )},
    "QUESTION_MODALITIES": "avqa.py",
}  # fmt: skip
#: value -> its home: a copy under another name is a redefinition too
VALUES = {
    **{repr(v): "vocabulary.py" for v in (
        MODALITIES, EXPERTS, OTHER, DIRECTIONS, DIRECTION_FOR_MISSING, MISSING_CODES, SETTINGS,
    )},
    repr(avqa.QUESTION_MODALITIES): "avqa.py",
}  # fmt: skip


def redefinitions(path: Path) -> list[tuple[int, str]]:
    """``(line, name)`` of every assignment in ``path`` of a shared word outside its home."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        try:
            literal = ast.literal_eval(value)
            key = repr(tuple(literal) if isinstance(literal, list) else literal)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            key = None
        for name in names:
            home = HOMES.get(name) or VALUES.get(key)
            if home is not None and path.name != home:
                found.append((node.lineno, name))
    return found


def test_every_shared_word_is_defined_in_one_module_only():
    found = [
        f"{path.relative_to(SRC.parent)}:{line} {name}"
        for path in sorted(SRC.rglob("*.py"))
        for line, name in redefinitions(path)
    ]
    assert not found, (
        "shared words redefined outside r2scp_pipeline/vocabulary.py (import them instead): "
        + ", ".join(found)
    )


def test_the_check_catches_a_copy_under_the_same_or_another_name(tmp_path):
    module = tmp_path / "copy.py"
    module.write_text(
        'MODALITIES = ("audio", "visual")\n'
        'CHOICES = ["audio", "visual"]\n'
        "def f():\n    MISSING_CODE = {'audio': 1}\n"
        'OK = ("audio", "visual", "both")\n'
    )
    assert redefinitions(module) == [(1, "MODALITIES"), (2, "CHOICES"), (4, "MISSING_CODE")]


def test_the_words_agree_with_each_other():
    assert EXPERTS[: len(MODALITIES)] == MODALITIES and len(EXPERTS) == len(MODALITIES) + 1
    assert {OTHER[m] for m in MODALITIES} == set(MODALITIES)
    assert all(OTHER[m] != m for m in MODALITIES)
    for direction, (query, recovered) in DIRECTIONS.items():
        assert DIRECTION_FOR_MISSING[recovered] == direction and OTHER[recovered] == query
        assert direction == f"{query[0]}2{recovered[0]}"
    assert MISSING_CODES["none"] == 0 and set(MISSING_CODES) == {"none", *MODALITIES}
    assert len(set(MISSING_CODES.values())) == len(MISSING_CODES)
    assert get_args(Missing) == tuple(MISSING_CODES)
    assert {m for m in SETTINGS.values() if m is not None} == set(MODALITIES)
    assert all(s == f"{m}_missing" for s, m in SETTINGS.items() if m is not None)
    assert not set(avqa.QUESTION_MODALITIES) & set(MODALITIES)
