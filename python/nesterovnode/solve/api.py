"""``solve``: the one entry point where a model's dynamics, a solver and an engine meet."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .engine import SolveRequest
from .errors import SolverError
from .registry import resolve
from .rk import fixed_step_count
from .stats import CountedField, SolveStats, mark_backward_end, mark_backward_start

SENSITIVITIES = ("backprop", "adjoint", "adjoint-seminorm")


@dataclass
class Solution:
    """The result of ``solve``: states at the output times and the solve's statistics.

    ``ys`` has shape ``[len(ts), *y0.shape]``; ``stats`` is filled in further when a
    backward pass runs through ``ys``.
    """

    ts: torch.Tensor
    ys: torch.Tensor
    stats: SolveStats

    @property
    def y_final(self) -> torch.Tensor:
        """The state at ``ts[-1]``."""
        return self.ys[-1]


def as_time_grid(ts, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check output times and return them as a 1-D tensor (y0's dtype and device).

    ``ts`` must be a 1-D, finite, strictly increasing sequence of at least two times.
    """
    if isinstance(ts, torch.Tensor):
        t_cpu = ts.detach().cpu()
    else:
        try:
            t_cpu = torch.as_tensor(ts, dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"ts must be a 1-D sequence of times, got {type(ts).__name__}") from exc
    if t_cpu.dim() != 1 or t_cpu.numel() < 2:
        raise ValueError(
            f"ts must be a 1-D sequence of at least two times [t0, ..., T], got shape "
            f"{tuple(t_cpu.shape)}"
        )
    if not torch.isfinite(t_cpu).all():
        raise ValueError(f"ts must be finite, got {t_cpu.tolist()}")
    if not (t_cpu[1:] > t_cpu[:-1]).all():
        raise ValueError(
            f"ts must be strictly increasing, got {t_cpu.tolist()[:8]}"
            f"{' ...' if t_cpu.numel() > 8 else ''}; to integrate backwards in time, "
            f"substitute s = -t in the dynamics"
        )
    if like is None:
        return ts if isinstance(ts, torch.Tensor) else t_cpu
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    if isinstance(ts, torch.Tensor) and ts.device == like.device and ts.dtype == dtype:
        return ts
    return t_cpu.to(device=like.device, dtype=dtype)


def solve(
    dynamics: nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor | Sequence[float],
    *,
    solver: str = "DP5",
    rtol: float = 1e-7,
    atol: float = 1e-7,
    sensitivity: str = "adjoint",
    engine: str | None = None,
    dt: float | None = None,
    max_steps: int | None = 100_000,
    options: dict | None = None,
) -> Solution:
    """Solve ``y' = dynamics(t, y)``, ``y(ts[0]) = y0``, and return the states at ``ts``.

    Args:
        dynamics: a module with ``forward(t, y)`` returning dy/dt (a model from
            ``nesterovnode.dynamics`` or any ``nn.Module``).
        y0: the initial state, e.g. from ``dynamics.initial_state(t0, h0, v0)``.
        ts: output times, strictly increasing, ``ts[0]`` the start time.
        solver: canonical name (``"DP5"``, ``"RK4"``, ``"RadauIIA5"``…), or
            ``"engine:name"`` (``"scipy:Radau"``, ``"torch:dopri5"``).
        rtol, atol: tolerances of adaptive solvers.
        sensitivity: ``"backprop"`` (autograd through the solver), ``"adjoint"``
            (backsolve adjoint) or ``"adjoint-seminorm"`` (adjoint whose step control
            ignores the parameter-gradient channels).
        engine: ``"torch"`` (default for the explicit Runge–Kutta methods), ``"scipy"``,
            ``"julia"``; None picks the first installed engine that offers ``solver``.
        dt: step size, required by fixed-step solvers (Euler, Midpoint, RK4); for
            adaptive ones it is the first step.
        max_steps: bound on step attempts of each of the forward and backward solves.
        options: engine-specific options passed through.

    Returns:
        ``Solution(ts, ys, stats)`` with ``ys`` of shape ``[len(ts), *y0.shape]``.
    """
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got dtype {y0.dtype}")
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"unknown sensitivity {sensitivity!r}; valid: {', '.join(SENSITIVITIES)}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (tol > 0):
            raise ValueError(f"{name} must be > 0, got {tol}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps}")
    ts = as_time_grid(ts, like=y0)
    check_time = getattr(dynamics, "check_time", None)
    if check_time is not None:
        check_time(float(ts[0].detach()))

    eng, info, method = resolve(solver, engine)
    if sensitivity not in eng.sensitivities:
        raise ValueError(
            f"the {eng.name} engine does not support sensitivity={sensitivity!r}; "
            f"it supports {', '.join(eng.sensitivities)}"
        )
    if not info.adaptive:
        if dt is None:
            raise ValueError(
                f"{info.name} is a fixed-step solver: pass dt= (the step size), e.g. "
                f"dt={float(ts[-1] - ts[0]) / 100:.3g} for 100 steps, or use an adaptive "
                f"solver such as 'DP5'"
            )
        if not (dt > 0):
            raise ValueError(f"dt must be > 0, got {dt}")
        n_steps = fixed_step_count(ts.detach().cpu().tolist(), dt)
        if max_steps is not None and n_steps > max_steps:
            raise ValueError(
                f"{info.name} with dt={dt} takes {n_steps} steps over "
                f"[{float(ts[0])}, {float(ts[-1])}], more than max_steps={max_steps}; "
                f"raise dt or max_steps"
            )

    stats = SolveStats(solver=info.name, engine=eng.name, method=method, sensitivity=sensitivity)
    field = CountedField(dynamics, stats, max_steps=max_steps)
    request = SolveRequest(
        solver=info.name,
        method=method,
        rtol=float(rtol),
        atol=float(atol),
        sensitivity=sensitivity,
        dt=None if dt is None else float(dt),
        max_steps=max_steps,
        stats=stats,
        options=dict(options or {}),
    )
    # Phase marks only where a backward pass can follow, so inference outputs stay plain.
    needs_grad = torch.is_grad_enabled() and (
        y0.requires_grad or any(p.requires_grad for p in dynamics.parameters())
    )
    start = time.perf_counter()
    try:
        ys = eng.solve(field, mark_backward_end(y0, field) if needs_grad else y0, ts, request)
    finally:
        stats.wall_time_forward = time.perf_counter() - start
    field.backward_phase = True
    if not info.adaptive and not torch.isfinite(ys[-1]).all():
        # Adaptive engines check every step; a fixed-step solve is checked once at the end.
        bad = (~torch.isfinite(ys.flatten(1))).any(dim=1).nonzero()
        t_bad = float(ts[int(bad[0])])
        raise SolverError(
            f"{info.name} produced a non-finite state by t = {t_bad:.6g}: reduce dt "
            f"(now {dt}) or use an adaptive solver",
            stats=stats,
            t_reached=t_bad,
        )
    return Solution(ts=ts, ys=mark_backward_start(ys, field), stats=stats)
