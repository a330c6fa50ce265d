"""Configuration: every environment writes under its own data root and its own MLflow store.

``kedro run --env=test`` once replaced a finished 1,000-video dataset with 30 videos: it
shared the base catalog paths and ``mlflow.db``. Every catalog filepath and every parameter
holding a path now starts with ``${globals:data_root}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from r2scp_pipeline import settings
from tests.conftest import PROJECT_ROOT, TEST_DATA, TEST_MLFLOW_DB


def _loader(env: str) -> OmegaConfigLoader:
    return OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), env=env,
                             **settings.CONFIG_LOADER_ARGS)  # fmt: skip


def _paths(tree: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, value) of every string that looks like a project-relative data path."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, f"{key}.{k}" if key else str(k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, f"{key}[{i}]")
    elif isinstance(tree, str) and (tree.startswith("data/") or key.endswith("filepath")):
        yield key, tree


@pytest.mark.parametrize(
    "env, root",
    [("local", "data/"), ("test", f"{TEST_DATA}/"), ("full", "data/full/"), ("seeds", "data/seeds/"), ("nocue", "data/nocue/"),
     ("airflow", "data/"), ("corpus_study", "data/corpus_study/")],
)
def test_every_path_of_an_environment_is_under_its_data_root(env: str, root: str):
    loader = _loader(env)
    found = list(_paths(loader["catalog"])) + list(_paths(loader["parameters"]))
    keys = {k for k, _ in found}
    # the parameters that hold paths are among them (not only the catalog)
    assert {"pretrain.checkpoint_dir", "mix.checkpoint_dir", "evaluate.variant_checkpoint_dir",
            "dataset.embedded.root", "corpus.root"} <= keys, sorted(keys)  # fmt: skip
    outside = [(k, v) for k, v in found if not v.startswith(root)]
    assert not outside, f"--env={env} writes outside {root}: {outside}"
    if env != "test":
        inside_test = [(k, v) for k, v in found if v.startswith(f"{TEST_DATA}/")]
        assert not inside_test, inside_test


def test_the_test_environment_has_its_own_mlflow_store():
    base, test = _loader("local")["mlflow"], _loader("test")["mlflow"]
    assert base["server"]["mlflow_tracking_uri"] == "sqlite:///mlflow.db"
    assert test["server"]["mlflow_tracking_uri"] == f"sqlite:///{TEST_MLFLOW_DB}"
    test_kwargs = test["tracking"]["experiment"]["create_experiment_kwargs"]
    assert test_kwargs["artifact_location"].startswith(f"{TEST_DATA}/")
    # deep-merged: the rest of the base file still applies
    assert test["tracking"]["run"]["nested"] is True and test["ui"] == base["ui"]
