"""``notebooks/results.ipynb`` runs top to bottom on the session's trained tiny project."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "results.ipynb"


def test_results_notebook_executes_and_answers_through_predict(tracked_project: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    (tracked_project / "notebooks").mkdir(exist_ok=True)
    path = tracked_project / "notebooks" / NOTEBOOK.name
    shutil.copy2(NOTEBOOK, path)
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("KEDRO_ENV", "test")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "r2scp: audio missing everywhere, accuracy" in printed
    assert "zero_fill: audio missing everywhere" in printed
