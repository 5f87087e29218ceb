"""torchode solving the library's own dynamics: the peer of ``peers.py`` (point cloud) and
``images.py`` (MNIST, ``--engine torchode``).

Dopri5 with torchode's integral controller at rtol = atol = ``tol``, the whole batch as
one sample (one step size for the batch, as our solves and the published code take), the
gradient by ``JointBacksolveAdjoint`` (a continuous adjoint, as ours) or, for
``adjoint=False``, by backpropagation through the steps (``AutoDiffAdjoint``). The NFE is
what f observes (``Counter``). Needs torchode (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn


class Counter(nn.Module):
    """The dynamics with a call count, on torchode's flat [1, n] state."""

    def __init__(self, dynamics: nn.Module, shape: torch.Size):
        super().__init__()
        self.dynamics, self.shape, self.calls = dynamics, shape, 0

    def forward(self, t, y):
        self.calls += 1
        t = t.reshape(-1)[0] if t.dim() else t
        return self.dynamics(t, y.view(self.shape)).reshape(1, -1)


def solve_to_end(
    dynamics: nn.Module, y0: torch.Tensor, t0: float, t1: float, tol: float, adjoint=True
) -> tuple[torch.Tensor, Counter]:
    """y(t1) of y' = dynamics(t, y), y(t0) = y0, and the counter of f's calls."""
    import torchode as to

    f = Counter(dynamics, y0.shape)
    term = to.ODETerm(f)
    step = to.Dopri5(term=term)
    control = to.IntegralController(atol=tol, rtol=tol, term=term)
    solver = (
        to.JointBacksolveAdjoint(term, step, control)
        if adjoint
        else to.AutoDiffAdjoint(step, control)
    )
    t_eval = torch.tensor([[t0, t1]], dtype=y0.dtype, device=y0.device)
    sol = solver.solve(to.InitialValueProblem(y0=y0.reshape(1, -1), t_eval=t_eval))
    return sol.ys[0, -1].view(y0.shape), f


class TorchodeBlock(nn.Module):
    """A model's ODE block (``layers.ODEBlock``) solved by torchode: the same dynamics,
    times, initial state and readout. ``stats`` gives the forward and backward NFE of the
    last solve, as the solve layer's statistics do (read it after the backward)."""

    def __init__(self, block: nn.Module, tol: float, adjoint: bool = True):
        super().__init__()
        self.dynamics = block.dynamics
        self.ts = block.ts
        self.tol, self.adjoint = tol, adjoint
        self._counter: Counter | None = None
        self._forward_calls = 0

    def forward(self, h0: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        ts = self.ts.to(dtype=h0.dtype, device=h0.device)
        y0 = self.dynamics.initial_state(ts[0], h0, v0)
        t0, t1 = float(self.ts[0]), float(self.ts[-1])
        y1, self._counter = solve_to_end(self.dynamics, y0, t0, t1, self.tol, self.adjoint)
        self._forward_calls = self._counter.calls
        return self.dynamics.readout(ts[-1], y1)

    @property
    def stats(self) -> SimpleNamespace:
        calls = 0 if self._counter is None else self._counter.calls
        return SimpleNamespace(
            nfe_forward=self._forward_calls, nfe_backward=calls - self._forward_calls
        )
