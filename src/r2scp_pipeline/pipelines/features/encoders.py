"""The encoders moved to :mod:`r2scp_pipeline.encoders` (shared with the ``corpus`` pipeline
and ``predict``); this name stays for existing imports."""

from r2scp_pipeline.encoders import *  # noqa: F401,F403
from r2scp_pipeline.encoders import MediaError, mel_filterbank  # noqa: F401
