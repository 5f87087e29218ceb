"""The torchdiffeq engine: torchdiffeq's solvers in-process, kept as a reference engine.

Its methods under the canonical names, each the same method as on every other engine:
Euler, Midpoint, Heun (``adaptive_heun``), BS3 (``bosh3``), DP5 (``dopri5``); its ``rk4``
is Kutta's 3/8 rule, so it is ``RK38`` here (``RK4`` is the classical method), and its
``dopri8`` is Prince & Dormand's 8(7) 13M pair, not DOP853, so it is ``DP87``.

How the contract is met:

- steps end on every output time (``step_t``), so outputs never come from torchdiffeq's
  interpolants (bosh3's is second order) and no step runs past the end;
- the first step is chosen by the library's own rule (``stepsize.make_initial_step``),
  whose probe stays inside [t0, T] (torchdiffeq's own probe can leave the interval: a
  Nesterov field is singular at t = 0), or given (``IntegrateRequest.first_step``); the
  step its controller proposed after the last one, which torchdiffeq keeps to itself, is
  computed by its rule from the last step's size and error ratio (``Recorder.next_step``);
- the error norm is one RMS over the covered components together (``norm=``);
- evaluations and steps are counted through the field and torchdiffeq's callbacks.

Sensitivities: the generic ``adjoint``/``adjoint-seminorm`` (the library's backsolve over
``integrate``) and ``backprop``; natively ``"torchdiffeq:adjoint"`` and
``"torchdiffeq:adjoint-seminorm"`` (``odeint_adjoint``). Fixed steps (``dt``) only for
its fixed-grid methods (Euler, Midpoint, RK38).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import SolverError
from ..grid import direction as time_direction
from ..grid import fixed_grid
from ..stats import Recorder
from ..stepsize import IntegralController, Norm, make_initial_step
from .base import Engine, IntegrateRequest, State

#: fixed-grid methods (the others are adaptive only here)
FIXED = {"Euler", "Midpoint", "RK38"}
#: the rk tableau whose order sets the first-step rule of each adaptive method
ORDER_OF = {"adaptive_heun": 2, "bosh3": 3, "dopri5": 5, "dopri8": 8}


class _Counted:
    """The field as torchdiffeq calls it on a fixed grid: counts every evaluation, and
    every step (each one accepted)."""

    fixed = True

    def __init__(self, field, recorder: Recorder, count=None, sign: float = 1.0):
        self.field, self.recorder = field, recorder
        self.count = recorder.evaluations if count is None else count
        # torchdiffeq hands its callbacks |dt| backwards in time; steps are reported signed
        self.sign = sign

    def __call__(self, t, z):
        self.count(1)
        return self.field(t, z)

    def callback_step(self, t0, y0, dt):
        self.recorder.attempt(float(t0), self.sign * float(dt))
        if self.fixed:
            self.recorder.accepted(float(t0), self.sign * float(dt))


class _CountedAdaptive(_Counted):
    """The same for adaptive methods, which also report acceptance and rejection (fixed-
    grid solvers warn about callbacks they lack, so only these have them)."""

    fixed = False

    last_size = None  #: |dt| of the last accepted step

    def callback_accept_step(self, t0, y0, dt):
        self.last_size = abs(float(dt))
        self.recorder.accepted(float(t0), self.sign * self.last_size)

    def callback_reject_step(self, t0, y0, dt):
        self.recorder.rejected(float(t0), self.sign * float(dt))


def _counted(fixed: bool, field, recorder: Recorder, count=None, sign: float = 1.0) -> _Counted:
    return (_Counted if fixed else _CountedAdaptive)(field, recorder, count, sign)


def _grid_constructor(dt: float):
    """The library's fixed-step grid (``solve/grid.py``) over the times torchdiffeq passes
    (negated, and so increasing, when it integrates backwards in time)."""

    def construct(func, y0, t):
        times = t.detach().cpu().tolist()
        points = [x for g in fixed_grid(times, dt) for x in g[:-1]] + [times[-1]]
        return torch.tensor(points, dtype=t.dtype, device=t.device)

    return construct


class _Rms:
    """One RMS over the covered components of torchdiffeq's (tuple) state together. Its
    adaptive solvers take it as the norm of the scaled error, once per attempt: the last
    value it returned is the last attempt's error ratio (``last``)."""

    def __init__(self, channels):
        self.norm = Norm(tuple(channels))
        self.last = None

    def __call__(self, x):
        self.last = self.norm(tuple(x) if isinstance(x, (tuple, list)) else (x,))
        return self.last


def _next_step(method: str, counted: _CountedAdaptive, norm: _Rms) -> float | None:
    """|h| that torchdiffeq's controller proposed after its last step, which it keeps to
    itself: its rule (torchdiffeq's ``_optimal_step_size``, the rk engine's integral
    controller) on the last accepted step's size and error ratio."""
    if counted.last_size is None or norm.last is None:
        return None
    return IntegralController(ORDER_OF[method]).next_step(counted.last_size, float(norm.last))


