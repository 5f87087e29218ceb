"""The sensitivity layer: the one augmented field and the one backsolve adjoint.

For ``y' = f(t, y; θ)`` and a loss L of the states at the output times t_0 < … < t_N,
the adjoint system is integrated from t_N back to t_0,

    y' = f(t, y),   a' = −aᵀ ∂f/∂y,   g' = −aᵀ ∂f/∂θ,
    a(t_N) = ∂L/∂y(t_N),   g(t_N) = 0,

one stretch at a time: on reaching an output time t_i where the loss reads the state
(∂L/∂y(t_i) ≠ 0), y is reset to the stored forward state, ∂L/∂y(t_i) is added to a and
the method restarts; output times the loss does not read are crossed without a stop, so
the backward NFE does not grow with them (a stretch whose a is zero contributes nothing
and is skipped). Then a(t_0) = dL/dy_0 and g(t_0) = dL/dθ. Any engine
that can ``integrate`` runs it; ``fields.AugmentedField`` is the one place where the
vector–Jacobian products are formed.

The backward solve starts from the step the forward solve's controller proposed at t_N
(``Recorder.next_step``, passed as ``IntegrateRequest.first_step``), and each later
stretch from the one the backward proposed where it stopped, instead of a first-step
rule: the adjoint's state holds y, whose scales that step resolves, and the rule's probe
costs an evaluation (its effect on backward NFE and gradient error: docs/performance.md).
Every step stays under the error control. An engine that does not report its proposal leaves the
backward to its own rule.

Backward NFE is defined here, once: the evaluations of the augmented field (one per
stage, each a call of f with its vector–Jacobian product), plus, when gradients with
respect to the output times are asked for, len(ts) + 1 evaluations of f: one per output
time (``with_output_time_gradients``) and one at t0 (``with_start_time_gradient``).

Error norm: ``"adjoint"`` takes one RMS over the whole augmented state [y, a, g];
``"adjoint-seminorm"`` leaves g out (Kidger, Chen & Lyons, 2021): g never feeds back into
the dynamics, so its error does not compound.

Gradients with respect to the output times (every sensitivity, every engine):
dL/dt_i = ∂L/∂y(t_i) · f(t_i, y(t_i)) for i ≥ 1, and dL/dt_0 = −(a(t_0) − ∂L/∂y(t_0)) ·
f(t_0, y_0) (``with_start_time_gradient``, ``with_output_time_gradients``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .engines.base import Engine, IntegrateRequest
from .fields import AugmentedField, DynamicsField


def error_channels(sensitivity: str) -> tuple[int, ...] | None:
    """Components of the augmented state ``(y, a, g)`` in the adjoint's error norm."""
    return (0, 1) if sensitivity == "adjoint-seminorm" else None


