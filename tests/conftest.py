"""Shared fixtures: float64 for numerical comparisons, small stand-in networks and
helper fields (counting, recording, linear, blowing up) used by several test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn


def shared_data_dir() -> Path | None:
    """The folder of the real data sets (the tests read its mnist/) when present, else None.

    NESTEROVNODE_DATA names the folder; the default is ../shared/data beside the checkout.
    """
    env = os.environ.get("NESTEROVNODE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def float64():
    """Run a test in float64 (numbers compared to 1e-7 and tighter need it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def backward_attempts(monkeypatch):
    """The (t, h) of every step attempt of the backward (adjoint) solves in the test, in
    order, as the engines report them to their ``Recorder``."""
    from nesterovnode.solve.stats import Recorder

    attempts = []
    real_attempt = Recorder.attempt

    def attempt(self, t, h):
        if self.backward:
            attempts.append((float(t), float(h)))
        return real_attempt(self, t, h)

    monkeypatch.setattr(Recorder, "attempt", attempt)
    return attempts


class TinyField(nn.Module):
    """f(t, h) = W2 tanh(W1 h + b1 + c t) + b2: a small smooth network with t as input."""

    def __init__(self, n_in: int, n_out: int | None = None, hidden: int = 6, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n_out = n_in if n_out is None else n_out
        self.w1 = nn.Parameter(0.5 * torch.randn(hidden, n_in, generator=g))
        self.b1 = nn.Parameter(0.1 * torch.randn(hidden, generator=g))
        self.c = nn.Parameter(0.1 * torch.randn(hidden, generator=g))
        self.w2 = nn.Parameter(0.5 * torch.randn(n_out, hidden, generator=g))
        self.b2 = nn.Parameter(0.1 * torch.randn(n_out, generator=g))

    def forward(self, t, h):
        return torch.tanh(h @ self.w1.T + self.b1 + self.c * t) @ self.w2.T + self.b2


def make_dynamics(name: str, n: int = 3, seed: int = 0, **kwargs):
    """One of the seven models with a TinyField network on n features."""
    import nesterovnode as nn_

    if name == "node":
        return nn_.NODE(TinyField(n, seed=seed))
    if name == "anode":
        return nn_.ANODE(TinyField(n + 2, seed=seed), augment_dim=2)
    if name == "sonode":
        return nn_.SONODE(TinyField(2 * n, n, seed=seed))
    if name == "hbnode":
        return nn_.HBNODE(TinyField(n, seed=seed), gamma_logit=0.3)
    if name == "ghbnode":
        return nn_.GHBNODE(
            TinyField(n, seed=seed), gamma_logit=0.3, xi=0.7, learn_xi=True, **kwargs
        )
    if name == "nesterovnode":
        return nn_.NesterovNODE(TinyField(n, seed=seed), r=3.0, **kwargs)
    if name == "gnesterovnode":
        return nn_.GNesterovNODE(
            TinyField(n, seed=seed), r=3.0, xi=0.7, learn_xi=True, sigma=torch.nn.Tanh(), **kwargs
        )
    raise ValueError(name)


MODEL_NAMES = ("node", "anode", "sonode", "hbnode", "ghbnode", "nesterovnode", "gnesterovnode")


def inputs(name):
    """Seeded (h0, v0) of shape (2, 3) that require grad; v0 is None for NODE and ANODE."""
    g = torch.Generator().manual_seed(1)
    h0 = torch.randn(2, 3, generator=g).requires_grad_()
    v0 = (
        None
        if name in ("node", "anode")
        else (0.5 * torch.randn(2, 3, generator=g)).requires_grad_()
    )
    return h0, v0


class CallCounter(torch.nn.Module):
    """Wraps a network and counts its own calls, as a user would."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, t, h):
        self.calls += 1
        return self.net(t, h)


class TimeRecorder(torch.nn.Module):
    """Wraps a network and records the time of every call in ``times``."""

    def __init__(self, net):
        super().__init__()
        self.net, self.times = net, []

    def forward(self, t, h):
        self.times.append(float(t.detach()))
        return self.net(t, h)


class Linear(nn.Module):
    """y' = y Aᵀ for a batch of row vectors (each sample its own copy of the system)."""

    def __init__(self, a):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64))

    def forward(self, t, y):
        return y @ self.a.T


class BlowUp(nn.Module):
    """y' = y²: y(t) = 1/(1 - t) for y0 = 1, infinite at t = 1."""

    def forward(self, t, y):
        return y**2