class TorchdiffeqEngine(Engine):
    """torchdiffeq's solvers, on the device and dtype of the state."""

    name = "torchdiffeq"
    methods = {
        "Euler": "euler",
        "Midpoint": "midpoint",
        "Heun": "adaptive_heun",
        "RK38": "rk4",
        "BS3": "bosh3",
        "DP5": "dopri5",
        "DP87": "dopri8",
    }
    differentiable = True
    fixed_steps = frozenset(FIXED)
    native_sensitivities = {
        "adjoint": "torchdiffeq's odeint_adjoint",
        "adjoint-seminorm": "torchdiffeq's odeint_adjoint with its seminorm",
    }
    install_hint = "pip install torchdiffeq"
    requires = ("torchdiffeq",)

    def _options(self, field, z0: State, times: Sequence[float], request: IntegrateRequest):
        """torchdiffeq's options and the grid, for ``integrate`` and ``solve_native``."""
        fixed = request.solver in FIXED
        if request.dt is not None and not fixed:
            raise ValueError(
                f"the torchdiffeq engine runs {request.solver} adaptively only; for fixed "
                f"steps of any method use engine='rk'"
            )
        y = z0[0]
        t = torch.tensor(list(times), dtype=y.dtype, device=y.device)
        if fixed:
            return t, {"grid_constructor": _grid_constructor(request.dt)}
        channels = range(len(z0)) if request.error_channels is None else request.error_channels
        span = abs(times[1] - times[0])
        if request.first_step is not None:  # torchdiffeq then evaluates f(t0) only
            h = min(float(request.first_step), span)
        else:
            init = make_initial_step(
                ORDER_OF[request.method],
                field,
                request.rtol,
                request.atol,
                Norm(tuple(channels)),
                time_direction(times),
            )
            with torch.no_grad():
                _, h = init(t[0], t.new_tensor(span), tuple(z.detach() for z in z0))
            request.recorder.evaluations(2)
        return t, {"step_t": t, "first_step": float(h), "norm": _Rms(channels)}

    def integrate(self, field, z0: State, times: Sequence[float], request: IntegrateRequest):
        import torchdiffeq

        t, options = self._options(field, z0, times, request)
        counted = _counted(
            "grid_constructor" in options, field, request.recorder, sign=time_direction(times)
        )
        try:
            out = torchdiffeq.odeint(
                counted,
                z0,
                t,
                rtol=request.rtol,
                atol=request.atol,
                method=request.method,
                options=options,
            )
        except AssertionError as exc:
            raise _failure(exc, request) from exc
        if "norm" in options:
            request.recorder.next_step = _next_step(request.method, counted, options["norm"])
        return tuple(out)

    def solve_native(self, sensitivity, dynamics, y0, ts, request: IntegrateRequest):
        import torchdiffeq

        from ..fields import DynamicsField, trainable

        times = ts.detach().cpu().tolist()
        field = DynamicsField(dynamics)

        def count(n):
            # torchdiffeq evaluates the backward (augmented) system with grad enabled
            (backward if torch.is_grad_enabled() else request.recorder).evaluations(n)

        backward = Recorder(request.stats, backward=True, max_steps=request.recorder.max_steps)
        t, options = self._options(field, (y0,), times, request)
        options.pop("norm", None)
        adjoint_options = dict(options)
        if "first_step" in options:  # its own probe would leave the interval: no probe
            gaps = [abs(b - a) for a, b in zip(times, times[1:])]
            adjoint_options["first_step"] = min(options["first_step"], min(gaps))
        if sensitivity == "adjoint-seminorm":
            adjoint_options["norm"] = "seminorm"
        _, params = trainable(dynamics)
        counted = _counted("grid_constructor" in options, dynamics, request.recorder, count)
        adjoint_counter = _counted(counted.fixed, dynamics, backward)
        for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
            if hasattr(adjoint_counter, name):
                setattr(counted, name + "_adjoint", getattr(adjoint_counter, name))
        try:
            return torchdiffeq.odeint_adjoint(
                counted,
                y0,
                t,
                rtol=request.rtol,
                atol=request.atol,
                method=request.method,
                options=options,
                adjoint_params=params,
                adjoint_options=adjoint_options,
            )
        except AssertionError as exc:
            raise _failure(exc, request) from exc


def _failure(exc: AssertionError, request: IntegrateRequest) -> SolverError:
    """torchdiffeq signals failures with asserts: say where and what to change."""
    t = request.stats.t_reached
    msg = str(exc)
    reason = "nonfinite" if "non-finite" in msg else "underflow" if "underflow" in msg else None
    return request.recorder.fail(t, reason, "" if reason else msg)
