"""The project's local MLflow store."""

from __future__ import annotations

from pathlib import Path


def sqlite_path(uri: str | None, project_path: Path) -> Path | None:
    """The database file of a ``sqlite:///...`` tracking URI (relative to ``project_path``);
    ``None`` for any other kind of store."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///") :])
    return path if path.is_absolute() else Path(project_path) / path
