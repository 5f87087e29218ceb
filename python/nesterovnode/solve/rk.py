"""Explicit Runge–Kutta steps as pure tensor functions, and the loops that drive them.

This is the numerical core of the ``rk`` engine (``rk_engine.py``). A step is a function
of tensors only — no Python branch on a value, no read back to the host — so the same
function runs eagerly (CPU, or autograd through the solver) or is captured once as a CUDA
graph and replayed (``graphs.py``). The host keeps the time, the step size and the
output times as Python floats and reads one number per step: the error ratio that
decides acceptance.

States are tuples of tensors: ``(y,)`` for a forward solve, ``(y, a, g)`` for the adjoint
system (state, adjoint state, parameter gradient; ``rk_engine.py``). The error of an
adaptive step is measured as torchdiffeq measures it, so both engines take the same
steps:

    ratio = norm( e / (atol + rtol · max(|y|, |y_1|)) ),

with ``norm`` the root mean square of each tensor of the state, maximised over the
tensors the norm covers (``Norm``); the step is accepted when ratio ≤ 1 and the next
step is h · min(10, max(0.9 · ratio^(−1/p), δ)) with δ = 1 after an accepted step and
0.2 after a rejected one (p the method's order). The first step is Hairer, Nørsett &
Wanner's (Solving ODEs I, II.4), computed on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import NONFINITE_HINT, UNDERFLOW_HINT, SolverError
from .tableaux import Tableau

State = tuple[torch.Tensor, ...]
#: a vector field on states: (t, state) -> d(state)/dt, same structure
StateField = Callable[[torch.Tensor, State], State]

SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2


# -- norms ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Norm:
    """Max over the covered tensors of the state of their root mean square.

    ``components`` lists the indices of the state tuple the norm covers. ``segments``
    optionally splits one component (the flat parameter gradient of the adjoint) into
    pieces, one per parameter tensor, each with its own root mean square: ``(index,
    segment_ids, counts)``, where ``segment_ids`` maps each element to its piece.
    """

    components: tuple[int, ...] = (0,)
    segments: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, scaled: State) -> torch.Tensor:
        norms = [scaled[j].pow(2).mean().sqrt() for j in self.components]
        if self.segments is not None:
            j, ids, counts = self.segments
            sums = torch.zeros_like(counts).index_add_(0, ids, scaled[j].pow(2))
            norms.append((sums / counts).sqrt().max())
        return norms[0] if len(norms) == 1 else torch.stack(norms).max()


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


def _combine(y: State, h: torch.Tensor, coeffs, ks, components: Sequence[int]) -> State:
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


def make_adaptive_step(
    tableau: Tableau, field: StateField, rtol: float, atol: float, norm: Norm, reads: Sequence[int]
):
    """``step(t, h, t1, y, k1) -> (y_next, k_next, ratio)`` of an adaptive FSAL method.

    ``k1`` is f(t, y); ``t1`` is the step's end t + h as the host computed it (stages with
    c = 1 are evaluated there, so a step that ends on an output time evaluates f exactly
    at it, not at a rounded t + h). The step is accepted when ``ratio <= 1``: then
    ``y_next`` is the new state and ``k_next`` = f(t + h, y_next); otherwise both are
    returned unchanged (the choice is made on the device, so the host only reads
    ``ratio``). ``reads`` lists the state components the field reads; the stage values of
    the others (the adjoint's parameter gradient) are never formed.
    """
    if not (tableau.adaptive and tableau.fsal):
        raise ValueError(f"{tableau.name} is not an adaptive FSAL method")

    def step(t, h, t1, y: State, k1: State):
        ks = [k1]
        for c, row in zip(tableau.c[:-1], tableau.a[:-1]):
            ks.append(field(_stage_time(t, h, t1, c), _combine(y, h, row, ks, reads)))
        y1 = _combine(y, h, tableau.b, ks, range(len(y)))
        ks.append(field(t1, y1))  # FSAL: the last stage is f(t + h, y1)
        scaled = []
        for j in range(len(y)):
            if j not in norm.components and (norm.segments is None or norm.segments[0] != j):
                scaled.append(None)
                continue
            err = _weighted(tableau.b_error, ks, j) * h
            scaled.append(err / _scale(y[j], y1[j], rtol, atol))
        ratio = norm(tuple(scaled))
        accept = ratio <= 1.0  # False for NaN: the host raises on a non-finite ratio
        y_next = tuple(torch.where(accept, new, old) for new, old in zip(y1, y))
        k_next = tuple(torch.where(accept, new, old) for new, old in zip(ks[-1], k1))
        return y_next, k_next, ratio

    return step


def make_fixed_step(tableau: Tableau, field: StateField, reads: Sequence[int]):
    """``step(t, h, t1, y) -> y_1`` of a fixed-step method (``t1`` = t + h, as above)."""

    def step(t, h, t1, y: State):
        ks = [field(t, y)]
        for c, row in zip(tableau.c, tableau.a):
            ks.append(field(_stage_time(t, h, t1, c), _combine(y, h, row, ks, reads)))
        return _combine(y, h, tableau.b, ks, range(len(y)))

    return step


def make_initial_step(
    tableau: Tableau, field: StateField, rtol: float, atol: float, norm: Norm, direction: float
):
    """``init(t0, span, y0) -> (f0, h)``: f(t0, y0) and the first step size |h| (a tensor).

    Hairer's rule, without host branches: d0 = ‖y0/s‖, d1 = ‖f0/s‖ (s = atol + rtol|y0|),
    h0 = 0.01 d0/d1 (1e-6 when either is < 1e-5), capped at ``span`` (the length of the
    interval, so the probe never leaves it: a Nesterov field is singular at t = 0),
    d2 = ‖(f(t0 + h0, y0 + h0 f0) − f0)/s‖/h0,
    h1 = (0.01 / max(d1, d2))^(1/p) (max(1e-6, 1e-3 h0) when both are ≤ 1e-15),
    h = min(100 h0, h1). Costs two evaluations.
    """
    exponent = 1.0 / tableau.order

    def init(t0, span, y0: State):
        f0 = field(t0, y0)
        scale = tuple(_scale(y, None, rtol, atol) for y in y0)
        d0 = norm(tuple(y / s for y, s in zip(y0, scale)))
        d1 = norm(tuple(f / s for f, s in zip(f0, scale)))
        small = (d0 < 1e-5) | (d1 < 1e-5)
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, 1, d1))
        h0 = torch.minimum(h0, span)
        step = h0 * direction
        y1 = tuple(y + step * f if f is not None else y for y, f in zip(y0, f0))
        f1 = field(t0 + step, y1)
        d2 = norm(tuple((b - a) / s for a, b, s in zip(f0, f1, scale))) / h0
        dmax = torch.maximum(d1, d2)
        flat = dmax <= 1e-15
        h1 = torch.where(
            flat,
            torch.clamp(h0 * 1e-3, min=1e-6),
            (0.01 / torch.where(flat, 1, dmax)) ** exponent,
        )
        return f0, torch.minimum(100 * h0, h1)

    return init


def next_step_size(h: float, ratio: float, order: int) -> float:
    """|h| of the next attempt after one of size ``h`` had error ``ratio``."""
    if ratio == 0.0:
        return h * IFACTOR
    low = 1.0 if ratio < 1.0 else DFACTOR
    return h * min(IFACTOR, max(SAFETY / ratio ** (1.0 / order), low))


def interval_steps(a: float, b: float, dt: float) -> int:
    """Steps of a fixed-step method over [a, b]: ceil(length / dt) equal steps, so none is
    longer than dt and every output time is a grid point (nothing interpolated)."""
    return max(1, math.ceil(abs(b - a) / dt - 1e-9))


def fixed_grid(times: Sequence[float], dt: float) -> list[list[float]]:
    """Step start and end times per output interval (``interval_steps`` each)."""
    grids = []
    for a, b in zip(times[:-1], times[1:]):
        n = interval_steps(a, b, dt)
        grids.append([a + (b - a) * i / n for i in range(n)] + [b])
    return grids


def fixed_step_count(times: Sequence[float], dt: float) -> int:
    """Steps ``fixed_grid`` takes over ``times`` (without building it)."""
    return sum(interval_steps(a, b, dt) for a, b in zip(times[:-1], times[1:]))


# -- the host loops ------------------------------------------------------------------------
class Phase:
    """What the loops report to: step attempts (``max_steps``), accepted/rejected steps
    and evaluations, for the forward or the backward phase of a solve."""

    def __init__(self, counted_field, backward: bool, solver: str):
        self.field, self.backward, self.solver = counted_field, backward, solver

    def evaluations(self, n: int) -> None:
        stats = self.field.stats
        if self.backward:
            stats.nfe_backward += n
        else:
            stats.nfe_forward += n

    def attempt(self, t: float, h: float) -> None:
        self.field.on_step(t, None, h, self.backward)

    def accepted(self, t: float, h: float) -> None:
        self.field.on_accept(t, None, h, self.backward)

    def rejected(self, t: float, h: float) -> None:
        self.field.on_reject(t, None, h, self.backward)

    def fail(self, t: float, why: str) -> SolverError:
        which = "backward (adjoint) solve" if self.backward else "solve"
        return SolverError(
            f"{self.solver} failed at t = {t:.6g} in the {which}: {why}",
            stats=self.field.stats,
            t_reached=t,
        )


#: at_output(i, state) -> (state, changed): called on reaching times[i] (i >= 1); a
#: changed state restarts the method there (new first stage and first step)
AtOutput = Callable[[int, State], tuple[State, bool]]


def integrate_adaptive(
    tableau: Tableau,
    step,
    init,
    first_stage,
    y0: State,
    times: Sequence[float],
    phase: Phase,
    at_output: AtOutput,
    first_step: float | None = None,
) -> State:
    """Integrate through ``times`` (increasing or decreasing) with an adaptive method.

    ``step`` and ``init`` are runners (``graphs.py``) of ``make_adaptive_step`` and
    ``make_initial_step``; ``first_stage`` evaluates f(t0, y0) when the first step is
    given. Steps end exactly on every output time. Returns the final state.
    """
    direction = 1.0 if times[-1] > times[0] else -1.0
    per_step = tableau.new_evaluations_per_step
    state, k, h, t = y0, None, None, times[0]
    for i, target in enumerate(times[1:], start=1):
        if k is None:
            if first_step is not None:  # as torchdiffeq: the given first step at each start
                k, h = first_stage(t, state), float(first_step)
                phase.evaluations(1)
            else:
                k, h_t = init(t, abs(target - t), state)
                phase.evaluations(2)
                h = h_t.detach().item()  # a host read once per restart, not per step
        while t != target:
            remaining = abs(target - t)
            last = remaining <= h
            size = remaining if last else h
            phase.attempt(t, size)
            end = target if last else t + direction * size
            state, k, ratio_t = step(t, direction * size, end, state, k)
            phase.evaluations(per_step)
            ratio = ratio_t.detach().item()  # the one host-device synchronisation per step
            if not math.isfinite(ratio):
                raise phase.fail(t, NONFINITE_HINT)
            if ratio <= 1.0:
                phase.accepted(t, direction * size)
                t = end
            else:
                phase.rejected(t, direction * size)
            h = next_step_size(size, ratio, tableau.order)
            if t + direction * h == t:
                raise phase.fail(t, f"{UNDERFLOW_HINT} (h = {h:.3g})")
        state, changed = at_output(i, state)
        if changed:
            k = None
    return state


def integrate_fixed(
    tableau: Tableau,
    step,
    y0: State,
    times: Sequence[float],
    dt: float,
    phase: Phase,
    at_output: AtOutput,
) -> State:
    """Integrate through ``times`` with a fixed-step method (no host synchronisation)."""
    state = y0
    for i, grid in enumerate(fixed_grid(times, dt), start=1):
        for a, b in zip(grid[:-1], grid[1:]):
            phase.attempt(a, b - a)
            state = step(a, b - a, b, state)
            phase.evaluations(tableau.stages)
            phase.accepted(a, b - a)
        state, _ = at_output(i, state)
    return state
