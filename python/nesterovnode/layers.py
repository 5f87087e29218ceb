"""``ODEBlock``: a model's dynamics and its ``SolveConfig`` as one ``nn.Module`` layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .solve import SolveConfig, SolveStats, as_time_grid, solve


class ODEBlock(nn.Module):
    """``h0`` (and optionally ``v0``) in, ``h(T)`` or the trajectory ``h(ts)`` out.

    The block builds the state with ``dynamics.initial_state(t0, h0, v0)``, solves over
    ``ts`` with ``config`` and reads out h with ``dynamics.readout``. The statistics of
    the last forward pass (filled in further by its backward pass) are on
    ``block.stats``.

    Args:
        dynamics: one of the models in ``nesterovnode.dynamics``.
        ts: output times; the default ``(1.0, 2.0)`` is the paper's span. Kept in float64
            and converted to the input's dtype at each pass.
        config: how to solve (``SolveConfig``; its defaults when None).
        return_trajectory: return ``[len(ts), B, *D]`` instead of ``[B, *D]`` at T.
        **changes: fields of ``SolveConfig`` to change (``solver="Tsit5"``, ``rtol=1e-5``).
    """

    def __init__(
        self,
        dynamics: nn.Module,
        ts: Sequence[float] | torch.Tensor = (1.0, 2.0),
        config: SolveConfig | None = None,
        *,
        return_trajectory: bool = False,
        **changes,
    ):
        super().__init__()
        self.dynamics = dynamics
        ts = as_time_grid(ts)
        check_time = getattr(dynamics, "check_time", None)
        if check_time is not None:
            check_time(float(ts[0]))  # a Nesterov block with t0 <= 0 fails here, not later
        # float64 whatever the default dtype: .double() later must not see rounded times
        self.register_buffer("ts", ts.detach().to(torch.float64), persistent=False)
        self.return_trajectory = return_trajectory
        config = SolveConfig() if config is None else config
        self.config = config.replace(**changes) if changes else config
        self.stats: SolveStats | None = None

    def _apply(self, fn, recurse=True):
        # .float()/.half() convert floating buffers; the times stay float64 (see above)
        ts = self.ts
        out = super()._apply(fn, recurse)
        self.ts = ts.to(device=self.ts.device)
        return out

    def forward(self, h0: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        ts = self.ts.to(dtype=h0.dtype, device=h0.device)
        y0 = self.dynamics.initial_state(ts[0], h0, v0)
        sol = solve(self.dynamics, y0, ts, self.config)
        self.stats = sol.stats
        if self.return_trajectory:
            return self.dynamics.readout(ts, sol.ys)
        return self.dynamics.readout(ts[-1], sol.ys[-1])

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"ts=[{float(self.ts[0])}..{float(self.ts[-1])}] ({len(self.ts)} points), "
            f"solver={c.solver}, rtol={c.rtol:g}, atol={c.atol:g}, sensitivity={c.sensitivity}"
            + (f", engine={c.engine}" if c.engine else "")
            + (f", dt={c.dt:g}" if c.dt else "")
        )
