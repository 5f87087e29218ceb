"""Heavy-ball models (Xia et al., 2021): HBNODE and its generalised form GHBNODE.

HBNODE:   h' = m,      m' = -γ m + f(h, t) - ξ h
GHBNODE:  h' = σ(m),   m' = -γ m + σ(f(h, t)) - ξ h

with γ = sigmoid(θ_γ) learnable, σ a bounded activation and ξ >= 0 fixed or learnable
(ξ = 0 for HBNODE by default, the paper's equation; the paper's MNIST code carries a
learnable ξ in HBNODE too, which its Table 1 counts).
State ``[B, 2, *D]`` = [h, m], readout h.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Constant, Dynamics, Network, position, velocity
from .layout import activation_layout, constant_layout, scalar_layout


def default_sigma() -> nn.Module:
    """The bounded activation of the generalised models: Hardtanh(-5, 5)."""
    return nn.Hardtanh(-5.0, 5.0)


class HBNODE(Dynamics):
    """Heavy-ball neural ODE: ``h' = m, m' = -γ m + f(h, t) - ξ h``, ``γ = sigmoid(θ_γ)``;
    ξ = 0 (no parameter) unless given."""

    second_order = True

    def __init__(
        self,
        f: Network,
        gamma_logit: float = -3.0,
        learn_gamma: bool = True,
        xi: float = 0.0,
        learn_xi: bool = False,
    ):
        super().__init__(f)
        theta = torch.tensor(float(gamma_logit))
        if learn_gamma:
            self.gamma_logit = nn.Parameter(theta)
        else:
            self.register_buffer("gamma_logit", theta)
        self.xi = Constant(xi, learnable=learn_xi)

    @property
    def gamma(self) -> torch.Tensor:
        """The damping γ = sigmoid(θ_γ) in (0, 1)."""
        return torch.sigmoid(self.gamma_logit)

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, m = position(state), velocity(state)
        dm = -self.gamma * m + self.call_f(t, h) - self.xi() * h
        return torch.stack([m, dm], dim=1)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``): γ and ξ."""
        return {
            "model": "hbnode",
            "gamma": scalar_layout(self.gamma_logit, offsets, "sigmoid"),
            "xi": constant_layout(self.xi, offsets),
        }


class GHBNODE(HBNODE):
    """Generalised heavy-ball neural ODE:
    ``h' = σ(m), m' = -γ m + σ(f(h, t)) - ξ h``."""

    def __init__(
        self,
        f: Network,
        gamma_logit: float = -3.0,
        learn_gamma: bool = True,
        xi: float = 0.0,
        learn_xi: bool = False,
        sigma: nn.Module | None = None,
    ):
        super().__init__(
            f, gamma_logit=gamma_logit, learn_gamma=learn_gamma, xi=xi, learn_xi=learn_xi
        )
        self.sigma = default_sigma() if sigma is None else sigma

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, m = position(state), velocity(state)
        dh = self.sigma(m)
        dm = -self.gamma * m + self.sigma(self.call_f(t, h)) - self.xi() * h
        return torch.stack([dh, dm], dim=1)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``): γ, ξ and σ."""
        parts = HBNODE.layout_parts(self, offsets)
        return {**parts, "model": "ghbnode", "sigma": activation_layout(self.sigma)}
