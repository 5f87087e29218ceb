"""The wrappers that make a network a field f(t, h): ``Autonomous`` (a network of h alone)
and ``TimeConcat`` (t read as one more input feature). The Julia layout
(``layout.py``) recognises both."""

from __future__ import annotations

import torch
from torch import nn


class Autonomous(nn.Module):
    """``f(t, h) = net(h)`` for a network that does not read t (e.g. ``nn.Sequential``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class TimeConcat(nn.Module):
    """``f(t, h) = net([h, t])``: the network reads t as one more input feature."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = t.to(h.dtype).expand(h.shape[0], 1)
        return self.net(torch.cat([h, tt], dim=1))
