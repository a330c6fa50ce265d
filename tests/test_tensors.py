"""The one on-disk layout of feature sequences (src/r2scp_pipeline/tensors.py)."""

import numpy as np
import pandas as pd
import pytest

from r2scp_pipeline.tensors import (
    frame_to_padded,
    frame_to_tensor,
    frame_to_tokens,
    ragged_to_frame,
    tensor_to_frame,
)


def test_round_trip_through_parquet_keeps_values_and_requested_order(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    df = tensor_to_frame(["b", "a", "c"], x)
    assert list(df.columns) == ["video_id", "t", "feature"]
    assert len(df) == 12
    df.to_parquet(tmp_path / "f.parquet")
    ids, y = frame_to_tensor(pd.read_parquet(tmp_path / "f.parquet"), ids=["c", "b"])
    assert ids == ["c", "b"]
    np.testing.assert_array_equal(y, x[[2, 0]])


def test_default_order_is_sorted_ids_and_rows_may_be_shuffled():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    df = tensor_to_frame(["z", "y"], x).sample(frac=1.0, random_state=0)
    ids, y = frame_to_tensor(df)
    assert ids == ["y", "z"]
    np.testing.assert_array_equal(y, x[[1, 0]])


def test_nan_and_inf_are_refused():
    x = np.zeros((1, 2, 3), np.float32)
    x[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tensor_to_frame(["a"], x)
    with pytest.raises(ValueError, match="NaN"):
        ragged_to_frame(["q"], [np.full((2, 3), np.inf)])


def test_shape_errors_are_explicit():
    with pytest.raises(ValueError, match="expected x of shape"):
        tensor_to_frame(["a", "b"], np.zeros((3, 2, 2)))
    df = pd.concat(
        [tensor_to_frame(["a"], np.zeros((1, 2, 3))), tensor_to_frame(["b"], np.zeros((1, 3, 3)))]
    )
    with pytest.raises(ValueError, match="different lengths"):
        frame_to_tensor(df)
    with pytest.raises(KeyError, match="absent"):
        frame_to_tensor(tensor_to_frame(["a"], np.zeros((1, 2, 3))), ids=["nope"])


def test_ragged_tables_pad_with_a_mask(tmp_path):
    df = ragged_to_frame(["q1", "q2"], [np.ones((2, 3)), 2 * np.ones((4, 3))])
    df.to_parquet(tmp_path / "q.parquet")
    ids, x, mask = frame_to_padded(pd.read_parquet(tmp_path / "q.parquet"), ids=["q2", "q1"])
    assert ids == ["q2", "q1"]
    assert x.shape == (2, 4, 3)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    assert (x[1, 2:] == 0).all() and (x[1, :2] == 1).all() and (x[0] == 2).all()


def test_tokens_per_segment_round_trip_and_plain_tables_read_as_one_token(tmp_path):
    x = np.random.default_rng(1).normal(size=(3, 4, 6, 5)).astype(np.float32)  # [N, T, S, D]
    df = tensor_to_frame(["b", "a", "c"], x)
    assert list(df.columns) == ["video_id", "t", "s", "feature"]
    assert len(df) == 3 * 4 * 6
    df.sample(frac=1.0, random_state=0).to_parquet(tmp_path / "g.parquet")
    ids, y = frame_to_tokens(pd.read_parquet(tmp_path / "g.parquet"), ids=["c", "b"])
    assert ids == ["c", "b"]
    np.testing.assert_array_equal(y, x[[2, 0]])
    with pytest.raises(ValueError, match="frame_to_tokens"):
        frame_to_tensor(df)
    plain = np.ones((2, 3, 4), np.float32)
    assert frame_to_tokens(tensor_to_frame(["a", "b"], plain))[1].shape == (2, 3, 1, 4)


def test_tokens_with_a_missing_cell_are_refused():
    df = tensor_to_frame(["a"], np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="exactly once"):
        frame_to_tokens(df.drop(index=1))
