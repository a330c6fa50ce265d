"""``train`` pipeline = ``pretrain`` + ``mix`` (both stages of R2ScP).

A folder of its own because Kedro 1.7 only imports the pipeline folders named on the command
line: with ``kedro run --pipelines=train`` the registry never sees ``pretrain`` and ``mix``.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
