"""r2scp-pipeline: R2ScP (retrieval-based recovery of missing modalities for AVQA) as a Kedro project."""

__version__ = "0.1.0"
