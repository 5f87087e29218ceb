"""Step-size numerics every adaptive engine shares: the error norm, the first-step rule
and the step-size controllers (the rk engine's steps and loops, torchdiffeq's first step
and proposal).

Error norm: one root mean square over the covered components of a state together,
``sqrt(Σ_j Σ x_j² / Σ_j n_j)`` of ``x = e / (atol + rtol max(|y|, |y_1|))`` (``Norm``,
``scale``).

First step: Hairer, Nørsett & Wanner's rule (Solving ODEs I, II.4) on the device
(``make_initial_step``), or a size given by a solve this one continues
(``make_given_first_step``).

Controllers, with ratio r ≤ 1 meaning "accepted" and k the method's order:

- ``IntegralController`` (I): h_new = h · clip(0.9 · r^(−1/k), δ, 10), δ = 1 after an
  accepted step (an accepted step never shrinks the next) and 0.2 after a rejected one.
  The same rule as torchdiffeq's, so both engines take the same steps.
- ``PIController`` (Gustafsson's PI, as OrdinaryDiffEq's and diffrax's): h_new = h ·
  clip(0.9 · r^(−β1) · r_prev^(β2), 0.2, 10) with β1 = 0.7/k, β2 = 0.4/k and r_prev the
  ratio of the last accepted step (1e-4 at least); after a rejection the factor is
  capped at 1. The memory of the last ratio damps oscillating step sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .fields import State

#: a vector field on states: (t, state) -> d(state)/dt, same structure
StateField = Callable[[torch.Tensor, State], State]


# -- the error norm ----------------------------------------------------------------------
@dataclass(frozen=True)
class Norm:
    """Root mean square over the covered components of a state, taken together:
    sqrt(Σ_j Σ x_j² / Σ_j n_j) for j in ``components``."""

    components: tuple[int, ...] = (0,)

    def __call__(self, scaled: State) -> torch.Tensor:
        parts = [scaled[j] for j in self.components]
        if len(parts) == 1:
            return parts[0].pow(2).mean().sqrt()
        total = sum(p.numel() for p in parts)
        return (torch.stack([p.pow(2).sum() for p in parts]).sum() / max(total, 1)).sqrt()


def scale(y: torch.Tensor, y1: torch.Tensor | None, rtol: float, atol: float) -> torch.Tensor:
    size = y.abs() if y1 is None else torch.maximum(y.abs(), y1.abs())
    return size.mul(rtol).add_(atol)


# -- the first step ------------------------------------------------------------------------
def make_initial_step(
    order: int, field: StateField, rtol: float, atol: float, norm: Norm, direction: float
):
    """``init(t0, span, y0) -> (f0, h)``: f(t0, y0) and the first step size |h| (a tensor).

    Hairer's rule, without host branches: d0 = ‖y0/s‖, d1 = ‖f0/s‖ (s = atol + rtol|y0|),
    h0 = 0.01 d0/d1 (1e-6 when either is < 1e-5), capped at ``span`` (the length of the
    interval, so the probe never leaves it: a Nesterov field is singular at t = 0),
    d2 = ‖(f(t0 + h0, y0 + h0 f0) − f0)/s‖/h0,
    h1 = (0.01 / max(d1, d2))^(1/p) (max(1e-6, 1e-3 h0) when both are ≤ 1e-15),
    h = min(100 h0, h1), p = ``order``. Costs two evaluations. Where f0 is not finite (a
    NaN parameter) h0 and h are the whole span: the probe and the first attempt stay in
    the interval (whose end caps every attempt), and the attempt's non-finite error ends
    the solve.
    """
    exponent = 1.0 / order

    def init(t0, span, y0: State):
        f0 = field(t0, y0)
        scales = tuple(scale(y, None, rtol, atol) for y in y0)
        d0 = norm(tuple(y / s for y, s in zip(y0, scales)))
        d1 = norm(tuple(f / s for f, s in zip(f0, scales)))
        small = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, 1, d1))
        h0 = torch.where(h0 <= span, h0, span)  # NaN (f0 not finite): the span
        step = h0 * direction
        y1 = tuple(y + step * f for y, f in zip(y0, f0))
        f1 = field(t0 + step, y1)
        d2 = norm(tuple((b - a) / s for a, b, s in zip(f0, f1, scales))) / h0
        dmax = torch.maximum(d1, d2)
        flat = dmax <= 1e-15
        h1 = torch.where(
            flat,
            torch.clamp(h0 * 1e-3, min=1e-6),
            (0.01 / torch.where(flat, 1, dmax)) ** exponent,
        )
        h = torch.minimum(100 * h0, h1)
        return f0, torch.where(torch.isnan(h), span, h)

    return init


def first_step_call(first_step) -> tuple[tuple, int]:
    """What a loop passes its first-step runner after ``(t0, span, y0)``, and what the
    call costs in evaluations: nothing and two for the rule (``make_initial_step``),
    ``(first_step,)`` and one for a given first step (``make_given_first_step``)."""
    return ((), 2) if first_step is None else ((first_step,), 1)


def make_given_first_step(field: StateField):
    """``first(t0, span, y0, h) -> (f0, |h|)``: f(t0, y0) and a first step size given
    (``IntegrateRequest.first_step``; where a solve continues another, the step that one's
    controller proposed), capped at ``span`` as the rule's is. Costs one evaluation."""

    def first(t0, span, y0: State, h):
        return field(t0, y0), torch.minimum(h.to(span.dtype), span)

    return first


