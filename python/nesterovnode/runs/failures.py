"""How a run fails and how a saved run is read back.

A run fails when its loss becomes non-finite, when a solve fails forward or backward
(``SolverError``, or torchdiffeq's own ``AssertionError: underflow in dt``) or when the
device runs out of memory. ``RunFailed`` carries one line naming the model, seed, epoch,
the cause and the fix, plus the epochs finished before (they stay in the checkpoint); the
run's ``log.jsonl`` ends with a ``{"status": "failed", ...}`` record.

``read_checkpoint`` and ``read_log`` check a run's files on load and raise
``CorruptRunError`` (a ValueError) naming the file and what to do, instead of pickle's or
JSON's own exceptions.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

#: What every checkpoint holds (``training._save``).
CHECKPOINT_KEYS = ("model", "optimizer", "history", "config", "model_name", "task")


class CorruptRunError(ValueError):
    """A checkpoint, log or results file that cannot be read back."""


class RunFailed(RuntimeError):
    """A run stopped by a failure; ``str()`` is one line: model, seed, epoch, cause, fix."""

    def __init__(
        self,
        model: str,
        seed: int,
        epoch: int,
        cause: str,
        fix: str,
        history: list[dict[str, Any]],
        where: str | None = None,
    ):
        kept = (
            f"epochs 1-{len(history)} are kept in {where}"
            if history and where
            else (f"{len(history)} finished epochs kept" if history else "no epoch finished")
        )
        super().__init__(f"{model} seed {seed} failed in epoch {epoch}: {cause}; {fix} ({kept})")
        self.model, self.seed, self.epoch = model, seed, epoch
        self.cause, self.fix = cause, fix
        self.history = history

    def record(self) -> dict[str, Any]:
        """The failure as the last line of a run's log."""
        return {
            "status": "failed",
            "epoch": self.epoch,
            "cause": self.cause,
            "fix": self.fix,
            "message": str(self),
        }


_REASONS = {
    "nonfinite": "the ODE state became NaN/Inf",
    "underflow": "the solver's step size underflowed",
    "stalled": "the solver's time stopped advancing",
    "max_steps": "the solver took too many steps",
    "fixed_nonfinite": "a fixed-step solve gave NaN/Inf",
    "nonfinite_field": "the vector field was NaN/Inf at a finite state (a NaN/Inf parameter)",
    "nonfinite_gradient": "the loss's gradient with respect to the solution was NaN/Inf",
    "tolerance": "the tolerance is below what the dtype resolves",
}


def classify(exc: BaseException, phase: str, cfg) -> tuple[str, str] | None:
    """(cause, fix) when ``exc`` is a run failure (see the module doc), else None.

    ``phase``: "forward" or "backward" (the solve that failed); ``cfg``: the resolved
    ``TrainConfig`` (its lr, tol, solver and batch size go into the fix)."""
    from ..solve.errors import SolverError

    tune = (
        f"lower --lr (now {cfg.lr:g}), tighten --tol (now {cfg.tol:g}) or try another "
        f"--solver (now {cfg.solver})"
    )
    if isinstance(exc, SolverError):
        what = _REASONS.get(exc.reason, "the solver failed")
        at = f" at t = {exc.t_reached:.4g}" if exc.t_reached is not None else ""
        return f"{what} in the {phase} solve{at} (SolverError)", tune
    if isinstance(exc, AssertionError) and "underflow in dt" in str(exc):  # torchdiffeq
        return f"the solver's step size underflowed in the {phase} solve (torchdiffeq)", tune
    if isinstance(exc, FloatingPointError):
        return str(exc), tune
    oom = getattr(torch, "OutOfMemoryError", ())
    if (oom and isinstance(exc, oom)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    ):
        return (
            f"out of memory in the {phase} pass on {cfg.device}",
            f"lower --batch-size (now {cfg.batch_size}) or use another --device",
        )
    return None


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A run's ``checkpoint.pt``, checked: readable and holding ``CHECKPOINT_KEYS``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (
        OSError,
        EOFError,
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        AttributeError,
        ImportError,
    ) as exc:
        raise CorruptRunError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); it may be truncated or "
            f"corrupt: restore it, or pass --overwrite to start the run again"
        ) from exc
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CorruptRunError(
            f"{path} is not a nesterovnode checkpoint (missing {', '.join(missing)}); pass "
            f"--overwrite to start the run again"
        )
    return state


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a run directory's ``log.jsonl`` (a failure record is left out:
    ``read_failure`` gives it)."""
    return [r for r in _log_lines(out_dir) if "status" not in r]


def read_failure(out_dir: str | Path) -> dict[str, Any] | None:
    """The failure record ending a run's log, or None for a run that has not failed."""
    lines = _log_lines(out_dir)
    return lines[-1] if lines and lines[-1].get("status") == "failed" else None


def _log_lines(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / "log.jsonl"
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CorruptRunError(
                f"{path} line {i} is not JSON ({exc.msg}); the log may be truncated or "
                f"corrupt: the checkpoint beside it holds the same epochs"
            ) from exc
    return records


__all__ = [
    "CHECKPOINT_KEYS",
    "CorruptRunError",
    "RunFailed",
    "classify",
    "read_checkpoint",
    "read_failure",
    "read_log",
]
