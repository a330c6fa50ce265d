"""OptionalParquetDataset: an absent file loads as an empty table, a present one as parquet."""

import pandas as pd

from r2scp_pipeline.datasets.optional_parquet_dataset import OptionalParquetDataset


def test_an_absent_file_loads_as_an_empty_table(tmp_path):
    ds = OptionalParquetDataset(filepath=str(tmp_path / "nowhere" / "embeddings.parquet"))
    loaded = ds.load()
    assert isinstance(loaded, pd.DataFrame) and loaded.empty


def test_a_present_file_round_trips(tmp_path):
    df = pd.DataFrame({"video_id": ["a", "b"], "modality": ["audio", "visual"], "x": [1.0, 2.0]})
    ds = OptionalParquetDataset(filepath=str(tmp_path / "t.parquet"), save_args={"index": False})
    ds.save(df)
    pd.testing.assert_frame_equal(ds.load(), df)
