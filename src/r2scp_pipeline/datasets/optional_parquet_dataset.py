"""``OptionalParquetDataset``: a parquet input the user may or may not supply.

Kedro pipelines are static, so the inputs that only some configurations use (user-supplied
embeddings, an external retrieval corpus) are still node inputs. This dataset loads an empty
``DataFrame`` when its file does not exist, and the node that reads it decides, from the
parameters, whether an empty table is fine or an error that names the catalog entry.
"""

from __future__ import annotations

import pandas as pd
from kedro_datasets.pandas import ParquetDataset


class OptionalParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` that loads an empty ``DataFrame`` when the file is absent."""

    def load(self) -> pd.DataFrame:
        if not self._exists():
            return pd.DataFrame()
        return super().load()
