"""SONODE (Norcliffe et al., 2020): the second-order ODE h'' = f(h, h', t) as the system

    h' = v,    v' = f([h, v], t),

with state ``[B, 2, *D]`` = [h, v] and readout h. The network reads the concatenation
[h, v] along the feature axis (2n inputs, n outputs).
"""

from __future__ import annotations

import torch

from .base import Dynamics, position, velocity


class SONODE(Dynamics):
    """Second-order neural ODE; ``f(t, [h, v])`` maps ``[B, 2n, ...]`` to ``[B, n, ...]``."""

    second_order = True

    def layout_parts(self, offsets: dict[int, int]) -> dict:
        """This model's part of the Julia layout (``layout.py``)."""
        return {"model": "sonode"}

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, v = position(state), velocity(state)
        # [B, 2, n, ...] -> [B, 2n, ...] is exactly cat([h, v], dim=1), without a copy.
        hv = state.flatten(1, 2)
        dv = self.call_f(t, hv, out_shape=h.shape)
        return torch.stack([v, dv], dim=1)
