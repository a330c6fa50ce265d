"""The project's local MLflow store: artifacts stay with the project, runs table first.

A SQLite store records absolute artifact locations (``<project>/mlruns/<experiment id>``). A
copied or moved project would go on writing its artifacts into the *original's* ``mlruns/``:
:func:`relocate_artifacts` moves those records to the project the store now sits in. It only
rewrites locations that follow the project's own layout (``mlruns/<id>``, or the configured
relative ``artifact_location``), never remote or explicitly absolute ones.

:data:`EXPERIMENT_KIND` is the experiment tag with which MLflow 3's UI opens the runs table
(the training view) rather than its GenAI traces view.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

#: every column of an MLflow 3 SQL store that holds an artifact location
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def sqlite_path(uri: str | None, project_path: Path) -> Path | None:
    """The database file of a ``sqlite:///...`` tracking URI (relative to ``project_path``);
    ``None`` for any other kind of store."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///") :])
    return path if path.is_absolute() else Path(project_path) / path


def local_path(location: str | None) -> Path | None:
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None  # s3://, mlflow-artifacts:, dbfs:, ...


def relocate_artifacts(
    db: Path, experiment: str, project_path: Path, artifact_location: str | None = None
) -> Path | None:
    """Point ``experiment``'s artifact records in the SQLite store ``db`` at ``project_path``.

    ``artifact_location`` is the configured one (``mlflow.yml``,
    ``create_experiment_kwargs.artifact_location``): ``None`` means MLflow's default layout
    ``mlruns/<experiment id>``; a relative path is taken from the project root; an absolute one
    is left alone. Returns the old project root when records were moved, else ``None``.
    """
    if not db.exists() or (artifact_location and Path(artifact_location).is_absolute()):
        return None
    project_path = Path(project_path).resolve()
    with sqlite3.connect(db) as con:
        row = con.execute(
            "select experiment_id, artifact_location from experiments where name = ?",
            (experiment,),
        ).fetchone()
        if row is None:
            return None
        exp_id, location = row
        current = local_path(location)
        rel = PurePosixPath(artifact_location or f"mlruns/{exp_id}")
        if current is None or current == project_path / rel:
            return None
        if len(current.parts) <= len(rel.parts) or current.parts[-len(rel.parts) :] != rel.parts:
            logger.warning(
                "MLflow experiment %r stores artifacts in %s, not in this project's %s; left as is",
                experiment, location, rel,
            )  # fmt: skip
            return None
        old_root = Path(*current.parts[: -len(rel.parts)])
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        for table, column in _LOCATION_COLUMNS:
            if table not in tables:
                continue
            if column not in {c[1] for c in con.execute(f"pragma table_info({table})")}:
                continue
            rows = con.execute(f"select rowid, {column} from {table}").fetchall()
            for rowid, value in rows:
                path = local_path(value)
                if path is None or not path.is_relative_to(old_root):
                    continue
                new = str(project_path / path.relative_to(old_root))
                if str(value).startswith("file:"):
                    new = Path(new).as_uri()
                con.execute(f"update {table} set {column} = ? where rowid = ?", (new, rowid))
    logger.info(
        "MLflow store %s: artifact locations moved from %s to %s", db, old_root, project_path
    )
    return old_root
