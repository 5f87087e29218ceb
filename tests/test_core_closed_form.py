"""NesterovNODE against the closed-form solution of MATH.md.

For ∇F(h) = h, h(0) = 1, h'(0) = 0 the Nesterov ODE h'' + (r/t) h' + h = 0 has
h(t) = Γ(ν+1) (2/t)^ν J_ν(t), ν = (r-1)/2. With the exact f̃ the NesterovNODE state
[x, m] and readout k(t) x must reproduce it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import gamma, jv

import nesterovnode as nn_
from nesterovnode.dynamics import nesterov_k, nesterov_k_dot


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
    dyn = nn_.NesterovNODE(exact_f_tilde(r), r=r)
    t0 = torch.tensor(1.0, dtype=torch.float64)
    h0 = torch.tensor([[exact_h(1.0, r)]], dtype=torch.float64)
    k0, kd0 = nesterov_k(t0, r), nesterov_k_dot(t0, r)
    m0 = (exact_h_dot(1.0, r) * k0 - exact_h(1.0, r) * kd0) / k0**2
    y0 = dyn.initial_state(t0, h0, m0.reshape(1, 1))
    ts = torch.linspace(1.0, 10.0, 91, dtype=torch.float64)
    sol = nn_.solve(dyn, y0, ts, solver=solver, **kw)
    h = dyn.readout(ts, sol.ys)[:, 0, 0].detach().numpy()
    return float(np.max(np.abs(h - exact_h(ts.numpy(), r))))


@pytest.mark.parametrize("r", [3.0, 5.0, 10.0])
def test_nesterov_readout_matches_bessel_closed_form(r):
    err = nesterov_closed_form_error(r, rtol=1e-10, atol=1e-12)
    assert err < 1e-7, f"r={r}: max |readout - closed form| = {err:.3e}"


def test_closed_form_error_shrinks_with_tolerance():
    loose = nesterov_closed_form_error(3.0, rtol=1e-5, atol=1e-7)
    tight = nesterov_closed_form_error(3.0, rtol=1e-10, atol=1e-12)
    assert tight < loose / 100


def test_nesterov_factor_satisfies_its_defining_ode():
    # 2k' + (r/t) k = k is what turns the Nesterov ODE into x'' + x' + f̃ = 0.
    t = torch.linspace(0.5, 20.0, 50, dtype=torch.float64)
    for r in (3.0, 5.0, 10.0):
        k, kd = nesterov_k(t, r), nesterov_k_dot(t, r)
        torch.testing.assert_close(2 * kd + r / t * k, k, rtol=1e-12, atol=0)
        assert torch.allclose(
            nesterov_k(torch.tensor(2.0), r), torch.tensor(2.0 ** (-r / 2) * np.e)
        )
