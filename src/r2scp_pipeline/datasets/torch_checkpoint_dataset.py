"""``TorchCheckpointDataset``: a dict of ``state_dict``s plus a JSON-able config, saved with torch.

Whole modules are never pickled: a checkpoint is ``{"config": {...}, "state_dicts": {...},
...}`` and the consumer rebuilds its modules from ``config``. Loading uses
``torch.load(weights_only=True)``, so a checkpoint cannot execute code.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then ``os.replace``: a crash mid-write
    never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class TorchCheckpointDataset(AbstractVersionedDataset[dict[str, Any], dict[str, Any]]):
    """Saves and loads a checkpoint dictionary (tensors, numbers, strings, lists, dicts)."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=lambda p: Path(p).exists(),
            glob_function=glob.glob,
        )
        self.metadata = metadata

    def _load(self) -> dict[str, Any]:
        path = get_filepath_str(self._get_load_path(), "file")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # corrupt or foreign file
            raise DatasetError(
                f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); the file "
                "is cut short or not written by TorchCheckpointDataset. Delete it and re-run the "
                "pipeline that writes it (kedro run --pipelines=...)"
            ) from exc

    def _save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"TorchCheckpointDataset saves a dict, got {type(data).__name__}")
        atomic_torch_save(data, Path(get_filepath_str(self._get_save_path(), "file")))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}
