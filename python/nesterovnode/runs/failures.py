"""How a run fails: what counts as a failure, and the one line that says it.

A run fails when its loss becomes non-finite, when a solve fails forward or backward
(``SolverError``, or torchdiffeq's own ``AssertionError: underflow in dt``) or when the
device runs out of memory. ``RunFailed`` carries one line naming the model, seed, epoch,
the cause and the fix, plus the epochs finished before (they stay in the checkpoint); the
run's ``log.jsonl`` ends with a ``{"status": "failed", ...}`` record.
(Reading a run's files back, and their errors, is ``checkpoint``'s.)
"""

from __future__ import annotations

from typing import Any

import torch


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
    ``TrainConfig`` (its lr, tolerance, solver and batch size go into the fix)."""
    from ..solve.errors import SolverError

    tune = (
        f"lower --lr (now {cfg.lr:g}), tighten --tol (now {cfg.solve.rtol:g}) or try "
        f"another --solver (now {cfg.solve.solver})"
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


__all__ = ["RunFailed", "classify"]
