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
from .fields import DynamicsField, cell_filled
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
        rounded = out.detach().cpu().tolist()
        same = [i for i, (a, b) in enumerate(zip(rounded, rounded[1:])) if not a < b]
        if same:
            i = same[0]
            raise ValueError(
                f"the output times {times[i]!r} and {times[i + 1]!r} are equal in "
                f"{str(dtype).replace('torch.', '')}, y0's dtype, in which the solve runs: "
                f"space them further apart or solve in float64 (model.double() and a "
                f"float64 y0)"
            )
        times = rounded
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
        candidates += list(zip(names, (c.cell_contents for c in cells if cell_filled(c))))
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

    # one walk of the parameters serves the tests below and the fields of every path
    named = list(dynamics.named_parameters())
    if y0.numel() == 0:  # an empty batch: nothing to integrate, on any engine
        return Solution(ts=ts, ys=y0.unsqueeze(0).expand(len(times), *y0.shape), stats=stats)
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
            (ys,) = eng.integrate(DynamicsField(dynamics), (y0,), times, request(False))
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
    except SolverError as err:
        raise diagnosed(err, dynamics, y0, times[0], config) from err
    except RuntimeError as err:  # torch's own words for a dtype mismatch name neither side
        mismatch = _dtype_mismatch(named, y0)
        if mismatch is None:
            raise
        raise TypeError(f"{mismatch} (torch: {str(err).splitlines()[0][:200]})") from err
    finally:
        stats.wall_time_forward = time.perf_counter() - start
    if config.dt is not None:
        _check_fixed_step_result(ys, times, stats, config.dt)
    if time_grad:
        ys = adjoint.with_output_time_gradients(ys, ts, dynamics, backward_recorder)
    return Solution(ts=ts, ys=ys, stats=stats)


def _dtype_mismatch(named, y0: torch.Tensor) -> str | None:
    """What to say where a solve failed in torch and a parameter of the model (not a 0-dim
    one, which type promotion adapts) has another floating dtype than y0: torch's error
    names neither side, and a compiled step's names a C++ function. None: no mismatch."""
    for name, p in named:
        if p.dim() and p.is_floating_point() and p.dtype != y0.dtype:
            return (
                f"y0 is {str(y0.dtype).replace('torch.', '')} but the model's parameter "
                f"{name!r} is {str(p.dtype).replace('torch.', '')}: solve in one dtype, "
                f"model.to({y0.dtype}) or y0.to({p.dtype})"
            )
    return None


def diagnosed(err: SolverError, dynamics, y0: torch.Tensor, t0: float, config) -> SolverError:
    """The failure ``err`` of a forward solve with its cause named where one evaluation
    of f can tell it: f(t0, y0) non-finite from the finite y0 (a NaN or Inf parameter,
    e.g. after a diverged optimiser step), or, under a relative tolerance the dtype cannot
    resolve, a non-finite error ratio or steps that underflowed. The evaluation
    is a diagnosis after the failure: it is not counted in the solve's NFE."""
    if err.reason == "nonfinite_field":
        return err
    with torch.no_grad():
        f0 = dynamics(torch.as_tensor(t0, dtype=y0.dtype, device=y0.device), y0)
    if isinstance(f0, torch.Tensor) and not bool(torch.isfinite(f0).all()):
        bad = [n for n, p in dynamics.named_parameters() if not bool(torch.isfinite(p).all())]
        which = f": non-finite parameter(s) {', '.join(bad[:5])}" if bad else ""
        return SolverError(
            f"{err.stats.solver} ({err.stats.engine}) failed at t = {t0:.6g}: the vector "
            f"field f(t0, y0) is NaN/Inf although y0 is finite{which}",
            stats=err.stats,
            t_reached=t0,
            reason="nonfinite_field",
        )
    eps = torch.finfo(y0.dtype).eps
    if err.reason in ("nonfinite", "underflow") and config.rtol < eps:
        return SolverError(
            f"{err.stats.solver} ({err.stats.engine}) failed"
            f"{'' if err.t_reached is None else f' at t = {err.t_reached:.6g}'}: rtol = "
            f"{config.rtol:g} (atol = {config.atol:g}) is below what "
            f"{str(y0.dtype).replace('torch.', '')} resolves (machine epsilon {eps:.2g})",
            stats=err.stats,
            t_reached=err.t_reached,
            reason="tolerance",
        )
    return err


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
