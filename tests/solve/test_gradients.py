"""Gradients of every model: backprop, adjoint and adjoint-seminorm agree with each other
and with central finite differences (float64, tight tolerances)."""

from __future__ import annotations

import pytest
import torch

import nesterovnode as nno
from helpers import MODEL_NAMES, inputs, make_dynamics

TOL = dict(rtol=1e-11, atol=1e-11)
REL = 1e-5


def scalar_loss(dyn, h0, v0, sensitivity="backprop"):
    ts = torch.tensor([1.0, 1.5, 2.0])
    y0 = dyn.initial_state(ts[0], h0, v0)
    sol = nno.solve(dyn, y0, ts, sensitivity=sensitivity, **TOL)
    h = dyn.readout(ts, sol.ys)
    w = torch.linspace(-1.0, 1.0, h[1:].numel()).reshape(h[1:].shape)
    return (w * h[1:]).sum() + (h[-1] ** 2).sum(), sol.stats


def rel_err(a, b):
    return float((a - b).norm() / max(b.norm(), 1e-12))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_agree_across_sensitivities_and_with_finite_differences(name, float64):
    dyn = make_dynamics(name)
    h0, v0 = inputs(name)
    leaves = [p for p in dyn.parameters()] + [x for x in (h0, v0) if x is not None]

    grads = {}
    for sens in ("backprop", "adjoint", "adjoint-seminorm"):
        loss, stats = scalar_loss(dyn, h0, v0, sens)
        grads[sens] = torch.autograd.grad(loss, leaves)
        if sens != "backprop":
            assert stats.nfe_backward > 0
    for sens in ("adjoint", "adjoint-seminorm"):
        for i, (a, b) in enumerate(zip(grads[sens], grads["backprop"])):
            assert rel_err(a, b) < REL, f"{name} {sens} leaf {i}: {rel_err(a, b):.2e}"

    # Directional central differences along random directions through all leaves at once.
    g = torch.Generator().manual_seed(2)
    eps = 1e-5
    for _ in range(2):
        dirs = [torch.randn(x.shape, generator=g) for x in leaves]
        analytic = sum((gr * d).sum() for gr, d in zip(grads["adjoint"], dirs))
        with torch.no_grad():
            for x, d in zip(leaves, dirs):
                x.add_(eps * d)
            plus, _ = scalar_loss(dyn, h0, v0)
            for x, d in zip(leaves, dirs):
                x.sub_(2 * eps * d)
            minus, _ = scalar_loss(dyn, h0, v0)
            for x, d in zip(leaves, dirs):
                x.add_(eps * d)
        fd = (plus - minus) / (2 * eps)
        assert abs(float(analytic - fd)) < REL * max(abs(float(fd)), 1e-3), (
            f"{name}: adjoint {float(analytic):.10g} vs finite differences {float(fd):.10g}"
        )


def test_the_seminorm_leaves_the_parameter_channels_out_of_the_error_norm(
    float64, backward_attempts
):
    """Both norms are one RMS (adjoint.py): over [y, a, g], or over [y, a] only. With the
    seminorm the backward steps do not depend on g at all: they are the same, attempt by
    attempt, whether the parameters are trained (g present) or frozen (no g); the full
    norm's are not."""
    attempts = backward_attempts
    dyn = make_dynamics("nesterovnode", n=3)
    h0, v0 = inputs("nesterovnode")
    steps, nfe = {}, {}
    for trained in (True, False):
        for p in dyn.parameters():
            p.requires_grad_(trained)
        for sens in ("adjoint", "adjoint-seminorm"):
            dyn.zero_grad()
            attempts.clear()
            loss, stats = scalar_loss(dyn, h0, v0, sens)
            loss.backward()
            steps[trained, sens], nfe[trained, sens] = list(attempts), stats.nfe_backward
    assert steps[True, "adjoint-seminorm"] == steps[False, "adjoint-seminorm"]
    assert nfe[True, "adjoint-seminorm"] == nfe[False, "adjoint-seminorm"] > 100
    full, without_g = steps[True, "adjoint"], steps[False, "adjoint"]
    assert len(full) > 10 and full != without_g
