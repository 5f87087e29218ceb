"""Files: atomic writes (a result or checkpoint is either the old file or the new one,
never half of each: an interrupted run must not corrupt what it resumes from) and strict
JSON (NaN and infinities written as null)."""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def write_atomic(path: str | Path, write) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``:
    readers see the old file or the whole new one, never a part. The file gets the mode
    a plain ``open`` would give it (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; the result gets the mode open() would give it
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (write a temporary file, then rename)."""
    write_atomic(path, lambda fh: fh.write(text.encode()))


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, ±inf) replaced by None, through dicts,
    lists and tuples: what strict JSON can hold (a failed solve's error is NaN)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (non-finite floats as null, see
    ``finite_json``), atomically."""
    write_text_atomic(path, json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n")


def save_torch_atomic(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically."""
    write_atomic(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | Path) -> Any:
    """The JSON in ``path`` (gzip-compressed where its name ends in ``.gz``, as the
    committed measurements are); a file that is not JSON raises ValueError naming it."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} is not valid JSON ({exc}); it may be truncated or corrupt: restore "
                f"it, or pass --overwrite to start again"
            ) from exc
