"""Errors of the solve layer. Each says what went wrong and what to change."""

from __future__ import annotations

from .stats import SolveStats


class SolverError(RuntimeError):
    """A solve failed: non-finite state, step size underflow, too many steps, or an
    external engine's failure. ``stats`` holds what was counted up to the failure and
    ``t_reached`` the time the solve got to."""

    def __init__(self, message: str, stats: SolveStats | None = None, t_reached=None):
        if stats is not None:
            message = f"{message}\n  stats so far: {stats.summary()}"
        super().__init__(message)
        self.stats = stats
        self.t_reached = t_reached


class EngineNotInstalledError(ImportError):
    """The engine asked for cannot be imported here; the message gives the install command."""
