"""What every solve reports: function evaluations, steps, step sizes, wall time.

Counting happens here, in the solve layer, never inside a model: ``CountedField`` wraps
the dynamics handed to an engine and tallies every call into a ``SolveStats``, split into
the forward solve and the backward (adjoint) solve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class SolveStats:
    """Statistics of one solve, forward and backward.

    ``nfe_backward`` and the ``*_backward`` fields fill in when ``.backward()`` runs through
    the solve (an adjoint solve); with ``sensitivity="backprop"`` autograd replays the stored
    graph and no function is evaluated, so they stay 0. Step sizes are kept as tensors until
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


class CountedField(nn.Module):
    """The dynamics as engines see them: ``forward(t, y)`` evaluates the vector field and
    counts the call into ``stats`` (forward or backward phase).

    Engines report steps through ``on_step``/``on_accept``/``on_reject`` (torchdiffeq's
    callbacks are bound to them by the torch engine). ``max_steps`` bounds the step
    attempts of each phase.
    """

    def __init__(self, dynamics: nn.Module, stats: SolveStats, max_steps: int | None = None):
        super().__init__()
        self.dynamics = dynamics
        self.stats = stats
        self.max_steps = max_steps
        self.backward_phase = False
        self._attempts = [0, 0]  # forward, backward
        self._clock: float | None = None

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.backward_phase:
            self.stats.nfe_forward += 1
            return self.dynamics(t, y)
        self.stats.nfe_backward += 1
        out = self.dynamics(t, y)
        # Keeps a running backward time for when the input mark is not reached (a gradient
        # taken only with respect to the parameters); the input mark then closes it exactly.
        if self._clock is not None:
            self.stats.wall_time_backward = time.perf_counter() - self._clock
        return out

    def on_step(self, t0, y0, dt, backward: bool | None = None) -> None:
        """A step attempt starts; enforces ``max_steps``."""
        phase = int(self.backward_phase if backward is None else backward)
        self._attempts[phase] += 1
        if self.max_steps is not None and self._attempts[phase] > self.max_steps:
            from .errors import SolverError

            which = "backward (adjoint)" if phase else "forward"
            raise SolverError(
                f"the {which} solve took more than max_steps = {self.max_steps} steps "
                f"(t = {float(t0):.6g}, dt = {float(dt):.3g}); the problem may be stiff "
                f"(try solver='RadauIIA5' or 'BDF' on the scipy engine), the tolerance too "
                f"tight, or raise max_steps",
                stats=self.stats,
                t_reached=float(t0),
            )

    def on_accept(self, t0, y0, dt, backward: bool | None = None) -> None:
        self.stats.record_accepted(t0, dt, self.backward_phase if backward is None else backward)

    def on_reject(self, t0, y0, dt, backward: bool | None = None) -> None:
        self.stats.record_rejected(t0, dt, self.backward_phase if backward is None else backward)


class _BackwardClock(torch.autograd.Function):
    """Identity whose backward marks phases: on the solve's output it runs first in the
    backward pass (starts the clock, switches counting to the backward phase); on its input
    it runs last (stops the clock)."""

    @staticmethod
    def forward(ctx, x, anchor, field, start):
        ctx.field, ctx.start = field, start
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        field = ctx.field
        if ctx.start:
            field.backward_phase = True
            field._clock = time.perf_counter()
        elif field._clock is not None:
            field.stats.wall_time_backward = time.perf_counter() - field._clock
            field._clock = None
        return grad, None, None, None


def mark_backward_end(y0: torch.Tensor, field: CountedField) -> torch.Tensor:
    """Wrap the solve's input so the backward clock stops when its gradient is formed."""
    anchor = _ANCHOR
    if not torch.is_grad_enabled():
        return y0
    return _BackwardClock.apply(y0, anchor, field, False)


def mark_backward_start(ys: torch.Tensor, field: CountedField) -> torch.Tensor:
    """Wrap the solve's output so the backward clock starts with its gradient."""
    if not ys.requires_grad:
        return ys
    return _BackwardClock.apply(ys, None, field, True)


# A leaf that requires grad, so the input mark always joins the graph (and its backward
# runs) even when y0 itself needs no gradient.
_ANCHOR = torch.zeros((), requires_grad=True)
