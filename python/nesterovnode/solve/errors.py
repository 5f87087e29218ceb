"""Errors of the solve layer, and the one table of failure reasons with what to change.

Every engine reports a failure through ``SolverError(reason=...)`` with a key of
``HINTS``, so the same failure reads the same on every engine.
"""

from __future__ import annotations

from typing import Any

#: failure reason -> what went wrong and what to change (every engine says this)
HINTS: dict[str, str] = {
    "nonfinite": (
        "the state became NaN/Inf within a step from a finite state: the solution may blow "
        "up on this interval (a finite-time singularity; a NesterovNODE's factor k(t) grows "
        "like e^(t/2): GNesterovNODE bounds it, or shorten the span), or the tolerance or "
        "step is too loose"
    ),
    "nonfinite_field": (
        "a parameter of the model (or a value the network computes from it) is NaN/Inf, "
        "e.g. after a diverged optimiser step: lower the learning rate, clip gradients, or "
        "restart from the last checkpoint"
    ),
    "nonfinite_gradient": (
        "the adjoint starts from the loss's gradient, which is NaN/Inf: check the loss "
        "(a log or division at 0, a NaN target) before the solver"
    ),
    "tolerance": (
        "the error estimate cannot be met in this dtype: raise rtol to at least 10x its "
        "machine epsilon (2e-15 in float64, 1e-6 in float32); in float32 or lower, solving "
        "in float64 (model.double() and a float64 y0) also works"
    ),
    "underflow": (
        "the step size underflowed: the solution may blow up there (a finite-time "
        "singularity), or the problem is stiff (try solver='RadauIIA5' or 'BDF', engine "
        "scipy)"
    ),
    "stalled": (
        "time stopped advancing (accepted steps of zero length): the solution blows up near "
        "this time (a finite-time singularity); shorten the span or change the dynamics"
    ),
    "max_steps": (
        "the problem may be stiff (try solver='RadauIIA5' or 'BDF', engine scipy), the "
        "tolerance too tight, or raise max_steps"
    ),
    "fixed_nonfinite": (
        "a fixed-step solve produced a non-finite state: reduce dt or use an adaptive "
        "solver (dt=None)"
    ),
}


class SolverError(RuntimeError):
    """A solve failed: non-finite state, step size underflow, too many steps, stalled
    time, or an external engine's failure. ``stats`` holds what was counted up to the
    failure, ``t_reached`` the time the solve got to, ``reason`` a key of ``HINTS``
    (or None for an engine's own message)."""

    def __init__(
        self,
        message: str,
        stats: Any = None,
        t_reached: float | None = None,
        reason: str | None = None,
    ):
        if reason is not None and HINTS[reason] not in message:
            message = f"{message}: {HINTS[reason]}"
        if stats is not None:
            message = f"{message}\n  stats so far: {stats.summary()}"
        super().__init__(message)
        self.stats = stats
        self.t_reached = t_reached
        self.reason = reason


class EngineNotInstalledError(ImportError):
    """The engine asked for cannot be imported here; the message gives the install command."""
