"""Network pieces shared by the tasks' builders (``TimeConcat`` lives with the dynamics:
the Julia layout recognises it)."""

from __future__ import annotations

from torch import nn

from ..dynamics.networks import TimeConcat

__all__ = ["TimeConcat", "mlp"]


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
