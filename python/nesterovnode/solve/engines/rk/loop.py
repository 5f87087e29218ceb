"""The host loops of the rk engine: they drive the pure steps of ``step.py`` (through a
runner of ``programs/runners.py``) across the output times, report to the solve's ``Recorder`` and
keep the time, the step size and the output times as Python floats.

- Adaptive: one read per step (the error ratio). The last step is shortened to end
  exactly on the final time, so no stage leaves [t0, T]. Methods with a dense output
  (BS3, DP5, Tsit5) step across interior output times and interpolate there with the
  method's own continuous extension (its order, no extra evaluation), so the NFE does not
  grow with the number of output times; the others (DP8, Heun) end a step on every
  output time.
- Fixed step: each interval between output times is split into equal steps
  (``solve/grid.py``), so every output time is a grid point; no host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ...grid import direction as time_direction
from ...grid import fixed_grid
from ...stats import Recorder
from ...stepsize import State, first_step_call
from .step import fixed_step_evaluations, interpolate
from .tableaux import Tableau

#: keep(state) -> a copy that the next runner call will not overwrite (identity eagerly)
Keep = Callable[[State], State]


def integrate_fixed(
    tableau: Tableau,
    step,
    y0: State,
    times: Sequence[float],
    dt: float,
    recorder: Recorder,
    keep: Keep,
) -> list[State]:
    """The states at ``times`` of a fixed-step solve."""
    state, outputs = y0, [keep(y0)]
    per_step = fixed_step_evaluations(tableau)
    for grid in fixed_grid(times, dt):
        for a, b in zip(grid[:-1], grid[1:]):
            recorder.attempt(a, b - a)
            state = step(a, b - a, b, state)
            recorder.evaluations(per_step)
            recorder.accepted(a, b - a)
        outputs.append(keep(state))
    return outputs


def integrate_adaptive(
    tableau: Tableau,
    step,
    init,
    y0: State,
    times: Sequence[float],
    recorder: Recorder,
    controller,
    keep: Keep,
    dense: bool,
    first_step=None,
) -> list[State]:
    """The states at ``times`` (increasing or decreasing) of an adaptive solve.

    ``step`` is a runner of ``make_adaptive_step`` (with ``dense`` when the step returns
    its stages); ``init`` one of ``make_initial_step`` (the first-step rule), or with
    ``first_step`` (the first attempt's size) one of ``make_given_first_step``. The
    controller's proposal after the last step goes to ``recorder.next_step``.
    """
    direction = time_direction(times)
    per_step = tableau.new_evaluations_per_step
    outputs = [keep(y0)]
    t, end = times[0], times[-1]
    controller.reset()
    given, evaluations = first_step_call(first_step)
    k, h_t = init(t, abs(end - t) if dense else abs(times[1] - t), y0, *given)
    recorder.evaluations(evaluations)
    h = h_t.detach().item()  # one host read per solve
    state, nxt = y0, 1
    while nxt < len(times):
        target = end if dense else times[nxt]
        remaining = abs(target - t)
        last = remaining <= h
        size = remaining if last else h
        recorder.attempt(t, direction * size)
        t1 = target if last else t + direction * size
        out = step(t, direction * size, t1, state, k)
        recorder.evaluations(per_step)
        ratio = out[2].detach().item()  # the one host-device synchronisation per step
        if not math.isfinite(ratio):
            raise recorder.fail(t, "nonfinite")
        if ratio <= 1.0:
            recorder.accepted(t, direction * size)
            if dense:
                y_start, ks = out[3]
                while nxt < len(times) and direction * (times[nxt] - t1) < 0:
                    theta = (times[nxt] - t) / (direction * size)
                    outputs.append(keep(interpolate(tableau, y_start, ks, direction * size, theta)))
                    nxt += 1
            state, k, t = out[0], out[1], t1
            if t == times[nxt]:
                outputs.append(keep(state))
                nxt += 1
        else:
            recorder.rejected(t, direction * size)
        h = controller.next_step(size, ratio)
        if nxt < len(times) and t + direction * h == t:
            raise recorder.fail(t, "underflow", f"h = {h:.3g}")
    recorder.next_step = h
    return outputs


def stack(outputs: list[State], components: Sequence[int]) -> State:
    """One ``[len(outputs), ...]`` tensor per listed component."""
    return tuple(torch.stack([o[j] for o in outputs]) for j in components)
