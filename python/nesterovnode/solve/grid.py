"""The fixed-step grid every engine uses: each interval between output times is split into
ceil(length / dt) equal steps, so no step is longer than dt and every output time is a
grid point (nothing is interpolated)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def direction(times: Sequence[float]) -> float:
    """+1.0 for increasing ``times``, -1.0 for decreasing (a backward solve): the sign of
    every step."""
    return 1.0 if times[-1] > times[0] else -1.0


def interval_steps(a: float, b: float, dt: float) -> int:
    """Steps of a fixed-step solve over [a, b]: ceil(length / dt) equal steps, so none is
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
