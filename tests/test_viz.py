"""``kedro viz build`` works and its JSON lists every registered pipeline.

Runs the real CLI in a scratch copy of the project (offline, no data needed: Kedro-Viz reads
the pipelines and the catalog, it runs nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_project_copy


def _registered_pipelines(project: Path) -> set[str]:
    """Pipeline names the project registers (what Kedro-Viz must show)."""
    code = (
        "import json; from kedro.framework.startup import bootstrap_project; "
        f"bootstrap_project({str(project)!r}); "
        "from kedro.framework.project import pipelines; print(json.dumps(sorted(pipelines)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_kedro_viz_build_lists_every_pipeline(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "project")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    main = project / "build" / "api" / "main"
    assert main.is_file(), f"kedro viz build wrote no {main}:\n{res.stdout[-2000:]}"
    data = json.loads(main.read_text())
    shown = {p["id"] for p in data["pipelines"]}
    expected = _registered_pipelines(project)
    assert {"__default__", "dataset", "evaluate"} <= expected
    assert expected <= shown, f"missing from Kedro-Viz: {sorted(expected - shown)}"
    # every pipeline's own JSON exists and has nodes
    for name in expected:
        pipe = project / "build" / "api" / "pipelines" / name
        assert pipe.is_file(), f"no {pipe}"
        assert json.loads(pipe.read_text())["nodes"], f"pipeline {name} shows no node"
    # the evaluate pipeline's nodes are in the default view
    node_names = {n["name"] for n in data["nodes"]}
    assert {"check_evaluate_parameters", "evaluate_methods", "build_reports"} <= node_names
    # each trained variant is a namespace of its own (a modular pipeline box in Kedro-Viz)
    modular = {m["id"] for m in data.get("modular_pipelines", {}).values()} | set(
        data.get("modular_pipelines", {})
    )
    assert {"zero_fill", "oracle", "no_cap"} <= modular, sorted(modular)[:20]
