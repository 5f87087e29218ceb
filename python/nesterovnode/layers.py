"""``ODEBlock``: a model's dynamics and its solve options as one ``nn.Module`` layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .solve import SolveStats, as_time_grid, solve


class ODEBlock(nn.Module):
    """``h0`` (and optionally ``v0``) in, ``h(T)`` or the trajectory ``h(ts)`` out.

    The block builds the state with ``dynamics.initial_state(t0, h0, v0)``, solves over
    ``ts`` and reads out h with ``dynamics.readout``. The statistics of the last forward
    pass (filled in further by its backward pass) are on ``block.stats``.

    Args:
        dynamics: one of the models in ``nesterovnode.dynamics``.
        ts: output times; the default ``(1.0, 2.0)`` is the paper's span.
        return_trajectory: return ``[len(ts), B, *D]`` instead of ``[B, *D]`` at T.
        solver, rtol, atol, sensitivity, engine, dt, max_steps, options: passed to
            ``solve`` (``options`` are the engine's, e.g. ``{"cuda_graphs": False}``).
    """

    def __init__(
        self,
        dynamics: nn.Module,
        ts: Sequence[float] | torch.Tensor = (1.0, 2.0),
        *,
        return_trajectory: bool = False,
        solver: str = "DP5",
        rtol: float = 1e-7,
        atol: float = 1e-7,
        sensitivity: str = "adjoint",
        engine: str | None = None,
        dt: float | None = None,
        max_steps: int | None = 100_000,
        options: dict | None = None,
    ):
        super().__init__()
        self.dynamics = dynamics
        ts = as_time_grid(ts)
        check_time = getattr(dynamics, "check_time", None)
        if check_time is not None:
            check_time(float(ts[0]))  # a Nesterov block with t0 <= 0 fails here, not later
        self.register_buffer("ts", ts.to(torch.get_default_dtype()), persistent=False)
        self.return_trajectory = return_trajectory
        self.solve_options = dict(
            solver=solver,
            rtol=rtol,
            atol=atol,
            sensitivity=sensitivity,
            engine=engine,
            dt=dt,
            max_steps=max_steps,
            options=options,
        )
        self.stats: SolveStats | None = None

    def forward(self, h0: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        ts = self.ts.to(dtype=h0.dtype, device=h0.device)
        y0 = self.dynamics.initial_state(ts[0], h0, v0)
        sol = solve(self.dynamics, y0, ts, **self.solve_options)
        self.stats = sol.stats
        if self.return_trajectory:
            return self.dynamics.readout(ts, sol.ys)
        return self.dynamics.readout(ts[-1], sol.ys[-1])

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.solve_options.items() if v is not None)
        return f"ts=[{float(self.ts[0])}..{float(self.ts[-1])}] ({len(self.ts)} points), {opts}"
