"""TorchCheckpointDataset: state_dicts + config, atomic save, versioned, safe load."""

import pytest
import torch
from kedro.io import DatasetError, Version

from r2scp_pipeline.datasets.torch_checkpoint_dataset import TorchCheckpointDataset


def test_round_trip_restores_a_module(tmp_path):
    module = torch.nn.Linear(3, 2)
    ds = TorchCheckpointDataset(filepath=str(tmp_path / "m" / "model.pt"))
    ds.save({"config": {"in": 3, "out": 2}, "state_dicts": {"linear": module.state_dict()}})
    loaded = ds.load()
    rebuilt = torch.nn.Linear(loaded["config"]["in"], loaded["config"]["out"])
    rebuilt.load_state_dict(loaded["state_dicts"]["linear"])
    x = torch.randn(4, 3)
    torch.testing.assert_close(rebuilt(x), module(x))
    assert not list((tmp_path / "m").glob("*.tmp")), "temporary file left behind"


def test_refuses_non_dict_and_reports_corrupt_files(tmp_path):
    path = tmp_path / "model.pt"
    ds = TorchCheckpointDataset(filepath=str(path))
    with pytest.raises(DatasetError, match="saves a dict"):
        ds.save(torch.nn.Linear(1, 1))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DatasetError, match="not a readable checkpoint"):
        ds.load()


def test_a_cut_short_checkpoint_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "model.pt"
    ds = TorchCheckpointDataset(filepath=str(path))
    ds.save({"state_dicts": {"w": torch.randn(64, 64)}})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError) as err:
        ds.load()
    message = str(err.value)
    assert str(path) in message and "cut short" in message and "Delete it" in message


def test_versioned_saves_keep_both_versions(tmp_path):
    path = str(tmp_path / "model.pt")
    TorchCheckpointDataset(filepath=path, version=Version(None, "v1")).save({"a": 1})
    TorchCheckpointDataset(filepath=path, version=Version(None, "v2")).save({"a": 2})
    assert TorchCheckpointDataset(filepath=path, version=Version("v1", None)).load() == {"a": 1}
    assert TorchCheckpointDataset(filepath=path, version=Version(None, None)).load() == {"a": 2}
