"""What several test modules share: small stand-in networks and helper fields (counting,
recording, linear, blowing up), the seven models on them, the Bessel closed form of
MATH.md, and where the repository and the real data sets are. Fixtures are in
conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from scipy.special import gamma, jv
from torch import nn

import nesterovnode as nno
from nesterovnode.dynamics import nesterov_k, nesterov_k_dot

#: the repository's root (benchmarks/, experiments/, docs/, julia/ beside tests/)
REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The folder of the real data sets (the tests read its mnist/) when present, else None.

    NESTEROVNODE_DATA names the folder; the default is ../shared/data beside the checkout.
    """
    env = os.environ.get("NESTEROVNODE_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


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
    if name == "node":
        return nno.NODE(TinyField(n, seed=seed))
    if name == "anode":
        return nno.ANODE(TinyField(n + 2, seed=seed), augment_dim=2)
    if name == "sonode":
        return nno.SONODE(TinyField(2 * n, n, seed=seed))
    if name == "hbnode":
        return nno.HBNODE(TinyField(n, seed=seed), gamma_logit=0.3)
    if name == "ghbnode":
        return nno.GHBNODE(
            TinyField(n, seed=seed), gamma_logit=0.3, xi=0.7, learn_xi=True, **kwargs
        )
    if name == "nesterovnode":
        return nno.NesterovNODE(TinyField(n, seed=seed), r=3.0, **kwargs)
    if name == "gnesterovnode":
        return nno.GNesterovNODE(
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


# -- the closed form of MATH.md ------------------------------------------------------------
def exact_h(t, r):
    nu = (r - 1) / 2
    return gamma(nu + 1) * (2 / t) ** nu * jv(nu, t)


def exact_h_dot(t, r):
    nu = (r - 1) / 2
    return -gamma(nu + 1) * 2**nu * t ** (-nu) * jv(nu + 1, t)


def exact_f_tilde(r):
    """f̃(h, t) = (1/4 - r(r-2)/(4t²)) x + ∇F(h)/k(t), with x = h/k and ∇F(h) = h."""

    def f(t, h):
        k = nesterov_k(t, r)
        return (0.25 - r * (r - 2) / (4 * t**2)) * h / k + h / k

    return f


def nesterov_closed_form_error(r: float, solver: str = "DP5", **kw) -> float:
    dyn = nno.NesterovNODE(exact_f_tilde(r), r=r)
    t0 = torch.tensor(1.0, dtype=torch.float64)
    h0 = torch.tensor([[exact_h(1.0, r)]], dtype=torch.float64)
    k0, kd0 = nesterov_k(t0, r), nesterov_k_dot(t0, r)
    m0 = (exact_h_dot(1.0, r) * k0 - exact_h(1.0, r) * kd0) / k0**2
    y0 = dyn.initial_state(t0, h0, m0.reshape(1, 1))
    ts = torch.linspace(1.0, 10.0, 91, dtype=torch.float64)
    sol = nno.solve(dyn, y0, ts, solver=solver, **kw)
    h = dyn.readout(ts, sol.ys)[:, 0, 0].detach().numpy()
    return float(np.max(np.abs(h - exact_h(ts.numpy(), r))))


# -- comparing results apart from their timings --------------------------------------------
#: the fields of results and logs that are timings (they differ from run to run)
TIMINGS = {"seconds", "samples_per_second", "compile_seconds", "s_per_epoch"}


def without_timings(x):
    """``x`` (results.json, log records: dicts and lists) without the ``TIMINGS`` fields."""
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if k not in TIMINGS}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def saved_figures(monkeypatch, module) -> dict:
    """Record each figure ``module.save`` writes as ``{file name: (figure, title)}``; the
    file is still written."""
    figures = {}
    real = module.save

    def save(fig, path, title=None):
        figures[path.name] = (fig, title)
        return real(fig, path, title)

    monkeypatch.setattr(module, "save", save)
    return figures
