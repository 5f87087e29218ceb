"""What every solve reports: function evaluations, steps, step sizes, wall time.

Counting happens in the solve layer, never inside a model: every engine reports to a
``Recorder`` handed to it (one per phase: the forward solve, the backward/adjoint solve),
which tallies into one ``SolveStats``. The NFE an engine reports is the number of calls
the vector field observes (the engine contract suite checks this on every engine), except
for the calls ``engines/base.py`` states, which ``extra`` counts apart (``njev``,
``masked_evaluations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import SolverError


@dataclass
class SolveStats:
    """Statistics of one solve, forward and backward.

    ``nfe_backward`` and the ``*_backward`` fields fill in when ``.backward()`` runs through
    the solve: the evaluations of the adjoint solve (the augmented field, one evaluation
    per stage) plus, when gradients with respect to the output times are asked for,
    len(ts) + 1 evaluations of f (one per output time, and one more at t0 for the start
    time's own term). With ``sensitivity="backprop"`` autograd replays the
    stored graph and no function is evaluated, so they stay 0. Step sizes are kept as tensors until
    read, so that recording them never synchronises a GPU.
    """

    solver: str = ""
    engine: str = ""
    method: str = ""  #: the engine's own name of the solver (dopri5, RK45, …)
    sensitivity: str = ""
    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0
    wall_time_forward: float = 0.0
    wall_time_backward: float = 0.0
    #: seconds spent compiling the engine's programs in this solve, forward and backward
    #: (included in the wall times; the rk engine's ``compile`` option; 0 elsewhere)
    compile_seconds: float = 0.0
    #: engine-specific counts (Jacobian evaluations, LU decompositions, method switches…)
    extra: dict[str, Any] = field(default_factory=dict)
    _accepted: list = field(default_factory=list, repr=False)  # (t0, dt) tensors, forward
    _rejected: list = field(default_factory=list, repr=False)

    @property
    def nfe(self) -> int:
        """Forward plus backward function evaluations."""
        return self.nfe_forward + self.nfe_backward

    @property
    def step_times(self) -> list[float]:
        """Start times of the accepted forward steps."""
        return [float(t) for t, _ in self._accepted]

    @property
    def step_sizes(self) -> list[float]:
        """Sizes of the accepted forward steps, in order."""
        return [float(dt) for _, dt in self._accepted]

    @property
    def rejected_steps(self) -> list[tuple[float, float]]:
        """(t0, dt) of each rejected forward step attempt."""
        return [(float(t), float(dt)) for t, dt in self._rejected]

    @property
    def t_reached(self) -> float | None:
        """End time of the last accepted forward step (None before any)."""
        if not self._accepted:
            return None
        t, dt = self._accepted[-1]
        return float(t + dt)

    def record_accepted(self, t0, dt, backward: bool = False) -> None:
        if backward:
            self.steps_accepted_backward += 1
        else:
            self.steps_accepted += 1
            self._accepted.append((_detached(t0), _detached(dt)))

    def record_rejected(self, t0, dt, backward: bool = False) -> None:
        if backward:
            self.steps_rejected_backward += 1
        else:
            self.steps_rejected += 1
            self._rejected.append((_detached(t0), _detached(dt)))

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers (for JSON logs and tables)."""
        return {
            "solver": self.solver,
            "engine": self.engine,
            "method": self.method,
            "sensitivity": self.sensitivity,
            "nfe_forward": self.nfe_forward,
            "nfe_backward": self.nfe_backward,
            "steps_accepted": self.steps_accepted,
            "steps_rejected": self.steps_rejected,
            "steps_accepted_backward": self.steps_accepted_backward,
            "steps_rejected_backward": self.steps_rejected_backward,
            "wall_time_forward": self.wall_time_forward,
            "wall_time_backward": self.wall_time_backward,
            "compile_seconds": self.compile_seconds,
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str))},
        }

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.solver} on {self.engine}: "
            f"NFE {self.nfe_forward} fwd / {self.nfe_backward} bwd, "
            f"steps {self.steps_accepted} accepted / {self.steps_rejected} rejected, "
            f"{self.wall_time_forward:.3g}s fwd / {self.wall_time_backward:.3g}s bwd"
        )


