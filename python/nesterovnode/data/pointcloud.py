"""The paper's point-cloud data set (nested circles in 2-D).

40 points drawn uniformly (by area) from the disk ‖x‖ < 0.5 with label -1 and 80 from the
annulus 0.85 < ‖x‖ < 1 with label +1. A first-order ODE flow cannot map one nested class
outside the other in 2-D (trajectories do not cross); augmented and momentum models can.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset


def sample_annulus(n: int, r_min: float, r_max: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform by area in ``r_min < ‖x‖ < r_max`` (2-D)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    radius = torch.sqrt(r_min**2 + u * (r_max**2 - r_min**2))
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


def point_cloud(
    seed: int = 0,
    n_inner: int = 40,
    n_outer: int = 80,
    inner_radius: float = 0.5,
    outer_radii: tuple[float, float] = (0.85, 1.0),
    dtype: torch.dtype = torch.float32,
) -> TensorDataset:
    """The nested-circles data set: ``(x [N, 2], y [N])`` with y = -1 inside, +1 outside."""
    g = torch.Generator().manual_seed(seed)
    inner = sample_annulus(n_inner, 0.0, inner_radius, g)
    outer = sample_annulus(n_outer, outer_radii[0], outer_radii[1], g)
    x = torch.cat([inner, outer]).to(dtype)
    y = torch.cat([-torch.ones(n_inner), torch.ones(n_outer)]).to(dtype)
    return TensorDataset(x, y)
