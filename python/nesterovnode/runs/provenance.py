"""How results were made: package versions, the git commit, the hardware, the time.

A comparison's results.json carries them with its resolved configuration
(``run_metadata``); a single run's folder keeps them per training session in
``provenance.json`` (``record_session``): a resumed run may have been trained by
different code or on different hardware in each of its sessions.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from ..io import write_json_atomic


def now() -> str:
    """The local time, ISO 8601 with its UTC offset (``2025-01-31T12:00:00+0100``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def versions() -> dict[str, str]:
    """The versions of nesterovnode, Python, torch and numpy, and of torchdiffeq, scipy
    and matplotlib where installed."""
    import numpy

    from .. import __version__

    found = {
        "nesterovnode": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("torchdiffeq", "scipy", "matplotlib"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            found[name] = version(name)
    return found


def hardware() -> dict[str, Any]:
    """Platform, CPU, torch's CPU threads (of this process) and the CUDA devices."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
    }


def git_commit() -> str | None:
    """The commit of the package's checkout, ``-dirty`` when tracked files changed (None
    outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


def device_name(device: str) -> str:
    """``device`` with "auto" resolved (cuda when torch sees a GPU, else cpu)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run_metadata(
    base, seeds: int, jobs: int, paper: bool | dict, started: str, executor: str = "local"
) -> dict:
    """What a results.json says about how it was made: the resolved configuration of the
    comparison's ``base`` (a resolved ``TrainConfig``), package versions, git commit,
    hardware and start time; ``jobs`` runs at a time on ``executor`` ("local" or "ray":
    the runs' own hardware is in their provenance.json). ``paper``: True/False, or
    ``{"requested", "departures"}``: the run is the paper's protocol when it was
    requested and no option departs from it (``paper_departures`` lists those that do)."""
    if not isinstance(paper, dict):
        paper = {"requested": bool(paper), "departures": {}}
    solve = base.solve
    resolved = solve.resolve()
    configuration = {
        "engine": resolved.engine.name,
        "solver": resolved.info.name,
        "method": resolved.method,
        "rtol": solve.rtol,
        "atol": solve.atol,
        "dt": solve.dt,
        "sensitivity": resolved.sensitivity,
        "dtype": base.dtype,
        "device": device_name(base.device),
        "lr": base.lr,
        "batch_size": base.batch_size,
        "epochs": base.epochs,
        "seeds": seeds,
        "subset": base.subset,
        "max_iters": base.max_iters,
        "jobs": jobs,
        "executor": executor,
        "compile": base.compile,
        "paper_protocol": bool(paper["requested"]) and not paper["departures"],
        "paper_departures": dict(paper["departures"]),
    }
    return {
        "configuration": configuration,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "started": started,
    }


def record_session(out: Path, first_epoch: int, device: Any) -> None:
    """Append this training session (from ``first_epoch`` on, on ``device``) to the run
    folder's ``provenance.json``: ``{"sessions": [{"started", "first_epoch", "device",
    "versions", "git_commit", "hardware"}, ...]}``. An unreadable file is started anew:
    provenance is a record for people, never a reason for a run to fail."""
    path = Path(out) / "provenance.json"
    sessions: list[dict[str, Any]] = []
    if path.exists():
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            sessions = list(json.loads(path.read_text()).get("sessions", []))
    sessions.append(
        {
            "started": now(),
            "first_epoch": first_epoch,
            "device": str(device),
            "versions": versions(),
            "git_commit": git_commit(),
            "hardware": hardware(),
        }
    )
    write_json_atomic(path, {"sessions": sessions})


__all__ = [
    "device_name",
    "git_commit",
    "hardware",
    "now",
    "record_session",
    "run_metadata",
    "versions",
]
