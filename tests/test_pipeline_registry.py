"""``pipeline_registry``: every pipeline is found, and importing them has no side effects.

Importing the pipelines must leave matplotlib's backend alone: a notebook that loads the
catalog (or a pipeline) keeps its inline plots. Checked in a fresh interpreter, because this
test session may have imported pyplot already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_CHECK_BACKEND = """
import matplotlib
matplotlib.use("svg")  # what a notebook's inline backend stands for
import importlib, pkgutil
import r2scp_pipeline.pipelines as pkg
for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if ".generator" not in mod.name:
        importlib.import_module(mod.name)
from kedro.framework.startup import bootstrap_project
bootstrap_project({root!r})
from kedro.framework.project import pipelines
assert "__default__" in pipelines and "evaluate" in pipelines, sorted(pipelines)
import sys
assert "matplotlib.pyplot" not in sys.modules or matplotlib.get_backend() == "svg"
print(matplotlib.get_backend())
"""


def test_importing_the_pipelines_leaves_the_matplotlib_backend_alone():
    out = subprocess.run(
        [sys.executable, "-c", _CHECK_BACKEND.format(root=str(PROJECT_ROOT))],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "svg", out.stdout[-2000:]
