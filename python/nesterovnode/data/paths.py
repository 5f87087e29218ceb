"""Where data sets live on disk.

A loader given no directory looks in ``$NESTEROVNODE_DATA`` when that is set, else in
``./data`` (relative to the working directory). Nothing here depends on any particular
folder existing: a missing folder is reported by the loader that needed it, with the file
names it expected and how to get them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the data root.
DATA_ENV = "NESTEROVNODE_DATA"


class DataUnavailableError(RuntimeError):
    """Missing data could not be fetched (no torchvision, no network); the message says
    how to install the downloader or where to copy the files by hand."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` as a Path; None means ``$NESTEROVNODE_DATA``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path("data")
