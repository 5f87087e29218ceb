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

from collections.abc import Sequence

import torch

from ...stepsize import Norm, State, StateField, scale
from .tableaux import Tableau, dense_weights


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
            out[j] = err / scale(y[j], y1[j], rtol, atol)
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
