"""First-order models: NODE and ANODE.

NODE (Chen et al., 2018):   h' = f(h, t),            state h, readout h.
ANODE (Dupont et al., 2019): [h, a]' = f([h, a], t), a: p zero channels appended to h at t0,
                             readout [h, a] (the output layer sees the augmented state).
"""

from __future__ import annotations

import torch

from .base import Dynamics, Network


class NODE(Dynamics):
    """Neural ODE, h' = f(h, t). State ``[B, *D]``."""

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.call_f(t, h)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``)."""
        return {"model": "node"}


class ANODE(Dynamics):
    """Augmented neural ODE: the state is h with ``augment_dim`` zero channels appended
    along axis 1 at t0, and ``[h, a]' = f([h, a], t)``. State ``[B, n + p, ...]``."""

    def __init__(self, f: Network, augment_dim: int):
        super().__init__(f)
        if augment_dim < 0:
            raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
        self.augment_dim = int(augment_dim)

    def initial_state(self, t0, h0: torch.Tensor, v0: torch.Tensor | None = None):
        """``[h0, 0]``: ``augment_dim`` zero channels appended along axis 1."""
        h0 = super().initial_state(t0, h0, v0)
        pad = h0.new_zeros((h0.shape[0], self.augment_dim, *h0.shape[2:]))
        return torch.cat([h0, pad], dim=1)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.call_f(t, z)

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``)."""
        return {"model": "anode"}

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}"
