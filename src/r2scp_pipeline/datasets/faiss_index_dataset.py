"""``FaissIndexDataset``: a FAISS index plus the ``video_id`` of each of its rows, versioned.

A FAISS index only knows row numbers, so what is saved and loaded is a :class:`KeyedFaissIndex`:
the index, the ``ids`` (row ``i`` of the index is the key of ``ids[i]``) and a small JSON-able
``metadata`` dict (factory string, metric, modality...). On disk, in each version folder:

* ``<name>.faiss`` -- the index in FAISS's own format (``faiss.read_index`` opens it as is);
* ``<name>.faiss.meta.json`` -- ``{"ids": [...], "metadata": {...}, "ntotal": N, "d": d}``.

Both are written to temporary files first and moved into place with ``os.replace``, the sidecar
before the index: Kedro finds a version by its index file, so a crash never leaves a version
whose index exists without its ids.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import faiss
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str


@dataclass
class KeyedFaissIndex:
    """A FAISS index whose row ``i`` holds the key of item ``ids[i]``."""

    index: faiss.Index
    ids: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        if len(self.ids) != self.index.ntotal:
            raise ValueError(
                f"the index holds {self.index.ntotal} vectors but {len(self.ids)} ids were given"
            )

    @property
    def d(self) -> int:
        """Dimension of the indexed keys."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Number of indexed keys."""
        return int(self.index.ntotal)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def read_faiss_index(path: str | os.PathLike, mmap: bool = False) -> faiss.Index:
    """``faiss.read_index``; with ``mmap`` the large arrays stay in the file, mapped into
    memory (``faiss.IO_FLAG_MMAP``: an IVF index's inverted lists, read-only), so loading
    costs little RAM and the OS pages in what searches touch."""
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    return faiss.read_index(str(path), flags)


class FaissIndexDataset(AbstractVersionedDataset[KeyedFaissIndex, KeyedFaissIndex]):
    """Saves and loads a :class:`KeyedFaissIndex` (local files only). ``mmap: true`` loads
    the index memory-mapped (:func:`read_faiss_index`): for memory banks larger than RAM."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        mmap: bool = False,
    ) -> None:
        super().__init__(
            filepath=PurePosixPath(filepath),
            version=version,
            exists_function=lambda p: Path(p).exists(),
            glob_function=glob.glob,  # absolute and relative patterns alike
        )
        self.metadata = metadata
        self._mmap = bool(mmap)

    def _load(self) -> KeyedFaissIndex:
        path = Path(get_filepath_str(self._get_load_path(), "file"))
        if not path.exists():
            raise DatasetError(f"no FAISS index at {path}: run the build_index pipeline first")
        side = _sidecar(path)
        if not side.exists():
            raise DatasetError(
                f"{side} (the row ids of {path}) is missing: rebuild the index with the "
                "build_index pipeline"
            )
        try:
            index = read_faiss_index(path, self._mmap)
        except RuntimeError as exc:
            raise DatasetError(f"{path} is not a readable FAISS index: {exc}") from exc
        try:
            meta = json.loads(side.read_text())
            ids, metadata = meta["ids"], meta.get("metadata", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{side} is not a valid index sidecar: {exc}") from exc
        if len(ids) != index.ntotal:
            raise DatasetError(
                f"{path} holds {index.ntotal} vectors but {side} lists {len(ids)} ids: the "
                "two files come from different builds; rebuild with the build_index pipeline"
            )
        return KeyedFaissIndex(index=index, ids=ids, metadata=metadata)

    def _save(self, data: KeyedFaissIndex) -> None:
        if not isinstance(data, KeyedFaissIndex):
            raise DatasetError(
                f"FaissIndexDataset saves a KeyedFaissIndex, got {type(data).__name__}"
            )
        path = Path(get_filepath_str(self._get_save_path(), "file"))
        path.parent.mkdir(parents=True, exist_ok=True)
        side = _sidecar(path)
        payload = {
            "ids": data.ids,
            "metadata": data.metadata,
            "ntotal": data.ntotal,
            "d": data.d,
        }
        tmps: list[str] = []
        try:
            fd, tmp_side = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            tmps.append(tmp_side)
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh)
            fd, tmp_index = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            tmps.append(tmp_index)
            os.close(fd)
            faiss.write_index(data.index, tmp_index)
            # sidecar first: a version becomes visible only once its index file exists
            os.replace(tmp_side, side)
            os.replace(tmp_index, path)
        finally:
            for tmp in tmps:
                if os.path.exists(tmp):
                    os.remove(tmp)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version, "mmap": self._mmap}
