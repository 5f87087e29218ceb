"""The in-process PyTorch engine, on torchdiffeq.

``backprop`` differentiates through the solver's operations; ``adjoint`` solves the
adjoint system backwards in time (torchdiffeq's ``odeint_adjoint``: adjoint state and
dL/dθ integrated together, vector-Jacobian products by autograd); ``adjoint-seminorm``
does the same but leaves the parameter-gradient channels out of the step-size control.
"""

from __future__ import annotations

import torch

from .engine import Engine, SolveRequest
from .errors import NONFINITE_HINT, UNDERFLOW_HINT, SolverError
from .registry import SOLVERS
from .rk import interval_steps
from .stats import CountedField


def _grid_constructor(dt: float):
    """torchdiffeq's fixed-step grid: each interval between output times is split into
    ``interval_steps`` equal steps. Built from ``t`` by tensor arithmetic, so gradients
    with respect to the output times flow through it (backprop)."""

    def construct(func, y0, t):
        pieces = [t[:1]]
        for i, (a, b) in enumerate(zip(t[:-1].tolist(), t[1:].tolist())):
            n = interval_steps(a, b, dt)
            frac = torch.arange(1, n + 1, dtype=t.dtype, device=t.device) / n
            pieces.append(t[i] + frac * (t[i + 1] - t[i]))
        return torch.cat(pieces)

    return construct


class TorchEngine(Engine):
    """Runs torchdiffeq in-process, on the device and dtype of ``y0``."""

    name = "torch"
    methods = {
        "Euler": "euler",
        "Midpoint": "midpoint",
        "Heun": "adaptive_heun",
        "RK4": "rk4",
        "BS3": "bosh3",
        "DP5": "dopri5",
        "DP8": "dopri8",
    }
    install_hint = "pip install torchdiffeq"

    @classmethod
    def available(cls) -> bool:
        try:
            import torchdiffeq  # noqa: F401
        except ImportError:
            return False
        return True

    def solve(
        self, field: CountedField, y0: torch.Tensor, ts: torch.Tensor, request: SolveRequest
    ) -> torch.Tensor:
        import torchdiffeq

        fixed = not SOLVERS[request.solver].adaptive
        options = dict(request.options)
        if fixed:
            options.setdefault("grid_constructor", _grid_constructor(request.dt))
        else:
            if request.dt is not None:
                options.setdefault("first_step", request.dt)
            if getattr(field.dynamics, "needs_positive_time", False):
                # torchdiffeq lets a step run past the last output time and interpolates
                # back. In the adjoint's reversed solve from T to t0 a long last step would
                # evaluate a Nesterov field at t <= 0, where k(t) is undefined; step_t makes
                # steps end on the output times (forward and reversed), so every stage
                # stays inside [t0, T].
                options.setdefault("step_t", ts)
        self._bind_callbacks(field, fixed)

        kwargs = dict(rtol=request.rtol, atol=request.atol, method=request.method, options=options)
        try:
            if request.sensitivity == "backprop":
                return torchdiffeq.odeint(field, y0, ts, **kwargs)
            adjoint_options = {k: v for k, v in options.items() if k != "norm"}
            if request.sensitivity == "adjoint-seminorm" and not fixed:
                adjoint_options["norm"] = "seminorm"
            params = tuple(p for p in field.parameters() if p.requires_grad)
            return torchdiffeq.odeint_adjoint(
                field,
                y0,
                ts,
                adjoint_params=params,
                adjoint_options=adjoint_options,
                adjoint_rtol=request.rtol,
                adjoint_atol=request.atol,
                **kwargs,
            )
        except AssertionError as exc:
            # torchdiffeq signals failures with asserts; turn them into errors that say
            # where the solve stopped and what to change.
            t = request.stats.t_reached
            t = float(ts[0]) if t is None else t
            msg = str(exc)
            if "non-finite" in msg:
                hint = NONFINITE_HINT
            elif "underflow" in msg:
                hint = UNDERFLOW_HINT
            else:
                hint = msg
            raise SolverError(
                f"{request.solver} failed at t = {t:.6g}: {hint}", stats=request.stats, t_reached=t
            ) from exc

    @staticmethod
    def _bind_callbacks(field: CountedField, fixed: bool) -> None:
        """Give the field torchdiffeq's callback names. Fixed-grid solvers report only
        ``callback_step``; each fixed step is an accepted one."""
        # Bound as instance attributes: torchdiffeq warns about callbacks a solver lacks.
        if fixed:

            def step(t0, y0, dt, backward=False):
                field.on_step(t0, y0, dt, backward)
                field.on_accept(t0, y0, dt, backward)

            callbacks = {"callback_step": step}
        else:
            callbacks = {
                "callback_step": field.on_step,
                "callback_accept_step": field.on_accept,
                "callback_reject_step": field.on_reject,
            }
        for name, fn in callbacks.items():
            object.__setattr__(field, name, lambda t0, y0, dt, fn=fn: fn(t0, y0, dt, False))
            object.__setattr__(
                field, name + "_adjoint", lambda t0, y0, dt, fn=fn: fn(t0, y0, dt, True)
            )
