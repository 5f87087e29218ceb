"""The run-folder protocol, one for a single run (``training.train``) and for a comparison
(``comparison.compare``):

An output folder (``--out``) that already holds results is never written into by accident.
It is continued only with ``resume`` and only when its saved configuration is the one
asked for, and it is replaced only with ``overwrite``:

- no results there: start (a folder holding the partial runs of an unfinished job
  without its results file is refused unless ``resume``: nothing to compare against yet,
  the runs check their own configuration when resumed);
- results of another configuration: refused (``ConfigurationMismatch``), naming the
  fields that differ, unless ``overwrite``;
- results of the same configuration: refused without ``resume`` (``FileExistsError``);
  with ``resume`` the caller continues from them;
- ``overwrite``: the folder's outputs are removed first and the job starts afresh.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class ConfigurationMismatch(FileExistsError, ValueError):
    """``--out`` holds results of another configuration."""


def claim(
    out: str | Path | None,
    config: dict[str, Any],
    *,
    results: str,
    read_config: Callable[[Path], dict[str, Any]],
    outputs: Iterable[str],
    resume: bool,
    overwrite: bool,
    what: str = "run",
    unfinished: str | None = None,
    hint: Callable[[dict[str, Any], dict[str, Any]], str] | None = None,
) -> bool:
    """Apply the protocol to ``out`` for a job of configuration ``config``.

    ``results``: the file whose presence means the folder holds results;
    ``read_config(path)``: the configuration saved in it; ``outputs``: the files and
    folders of a job (what ``overwrite`` removes); ``unfinished``: a folder that holds
    the runs of an unfinished job before ``results`` exists; ``hint(saved, asked)``:
    text appended to a configuration-mismatch message. Returns True when the caller
    resumes from results found in ``out``, False when it starts afresh (``out`` None: no
    folder, False).
    """
    if out is None:
        return False
    out = Path(out)
    if overwrite:
        for name in outputs:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return False
    path = out / results
    if not path.exists():
        if unfinished is not None and (out / unfinished).exists() and not resume:
            raise FileExistsError(
                f"{out} holds runs of an unfinished {what}; pass --resume to continue "
                f"them or --overwrite to start again"
            )
        return False
    saved = read_config(path)
    if saved != config:
        diff = {
            k: (saved.get(k), config.get(k))
            for k in sorted(set(saved) | set(config))
            if saved.get(k) != config.get(k)
        }
        raise ConfigurationMismatch(
            f"{out} holds a {what} of another configuration (saved vs asked: {diff}); choose "
            f"another --out or pass --overwrite to replace it"
            f"{hint(saved, config) if hint else ''}"
        )
    if not resume:
        raise FileExistsError(
            f"{out} already holds a {what} of this configuration ({results}); pass --resume "
            f"to continue or extend it, or --overwrite to start again"
        )
    return True


__all__ = ["ConfigurationMismatch", "claim"]
