"""Network pieces shared by the tasks' builders."""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], activation, final: nn.Module | None = None):
    """``fc -> act -> fc -> act -> ... -> fc`` (then ``final`` if given); ``activation``
    is a factory called once per hidden layer (a class or a lambda)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class TimeConcat(nn.Module):
    """``f(t, h) = net([h, t])``: the network reads t as one more input feature."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = t.to(h.dtype).expand(h.shape[0], 1)
        return self.net(torch.cat([h, tt], dim=1))
