"""Fixtures of the ``features`` tests (parameters as the nodes receive them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .media import deep_merge

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def base_params() -> dict[str, Any]:
    """conf/base/parameters_features.yml as the nodes receive it (``params:features``)."""
    return yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_features.yml").read_text())[
        "features"
    ]


@pytest.fixture
def make_params(base_params, tmp_path):
    """Base parameters, small and quiet, media paths relative to ``tmp_path``, plus overrides."""

    def _make(**over: Any) -> dict[str, Any]:
        small = {
            "num_threads": 1,
            "progress": False,
            "media_root": str(tmp_path),
            # 96 px: a 3x3 last map, the smallest that holds the default [2, 3] grid
            # one process: a few tiny videos (test_dask_features checks the workers)
            "visual": {"efficientnet_lite0": {"input_size": 96, "batch_size": 16}, "workers": 1},
        }
        return deep_merge(deep_merge(base_params, small), over)

    return _make
