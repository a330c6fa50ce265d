"""README.md and docs/*.md show exactly what the committed result files say."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts/render_docs.py")
render_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_docs)


def test_generated_blocks_equal_their_result_files():
    stale = []
    for doc in render_docs.documents(ROOT):
        text = doc.read_text()
        if render_docs.render_text(text, ROOT, str(doc)) != text:
            stale.append(doc.name)
    assert not stale, f"run `python scripts/render_docs.py`: stale blocks in {stale}"


def test_a_block_is_rewritten_from_its_source_and_unknown_blocks_fail(tmp_path):
    render_docs.RENDERERS["_probe"] = lambda root: "fresh\n"
    try:
        doc = "a\n<!-- BEGIN GENERATED _probe -->\nold\n<!-- END GENERATED _probe -->\nb\n"
        assert "fresh" in render_docs.render_text(doc, tmp_path)
        assert "old" not in render_docs.render_text(doc, tmp_path)
    finally:
        del render_docs.RENDERERS["_probe"]
    with pytest.raises(KeyError, match="no renderer"):
        render_docs.render_text(doc, tmp_path)
