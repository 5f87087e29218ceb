"""Nesterov neural ODEs (the paper "Nesterov Neural Ordinary Differential Equations").

The Nesterov ODE with factor r, ``h'' + (r/t) h' + ∇F(h) = 0``, is written with
``h = k(t) x`` and ``k(t) = t^(-r/2) e^(t/2)`` (so that ``2k' + (r/t) k = k``) as the
first-order system in the state ``[x, m]``:

NesterovNODE:   h = k(t) x,      x' = m,      m' = -m - f(h, t) - ξ h
GNesterovNODE:  h = σ(k(t)) x,   x' = σ(m),   m' = -m - σ(f(h, t)) - ξ h

The learned network f replaces ``f̃(h, t) = (1/4 - r(r-2)/(4t²)) x + ∇F(h)/k(t)``. ξ >= 0 is
fixed (0 by default for NesterovNODE, which gives the paper's table exactly) or learnable.
State ``[B, 2, *D]`` = [x, m]; the readout is h, not x. t = 0 is singular: 0 < t0 < T.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Constant, Dynamics, Network, broadcast_time, position, velocity
from .heavyball import default_sigma
from .layout import activation_layout, constant_layout


def nesterov_k(t: torch.Tensor | float, r: float) -> torch.Tensor:
    """k(t) = t^(-r/2) e^(t/2), computed as exp(t/2 - (r/2) log t) (t > 0)."""
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return torch.exp(0.5 * t - 0.5 * r * torch.log(t))


def nesterov_k_dot(t: torch.Tensor | float, r: float) -> torch.Tensor:
    """k'(t) = k(t) (1/2 - r/(2t))."""
    t = torch.as_tensor(t)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return nesterov_k(t, r) * (0.5 - 0.5 * r / t)


def nesterov_time_range(r: float, dtype: torch.dtype) -> tuple[float, float]:
    """``(t_min, t_max)``: the times where k(t) = t^(-r/2) e^(t/2) neither overflows nor
    underflows to 0 in ``dtype`` (log k(t) = t/2 − (r/2) ln t at least 1 inside the
    logarithms of the dtype's largest and smallest normal numbers), by bisection in ln t."""
    info = torch.finfo(dtype)
    # a margin of e: k itself is computed in ``dtype``, which rounds near the edges
    top, bottom = math.log(info.max) - 1.0, math.log(info.tiny) + 1.0

    def log_k(u: float) -> float:  # u = ln t
        return 0.5 * math.exp(u) - 0.5 * r * u

    def edge(inside: float, outside: float) -> float:
        """The boundary (in ln t) between ``inside`` the range and ``outside`` it."""
        if bottom < log_k(outside) < top:
            return outside
        for _ in range(100):
            mid = 0.5 * (inside + outside)
            if bottom < log_k(mid) < top:
                inside = mid
            else:
                outside = mid
        return inside

    # ln t from the dtype's smallest normal number to beyond the overflow of e^(t/2)
    u_min, u_max = math.log(info.tiny), math.log(4.0 * (top + r) + 1.0)
    return math.exp(edge(math.log(r), u_min)), math.exp(edge(math.log(r), u_max))


class NesterovNODE(Dynamics):
    """Nesterov neural ODE: ``h = k(t) x, x' = m, m' = -m - f(h, t) - ξ h``.

    Args:
        f: the network, ``f(t, h)`` returning a tensor shaped like h.
        r: the Nesterov factor (3 is Nesterov's constant; the paper also uses 5 and 10).
        xi: ξ >= 0, 0 by default (the paper's equation); ``learn_xi`` makes it a parameter.
    """

    second_order = True
    needs_positive_time = True

    def __init__(self, f: Network, r: float = 3.0, xi: float = 0.0, learn_xi: bool = False):
        super().__init__(f)
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"the Nesterov factor r must be a positive number, got r = {r}")
        self.r = float(r)
        self.xi = Constant(xi, learnable=learn_xi)

    # k(t) or σ(k(t)): the factor between the solver's x and the model's h.
    def factor(self, t: torch.Tensor | float) -> torch.Tensor:
        """The readout factor k(t) = t^(-r/2) e^(t/2)."""
        return nesterov_k(t, self.r)

    def initial_state(self, t0, h0: torch.Tensor, v0: torch.Tensor | None = None):
        """``[x0, m0]`` with ``x0 = h0 / k(t0)`` (so that the readout at t0 is h0) and
        ``m0 = v0`` (= x'(t0); zeros by default). Raises where the factor at t0 is 0 or
        overflows h0's dtype (then x0 would be 0 or Inf and the readout NaN), naming the
        start times the dtype allows for this r."""
        self.check_time(t0)
        k0 = self.factor(torch.as_tensor(t0, dtype=h0.dtype, device=h0.device))
        if not (bool(torch.isfinite(k0)) and bool(k0 != 0)):
            lo, hi = nesterov_time_range(self.r, h0.dtype)
            dtype = str(h0.dtype).replace("torch.", "")
            raise ValueError(
                f"{type(self).__name__}: the factor k(t0) = t0^(-r/2) e^(t0/2) is "
                f"{float(k0):g} in {dtype} at t0 = {float(t0):g} for r = {self.r:g}, so "
                f"x0 = h0 / k(t0) cannot hold h0; in {dtype} start at t0 between {lo:.3g} "
                f"and {hi:.4g} (the paper starts at t0 = 1)"
            )
        return super().initial_state(t0, h0 / k0, v0)

    def readout(self, t, state: torch.Tensor) -> torch.Tensor:
        """h = k(t) x; ``t`` scalar with state ``[B, 2, *D]`` or ``[T]`` with ``[T, B, 2, *D]``."""
        t = torch.as_tensor(t, dtype=state.dtype, device=state.device)
        time_axis = 1 if t.dim() == 1 else 0
        x = position(state, time_axis)
        k = broadcast_time(self.factor(t), x, x.dim() - time_axis)
        return k * x

    def _h(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.factor(t).to(x.dtype) * x

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x, m = position(state), velocity(state)
        h = self._h(t, x)
        dm = -m - self.call_f(t, h) - self.xi() * h
        return torch.stack([m, dm], dim=1)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``): r and ξ."""
        return {"model": "nesterovnode", "r": self.r, "xi": constant_layout(self.xi, offsets)}

    def extra_repr(self) -> str:
        return f"r={self.r}"


class GNesterovNODE(NesterovNODE):
    """Generalised Nesterov neural ODE:
    ``h = σ(k(t)) x, x' = σ(m), m' = -m - σ(f(h, t)) - ξ h``.

    σ bounds the factor k(t), which grows like e^(t/2) over long spans; the default σ is
    Hardtanh(-5, 5).
    """

    def __init__(
        self,
        f: Network,
        r: float = 3.0,
        xi: float = 0.0,
        learn_xi: bool = False,
        sigma: nn.Module | None = None,
    ):
        super().__init__(f, r=r, xi=xi, learn_xi=learn_xi)
        self.sigma = default_sigma() if sigma is None else sigma

    def factor(self, t: torch.Tensor | float) -> torch.Tensor:
        """The readout factor σ(k(t))."""
        return self.sigma(nesterov_k(t, self.r))

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x, m = position(state), velocity(state)
        h = self._h(t, x)
        dm = -m - self.sigma(self.call_f(t, h)) - self.xi() * h
        return torch.stack([self.sigma(m), dm], dim=1)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``): r, ξ and σ."""
        parts = NesterovNODE.layout_parts(self, offsets)
        return {**parts, "model": "gnesterovnode", "sigma": activation_layout(self.sigma)}
