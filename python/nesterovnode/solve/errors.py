"""Errors of the solve layer. Each says what went wrong and what to change."""

from __future__ import annotations

from .stats import SolveStats

#: what to change when an explicit solver's state becomes NaN/Inf (every engine says this)
NONFINITE_HINT = (
    "the state became NaN/Inf; the dynamics may blow up on this interval (for NesterovNODE "
    "k(t) grows like e^(t/2): try GNesterovNODE or a shorter span), or the tolerance is too "
    "loose"
)
#: what to change when the step size underflows
UNDERFLOW_HINT = (
    "the step size underflowed: the solution may blow up there (a finite-time singularity), "
    "or the problem is stiff (try solver='RadauIIA5' or 'BDF' on the scipy engine)"
)


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
