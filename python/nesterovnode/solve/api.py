"""``solve``: the one entry point where a model's dynamics, a solver and an engine meet."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import adjoint
from .config import FIELDS, SolveConfig, check_tolerance_for_dtype
from .engines.base import IntegrateRequest
from .errors import SolverError
from .grid import fixed_step_count
from .stats import Recorder, SolveStats


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

    ``ts`` must be a 1-D, finite, strictly increasing sequence of at least two times. A
    tensor ``ts`` keeps its autograd history (gradients with respect to the output times
    flow on every engine).
    """
    return _time_grid(ts, like)[0]


def _time_grid(ts, like: torch.Tensor | None) -> tuple[torch.Tensor, list[float]]:
    """``as_time_grid`` and the times as Python floats. The checks run on the floats: a
    solve's times are a handful of numbers, and tensor operations on them cost more than
    the rest of a small solve's set-up."""
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
    times = t_cpu.tolist()
    if not all(math.isfinite(t) for t in times):
        raise ValueError(f"ts must be finite, got {times}")
    if not all(a < b for a, b in zip(times, times[1:])):
        raise ValueError(
            f"ts must be strictly increasing, got {times[:8]}"
            f"{' ...' if len(times) > 8 else ''}; to integrate backwards in time, "
            f"substitute s = -t in the dynamics"
        )
    if like is None:
        return (ts if isinstance(ts, torch.Tensor) else t_cpu), times
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    source = ts if isinstance(ts, torch.Tensor) else t_cpu
    out = source.to(device=like.device, dtype=dtype)
    if out.dtype != t_cpu.dtype:  # the engines integrate between the times as rounded
        times = out.detach().cpu().tolist()
    return out, times


def _hidden_trainables(f) -> list[str]:
    """Names of trainable modules/tensors a plain callable reaches outside
    ``parameters()``: its closure, the globals its code names, a bound method's owner."""
    found = []
    candidates = []
    code = getattr(f, "__code__", None)
    if code is not None:
        names = code.co_freevars
        cells = getattr(f, "__closure__", None) or ()
        candidates += list(zip(names, (c.cell_contents for c in cells if _filled(c))))
        glob = getattr(f, "__globals__", {})
        candidates += [(n, glob[n]) for n in code.co_names if n in glob]
    owner = getattr(f, "__self__", None)
    if owner is not None:
        candidates.append((type(owner).__name__, owner))
    for name, value in candidates:
        if isinstance(value, nn.Module) and any(p.requires_grad for p in value.parameters()):
            found.append(name)
        elif isinstance(value, torch.Tensor) and value.requires_grad:
            found.append(name)
    return found


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _check_plain_callables(dynamics: nn.Module, sensitivity: str) -> None:
    """A network given as a plain callable hides its parameters from the adjoint: refuse
    when it reaches trainable ones (parameter-free callables, exact fields, are fine)."""
    f = getattr(dynamics, "f", None)
    if f is None or isinstance(f, nn.Module) or sensitivity == "backprop":
        return
    hidden = _hidden_trainables(f)
    if not hidden:
        return
    raise TypeError(
        f"{type(dynamics).__name__}'s network f is a plain callable that uses trainable "
        f"{', '.join(hidden)}; an adjoint cannot see parameters outside the model, so they "
        f"would never train. Pass the nn.Module itself (e.g. {type(dynamics).__name__}(net), "
        f"with net's forward taking (t, h) or h), or use sensitivity='backprop'"
    )