# -- controllers --------------------------------------------------------------------------
SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2


class IntegralController:
    """The integral (I) controller; see the module docstring."""

    name = "integral"

    def __init__(self, order: int):
        self.order = order

    def reset(self) -> None:
        """A new integration (or a restart at an output time) begins."""

    def next_step(self, h: float, ratio: float) -> float:
        """|h| of the next attempt after one of size ``h`` had error ``ratio``."""
        if ratio == 0.0:
            return h * IFACTOR
        low = 1.0 if ratio < 1.0 else DFACTOR
        return h * min(IFACTOR, max(SAFETY / ratio ** (1.0 / self.order), low))

    def next_step_tensor(self, h, ratio, previous):
        """``(|h| next, previous)``: ``next_step`` on float64 0-dim tensors, for the loop
        run as a tensor program (``programs/solve_loop.py``); ``previous`` passes through."""
        # ratio = 0 gives 0.9 / 0 = inf, clipped to IFACTOR as the float rule's branch
        factor = SAFETY / ratio.pow(1.0 / self.order)
        # (a tensor branch: two Python numbers would make a float32 tensor, 0.2 rounded)
        low = torch.where(ratio < 1.0, torch.ones_like(ratio), DFACTOR)
        # a fresh tensor: a loop's body may not return its input
        return h * torch.clamp(torch.maximum(factor, low), max=IFACTOR), previous.clone()


class PIController:
    """The proportional–integral controller; see the module docstring."""

    name = "PI"

    def __init__(self, order: int, beta1: float = 0.7, beta2: float = 0.4):
        self.order = order
        self.beta1, self.beta2 = beta1 / order, beta2 / order
        self.previous = 1.0

    def reset(self) -> None:
        self.previous = 1.0

    def next_step(self, h: float, ratio: float) -> float:
        if ratio == 0.0:
            factor = IFACTOR
        else:
            factor = SAFETY * ratio ** (-self.beta1) * self.previous**self.beta2
        if ratio <= 1.0:
            self.previous = max(ratio, 1e-4)
            return h * min(IFACTOR, max(DFACTOR, factor))
        return h * min(1.0, max(DFACTOR, factor))

    def next_step_tensor(self, h, ratio, previous):
        """``(|h| next, previous)``: ``next_step`` on float64 0-dim tensors, with the last
        accepted ratio carried as ``previous`` (``programs/solve_loop.py``)."""
        factor = SAFETY * ratio.pow(-self.beta1) * previous.pow(self.beta2)
        factor = torch.where(ratio == 0.0, IFACTOR, factor)
        accept = ratio <= 1.0
        previous = torch.where(accept, torch.clamp(ratio, min=1e-4), previous)
        high = torch.where(accept, IFACTOR, torch.ones_like(ratio))
        return h * torch.minimum(torch.clamp(factor, min=DFACTOR), high), previous


CONTROLLERS = {"integral": IntegralController, "PI": PIController}


def make_controller(name: str, order: int):
    """A controller by name (``"integral"`` or ``"PI"``)."""
    return CONTROLLERS[name](order)
