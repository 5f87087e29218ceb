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


def torchvision_download(name: str, root: Path, fetch, by_hand: str, offline: str) -> None:
    """Run ``fetch(torchvision.datasets, root)``; a ``DataUnavailableError`` that says what
    to do when torchvision is missing (``by_hand``) or the download fails (``offline``)."""
    try:
        import torchvision
    except ImportError as exc:
        raise DataUnavailableError(
            f"download=True needs torchvision (pip install 'nesterovnode[vision]' or pip "
            f"install torchvision). Without it, {by_hand}"
        ) from exc
    try:
        fetch(torchvision.datasets, str(root))
    except Exception as exc:  # network errors come in many types
        raise DataUnavailableError(
            f"downloading {name} into {root} failed ({type(exc).__name__}: {exc}). On a "
            f"machine without internet, {offline}"
        ) from exc


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` as a Path; None means ``$NESTEROVNODE_DATA``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path("data")