def solve(
    dynamics: nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor | Sequence[float],
    config: SolveConfig | None = None,
    **changes,
) -> Solution:
    """Solve ``y' = dynamics(t, y)``, ``y(ts[0]) = y0``, and return the states at ``ts``.

    Args:
        dynamics: a module with ``forward(t, y)`` returning dy/dt (a model from
            ``nesterovnode.dynamics`` or any ``nn.Module``).
        y0: the initial state, e.g. from ``dynamics.initial_state(t0, h0, v0)``.
        ts: output times, strictly increasing, ``ts[0]`` the start time.
        config: how to solve (``SolveConfig``; its defaults when None).
        **changes: fields of ``SolveConfig`` to change (``solver="Tsit5"``, ``rtol=1e-5``,
            ``sensitivity="adjoint-seminorm"``, ``dt=0.01``…).

    Returns:
        ``Solution(ts, ys, stats)`` with ``ys`` of shape ``[len(ts), *y0.shape]``,
        differentiable with respect to ``y0``, the trainable parameters of ``dynamics``
        and ``ts`` under the configured sensitivity.
    """
    config = SolveConfig() if config is None else config
    if changes:
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise TypeError(
                f"solve() got unknown arguments {sorted(unknown)}; SolveConfig's fields: "
                f"{', '.join(FIELDS)}"
            )
        config = config.replace(**changes)
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got dtype {y0.dtype}")
    if not torch.isfinite(y0).all():
        raise ValueError(
            "y0 contains NaN or Inf: the initial state must be finite (check the input "
            "data and the encoder that builds the initial state)"
        )
    ts, times = _time_grid(ts, like=y0)
    check_time = getattr(dynamics, "check_time", None)
    if check_time is not None:
        check_time(times[0])
    check_tolerance_for_dtype(config, y0.dtype)
    plan = config.resolve()
    _check_plain_callables(dynamics, plan.sensitivity)
    if config.dt is not None and config.max_steps is not None:
        n_steps = fixed_step_count(times, config.dt)
        if n_steps > config.max_steps:
            raise ValueError(
                f"{plan.info.name} with dt={config.dt} takes {n_steps} steps over "
                f"[{times[0]}, {times[-1]}], more than max_steps={config.max_steps}; "
                f"raise dt or max_steps"
            )

    eng = plan.engine
    stats = SolveStats(
        solver=plan.info.name, engine=eng.name, method=plan.method, sensitivity=config.sensitivity
    )

    def request(backward: bool, channels=None) -> IntegrateRequest:
        return IntegrateRequest(
            solver=plan.info.name,
            method=plan.method,
            rtol=config.rtol,
            atol=config.atol,
            dt=config.dt,
            error_channels=channels,
            recorder=Recorder(stats, backward=backward, max_steps=config.max_steps),
            options=plan.options,
        )

    # one walk of the parameters serves the test below and the fields of every path
    named = list(dynamics.named_parameters())
    needs_grad = torch.is_grad_enabled() and (
        y0.requires_grad or any(p.requires_grad for _, p in named)
    )
    time_grad = torch.is_grad_enabled() and ts.requires_grad
    backward_recorder = Recorder(stats, backward=True)
    if time_grad:
        y0 = adjoint.with_start_time_gradient(y0, ts, dynamics, backward_recorder)
    start = time.perf_counter()
    try:
        if plan.native:
            ys = eng.solve_native(plan.sensitivity, dynamics, y0, ts.detach(), request(False))
        elif plan.sensitivity == "backprop" or not (needs_grad or time_grad):
            field = adjoint.DynamicsField(dynamics, [p for _, p in named])
            (ys,) = eng.integrate(field, (y0,), times, request(False))
        else:
            run = adjoint.Backsolve(
                eng,
                dynamics,
                times,
                request(False),
                request(True, adjoint.error_channels(plan.sensitivity)),
                named,
            )
            ys = adjoint.backsolve(run, y0)
    finally:
        stats.wall_time_forward = time.perf_counter() - start
    if config.dt is not None:
        _check_fixed_step_result(ys, times, stats, config.dt)
    if time_grad:
        ys = adjoint.with_output_time_gradients(ys, ts, dynamics, backward_recorder)
    return Solution(ts=ts, ys=ys, stats=stats)


def _check_fixed_step_result(ys: torch.Tensor, times, stats: SolveStats, dt: float) -> None:
    """Adaptive solves check every step; a fixed-step solve is checked at the outputs."""
    finite = torch.isfinite(ys.detach().flatten(1)).all(dim=1)
    if bool(finite.all()):
        return
    t_bad = times[int((~finite).nonzero()[0])]
    raise SolverError(
        f"{stats.solver} ({stats.engine}) with dt = {dt:g} produced a non-finite state by "
        f"t = {t_bad:.6g}",
        stats=stats,
        t_reached=t_bad,
        reason="fixed_nonfinite",
    )