def _detached(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


class Recorder:
    """What an engine reports to during one phase of a solve (forward or backward).

    ``evaluations(n)``: n calls of the vector field; ``attempt(t, h)``: a step attempt
    starts (raises ``SolverError`` past ``max_steps``); ``accepted``/``rejected``: its
    outcome; ``fail(t, reason)``: the error to raise. Forward steps are also kept as a
    history (``SolveStats.step_times``/``step_sizes``/``rejected_steps``).

    ``next_step``: |h| that the controller proposed after the last step of the solve
    (a float, or a 0-dim tensor that the engine did not read to the host); the size a
    solve continuing this one would start with (``IntegrateRequest.first_step``). None
    where the engine does not say (fixed steps, engines that keep it to themselves).
    """

    def __init__(self, stats: SolveStats, backward: bool = False, max_steps: int | None = None):
        self.stats, self.backward, self.max_steps = stats, backward, max_steps
        self.attempts = 0
        self.next_step: float | torch.Tensor | None = None

    @property
    def phase(self) -> str:
        return "backward (adjoint) solve" if self.backward else "solve"

    def evaluations(self, n: int = 1) -> None:
        if self.backward:
            self.stats.nfe_backward += n
        else:
            self.stats.nfe_forward += n

    def attempt(self, t, h) -> None:
        self.attempts += 1
        if self.max_steps is not None and self.attempts > self.max_steps:
            raise self.fail(
                t,
                "max_steps",
                f"took more than max_steps = {self.max_steps} steps (dt = {float(h):.3g})",
            )

    def accepted(self, t, h) -> None:
        self.stats.record_accepted(t, h, self.backward)

    def rejected(self, t, h) -> None:
        self.stats.record_rejected(t, h, self.backward)

    def attempts_done(self, accepted: list, rejected: list, evaluations_each: int) -> bool:
        """Report finished attempts at once: ``accepted`` and ``rejected`` hold the
        ``(t, h)`` of each attempt by outcome, each attempt took ``evaluations_each``
        evaluations. What ``attempt``, ``evaluations`` and ``accepted``/``rejected``
        report one by one, in one call (the history of a compiled solve, ``solve_loop``);
        the forward step history keeps the steps of each outcome in order. Returns False,
        reporting nothing, where the attempts would pass ``max_steps``: then report them
        one by one, which raises at the attempt that does."""
        n = len(accepted) + len(rejected)
        if self.max_steps is not None and self.attempts + n > self.max_steps:
            return False
        self.attempts += n
        self.evaluations(n * evaluations_each)
        stats = self.stats
        if self.backward:
            stats.steps_accepted_backward += len(accepted)
            stats.steps_rejected_backward += len(rejected)
        else:
            stats.steps_accepted += len(accepted)
            stats.steps_rejected += len(rejected)
            stats._accepted += accepted
            stats._rejected += rejected
        return True

    def add(self, key: str, value) -> None:
        """Add ``value`` to ``stats.extra[key]`` (``key + "_backward"`` when backward)."""
        key = key + "_backward" if self.backward else key
        self.stats.extra[key] = self.stats.extra.get(key, 0) + value

    def set(self, key: str, value) -> None:
        self.stats.extra[key + "_backward" if self.backward else key] = value

    def fail(self, t, reason: str | None, detail: str = "") -> SolverError:
        """The ``SolverError`` for a failure at ``t`` (``reason`` a key of ``HINTS``)."""
        t = None if t is None else float(t)
        where = "" if t is None else f" at t = {t:.6g}"
        what = f" ({detail})" if detail else ""
        return SolverError(
            f"{self.stats.solver} ({self.stats.engine}) failed{where} in the {self.phase}{what}",
            stats=self.stats,
            t_reached=t,
            reason=reason,
        )