class Backsolve:
    """One adjoint solve: the forward solve through ``engine.integrate`` without autograd,
    and the backward pass integrating the augmented system interval by interval."""

    def __init__(
        self,
        engine: Engine,
        dynamics: nn.Module,
        times: Sequence[float],
        forward: IntegrateRequest,
        backward: IntegrateRequest,
        named=None,
    ):
        """``named``: ``dynamics.named_parameters()`` as a list, where the caller has it."""
        self.engine, self.dynamics, self.times = engine, dynamics, list(times)
        self.forward_request, self.backward_request = forward, backward
        named = list(dynamics.named_parameters()) if named is None else named
        # one walk of the model for both fields' cache keys, made where an engine asks
        self.forward_field = DynamicsField(dynamics)
        self.field = AugmentedField(dynamics, named, forward=self.forward_field)

    def solve_forward(self, y0: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            (ys,) = self.engine.integrate(
                self.forward_field, (y0,), self.times, self.forward_request
            )
        return ys

    def solve_backward(self, ys: torch.Tensor, grad_ys: torch.Tensor):
        """``(dL/dy0, dL/dθ per trainable parameter)`` from the adjoint system."""
        field, times = self.field, self.times
        # The adjoint restarts only where the loss reads the state: output times whose
        # ∂L/∂y(t_i) is zero are crossed without a stop. One host read says where it reads
        # and whether the gradient is finite (a NaN there is the loss's, not the solver's).
        inner = range(1, len(times) - 1)
        flat = grad_ys.flatten(1)
        summary = torch.cat([(flat != 0).any(dim=1), torch.isfinite(flat).all().reshape(1)])
        *reads, finite = summary.tolist()
        if not finite:
            recorder = self.backward_request.recorder
            bad = [t for t, row in zip(times, flat) if not bool(torch.isfinite(row).all())]
            raise recorder.fail(
                bad[-1], "nonfinite_gradient", f"dL/dy(t) is NaN/Inf at t = {bad[:5]}"
            )
        stops = [0] + [i for i in inner if reads[i]] + [len(times) - 1]
        a = grad_ys[-1]
        g = ys.new_zeros(sum(field.sizes))
        # each stretch starts from the step proposed where it starts: by the forward
        # solve at T (y's scales, which the adjoint's state holds, resolved by it), then
        # by the backward itself (None where the engine does not say: its own rule)
        proposed = self.forward_request.recorder
        nonzero = reads[-1]  # a = ∂L/∂y(T), read above
        for lo, hi in reversed(list(zip(stops[:-1], stops[1:]))):
            if nonzero:  # a = 0 stays 0 over the interval: nothing to do
                request = self.backward_request
                if proposed.next_step is not None:
                    request = dataclasses.replace(request, first_step=proposed.next_step)
                _, a_path, g_path = self.engine.integrate(
                    field, (ys[hi], a, g), [times[hi], times[lo]], request
                )
                a, g = a_path[-1], g_path[-1]
                proposed = request.recorder
            a = a + grad_ys[lo]
            if lo > 0:
                nonzero = bool(torch.any(a != 0))
        grads = torch.split(g, field.sizes) if field.params else ()
        return a, tuple(gp.view_as(p) for gp, p in zip(grads, field.params))


class _BacksolveFunction(torch.autograd.Function):
    """ys = solve(y0; θ), with the backsolve adjoint as its backward."""

    @staticmethod
    def forward(ctx, y0, run: Backsolve, *params):
        ys = run.solve_forward(y0)
        ctx.run = run
        ctx.save_for_backward(ys)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        (ys,) = ctx.saved_tensors
        run: Backsolve = ctx.run
        start = time.perf_counter()
        try:
            grad_y0, grad_params = run.solve_backward(ys, grad_ys)
        finally:
            run.backward_request.stats.wall_time_backward += time.perf_counter() - start
        return (grad_y0, None, *grad_params)


def backsolve(run: Backsolve, y0: torch.Tensor) -> torch.Tensor:
    """``[len(times), *y0.shape]``, differentiable w.r.t. ``y0`` and the trainable
    parameters of the dynamics by the backsolve adjoint."""
    return _BacksolveFunction.apply(y0, run, *run.field.params)


class _TimeGradient(torch.autograd.Function):
    """Identity on states ``xs`` at times ``ts`` (one per leading index) whose backward
    gives dL/dt_i = sign · ∂L/∂x_i · f(t_i, x_i), one evaluation of f per time."""

    @staticmethod
    def forward(ctx, xs, ts, dynamics, recorder, sign):
        ctx.dynamics, ctx.recorder, ctx.sign = dynamics, recorder, sign
        ctx.save_for_backward(xs, ts)
        return xs.view_as(xs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_xs):
        xs, ts = ctx.saved_tensors
        with torch.no_grad():
            out = torch.stack([(g * ctx.dynamics(t, x)).sum() for g, t, x in zip(grad_xs, ts, xs)])
            ctx.recorder.evaluations(len(ts))
        return grad_xs, ctx.sign * out.to(ts.dtype), None, None, None


def with_start_time_gradient(y0, ts, dynamics, recorder):
    """y0 that carries dL/dt_0 = −a(t_0)·f(t_0, y_0) back to ``ts`` (a(t_0) the total
    gradient of y0, which includes ∂L/∂y(t_0): ``with_output_time_gradients`` adds that
    part back, since ys[0] is y0 whatever t_0)."""
    return _TimeGradient.apply(y0[None], ts[:1], dynamics, recorder, -1.0)[0]


def with_output_time_gradients(ys, ts, dynamics, recorder):
    """ys that carry dL/dt_i = ∂L/∂y(t_i)·f(t_i, y_i) back to ``ts``."""
    return _TimeGradient.apply(ys, ts, dynamics, recorder, 1.0)
