"""Explicit Runge–Kutta steps as pure tensor functions.

A step is a function of tensors only — no Python branch on a value, no read back to the
host — so the same function runs eagerly (CPU, or autograd through the solver) or is
captured once as a CUDA graph and replayed (``programs/runners.py``). The host keeps the time, the
step size and the output times as Python floats (``loop.py``) and reads one number per
step: the error ratio that decides acceptance.

States are tuples of tensors: ``(y,)`` for a forward solve, ``(y, a, g)`` for the adjoint
system (``solve/adjoint.py``). The error of an adaptive step is

    ratio = RMS over the covered components together of e / (atol + rtol · max(|y|, |y_1|)),

(``Norm``), with e = h Σ (b_i − b̂_i) k_i; DP8 combines its 5th- and 3rd-order estimates
as DOP853 does (``Tableau.b_error_low``). The step is accepted when ratio ≤ 1. The first
step is Hairer, Nørsett & Wanner's (Solving ODEs I, II.4), computed on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .tableaux import Tableau, dense_weights

State = tuple[torch.Tensor, ...]
#: a vector field on states: (t, state) -> d(state)/dt, same structure
StateField = Callable[[torch.Tensor, State], State]


# -- norms ---------------------------------------------------------------------------------
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


def _scale(y: torch.Tensor, y1: torch.Tensor | None, rtol: float, atol: float) -> torch.Tensor:
    size = y.abs() if y1 is None else torch.maximum(y.abs(), y1.abs())
    return size.mul(rtol).add_(atol)


# -- stage arithmetic ----------------------------------------------------------------------
def _weighted(coeffs: Sequence[float], ks: Sequence[State], j: int) -> torch.Tensor | None:
    """Σ_i coeffs[i] k_i[j], skipping zero coefficients (None when all are zero)."""
    acc = None
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            acc = k[j] * c if acc is None else acc.add(k[j], alpha=c)
    return acc


def combine(y: State, h: torch.Tensor, coeffs, ks, components: Sequence[int]) -> State:
    """y + h Σ coeffs[i] k_i, for the listed components of the state (others None)."""
    out = []
    for j in range(len(y)):
        if j not in components:
            out.append(None)
            continue
        acc = _weighted(coeffs, ks, j)
        out.append(y[j] if acc is None else torch.addcmul(y[j], acc, h))
    return tuple(out)


def _stage_time(t, h, t1, c: float):
    return t1 if c == 1.0 else t + c * h


def _stages(tableau: Tableau, field: StateField, t, h, t1, y: State, k1: State, reads, rows):
    """k_1 … k_{rows+1}: the first stage given, the others evaluated."""
    ks = [k1]
    for c, row in zip(tableau.c[:rows], tableau.a[:rows]):
        ks.append(field(_stage_time(t, h, t1, c), combine(y, h, row, ks, reads)))
    return ks


def error_ratio(tableau: Tableau, ks, h, y: State, y1: State, rtol, atol, norm: Norm):
    """The step's error in units of the tolerance (≤ 1: accept)."""

    def scaled(weights):
        out = [None] * len(y)
        for j in norm.components:
            err = _weighted(weights, ks, j)
            err = torch.zeros_like(y[j]) if err is None else err * h
            out[j] = err / _scale(y[j], y1[j], rtol, atol)
        return tuple(out)

    r5 = norm(scaled(tableau.b_error))
    if not tableau.b_error_low:
        return r5
    # DOP853: ratio = r5² / sqrt(r5² + 0.01 r3²), 0 when both vanish
    r3 = norm(scaled(tableau.b_error_low))
    denom = (r5.square() + 0.01 * r3.square()).sqrt()
    return torch.where(denom > 0, r5.square() / torch.where(denom > 0, denom, 1), 0 * denom)


def make_adaptive_step(
    tableau: Tableau,
    field: StateField,
    rtol: float,
    atol: float,
    norm: Norm,
    reads: Sequence[int],
    dense: bool = False,
):
    """``step(t, h, t1, y, k1) -> (y_next, k_next, ratio[, (y, ks)])`` of an adaptive FSAL
    method.

    ``k1`` is f(t, y); ``t1`` is the step's end t + h as the host computed it (stages with
    c = 1 are evaluated there, so a step that ends on an output time evaluates f exactly
    at it). The step is accepted when ``ratio <= 1``: then ``y_next`` is the new state and
    ``k_next`` = f(t + h, y_next); otherwise both are returned unchanged (the choice is
    made on the device, so the host only reads ``ratio``). ``reads`` lists the state
    components the field reads; the stage values of the others (the adjoint's parameter
    gradient) are never formed. With ``dense``, the step also returns its start state and
    stages, for ``interpolate`` (valid until the next call of a static runner).
    """
    if not (tableau.adaptive and tableau.fsal):
        raise ValueError(f"{tableau.name} is not an adaptive FSAL method")

    def step(t, h, t1, y: State, k1: State):
        ks = _stages(tableau, field, t, h, t1, y, k1, reads, len(tableau.a) - 1)
        y1 = combine(y, h, tableau.b, ks, range(len(y)))
        ks.append(field(t1, y1))  # FSAL: the last stage is f(t + h, y1)
        ratio = error_ratio(tableau, ks, h, y, y1, rtol, atol, norm)
        accept = ratio <= 1.0  # False for NaN: the host raises on a non-finite ratio
        y_next = tuple(torch.where(accept, new, old) for new, old in zip(y1, y))
        k_next = tuple(torch.where(accept, new, old) for new, old in zip(ks[-1], k1))
        if dense:
            return y_next, k_next, ratio, (y, tuple(ks))
        return y_next, k_next, ratio

    return step


def interpolate(tableau: Tableau, y: State, ks, h: float, theta: float) -> State:
    """The method's dense output y(t + θh) = y + h Σ b_i(θ) k_i (first component only:
    dense output is used by forward solves)."""
    weights = dense_weights(tableau, theta)
    acc = _weighted(weights, ks, 0)
    return (y[0] if acc is None else y[0] + h * acc,)


def make_fixed_step(tableau: Tableau, field: StateField, reads: Sequence[int]):
    """``step(t, h, t1, y) -> y_1`` at a fixed step (``t1`` = t + h, as above), for any
    method: an adaptive method's error estimate and its FSAL stage are not formed."""
    rows = len(tableau.a) - 1 if tableau.fsal else len(tableau.a)

    def step(t, h, t1, y: State):
        ks = _stages(tableau, field, t, h, t1, y, field(t, y), reads, rows)
        return combine(y, h, tableau.b, ks, range(len(y)))

    return step


def fixed_step_evaluations(tableau: Tableau) -> int:
    """Evaluations of f one fixed step costs (see ``make_fixed_step``)."""
    return tableau.stages - 1 if tableau.fsal else tableau.stages


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
        scale = tuple(_scale(y, None, rtol, atol) for y in y0)
        d0 = norm(tuple(y / s for y, s in zip(y0, scale)))
        d1 = norm(tuple(f / s for f, s in zip(f0, scale)))
        small = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, 1, d1))
        h0 = torch.where(h0 <= span, h0, span)  # NaN (f0 not finite): the span
        step = h0 * direction
        y1 = tuple(y + step * f for y, f in zip(y0, f0))
        f1 = field(t0 + step, y1)
        d2 = norm(tuple((b - a) / s for a, b, s in zip(f0, f1, scale))) / h0
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
