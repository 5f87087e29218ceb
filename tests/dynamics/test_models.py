"""The seven models: state layout, readout, equations as MATH.md's table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nesterovnode as nno
from helpers import MODEL_NAMES, TinyField, make_dynamics, nesterov_closed_form_error
from nesterovnode.dynamics import nesterov_k, nesterov_k_dot


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_readout_at_t0_returns_h0_for_every_model(name, float64):
    dyn = make_dynamics(name)
    h0 = torch.randn(4, 3)
    v0 = None if name in ("node", "anode") else torch.randn(4, 3)
    ts = torch.tensor([1.0, 1.5, 2.0])
    y0 = dyn.initial_state(ts[0], h0, v0)
    sol = nno.solve(dyn, y0, ts, rtol=1e-8, atol=1e-8)
    h = dyn.readout(ts, sol.ys)
    expected = torch.cat([h0, torch.zeros(4, 2)], dim=1) if name == "anode" else h0
    torch.testing.assert_close(h[0], expected, rtol=1e-14, atol=1e-14)
    assert h.shape == (3, *expected.shape)
    # A single time with a single state reads out the same way.
    torch.testing.assert_close(dyn.readout(ts[0], y0), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["sonode", "hbnode", "ghbnode", "nesterovnode", "gnesterovnode"])
def test_momentum_state_has_an_explicit_axis(name):
    dyn = make_dynamics(name)
    y0 = dyn.initial_state(1.0, torch.randn(5, 3), torch.randn(5, 3))
    assert y0.shape == (5, 2, 3)
    assert dyn(torch.tensor(1.0), y0).shape == (5, 2, 3)


def test_vector_fields_follow_the_equations(float64):
    """Evaluate each vector field at a random state and compare with MATH.md's formulas."""
    t = torch.tensor(1.3)
    h, v = torch.randn(4, 3), torch.randn(4, 3)
    state = torch.stack([h, v], dim=1)

    dyn = make_dynamics("hbnode")
    g = torch.sigmoid(dyn.gamma_logit)
    torch.testing.assert_close(dyn(t, state), torch.stack([v, -g * v + dyn.f(t, h)], 1))

    dyn = make_dynamics("ghbnode")
    s, xi = dyn.sigma, dyn.xi()
    torch.testing.assert_close(xi, torch.tensor(0.7))
    expected = torch.stack([s(v), -dyn.gamma * v + s(dyn.f(t, h)) - xi * h], 1)
    torch.testing.assert_close(dyn(t, state), expected)

    dyn = make_dynamics("sonode")
    torch.testing.assert_close(dyn(t, state), torch.stack([v, dyn.f(t, torch.cat([h, v], 1))], 1))

    # Nesterov: the state is [x, m] and the network sees h = k(t) x.
    x, m = h, v
    dyn = make_dynamics("nesterovnode")
    hk = nesterov_k(t, 3.0) * x
    torch.testing.assert_close(dyn(t, state), torch.stack([m, -m - dyn.f(t, hk)], 1))

    dyn = make_dynamics("gnesterovnode")
    s, xi = dyn.sigma, dyn.xi()
    hs = s(nesterov_k(t, 3.0)) * x
    expected = torch.stack([s(m), -m - s(dyn.f(t, hs)) - xi * hs], 1)
    torch.testing.assert_close(dyn(t, state), expected)


def test_gnesterov_bounds_the_growing_factor():
    # k(t) ~ e^(t/2) blows up over long spans (here t = 63); σ(k) stays bounded.
    dyn = nno.GNesterovNODE(lambda t, h: h, r=3.0)
    assert float(nesterov_k(torch.tensor(63.0), 3.0)) > 1e10
    assert float(dyn.factor(torch.tensor(63.0))) == pytest.approx(5.0)


def test_learnable_constants_count_as_parameters():
    f = torch.nn.Linear(3, 3)
    assert sum(p.numel() for p in nno.HBNODE(lambda t, h: f(h)).parameters()) == 1  # γ
    assert sum(p.numel() for p in nno.NesterovNODE(f).parameters()) == 12
    assert sum(p.numel() for p in nno.NesterovNODE(f, learn_xi=True, xi=1.0).parameters()) == 13
    dyn = nno.GNesterovNODE(f, xi=1.5, learn_xi=True)
    assert float(dyn.xi().detach()) == pytest.approx(1.5)


def test_ode_block_returns_h_at_T_and_keeps_stats():
    dyn = make_dynamics("nesterovnode")
    block = nno.ODEBlock(dyn, ts=(1.0, 2.0), rtol=1e-6, atol=1e-6)
    h0 = torch.randn(4, 3)
    hT = block(h0, torch.zeros(4, 3))
    assert hT.shape == (4, 3)
    assert block.stats.nfe_forward > 0
    hT.sum().backward()
    assert block.stats.nfe_backward > 0
    traj = nno.ODEBlock(dyn, ts=torch.linspace(1, 2, 5), return_trajectory=True)(h0)
    assert traj.shape == (5, 4, 3)
    torch.testing.assert_close(traj[-1], hT.detach(), rtol=1e-4, atol=1e-4)


def test_hbnode_takes_an_optional_xi_term(float64):
    t = torch.tensor(1.3)
    h, m = torch.randn(4, 3), torch.randn(4, 3)
    dyn = nno.HBNODE(TinyField(3), gamma_logit=0.3, xi=0.4, learn_xi=True)
    expected = torch.stack([m, -dyn.gamma * m + dyn.f(t, h) - 0.4 * h], 1)
    torch.testing.assert_close(dyn(t, torch.stack([h, m], 1)), expected)
    n_f = sum(p.numel() for p in dyn.f.parameters())
    assert sum(p.numel() for p in dyn.parameters()) == n_f + 2  # γ and ξ


def test_one_registry_names_builds_and_lists_each_models_options():
    from nesterovnode.dynamics import MODEL_NAMES as registry_names
    from nesterovnode.dynamics import MODELS, make_dynamics
    from nesterovnode.tasks import MODEL_NAMES as task_names
    from nesterovnode.tasks import check_model_name

    assert registry_names == task_names == MODEL_NAMES  # the paper's order
    assert check_model_name("GNesterovNODE") == "gnesterovnode"
    with pytest.raises(ValueError, match="valid models: node, anode"):
        check_model_name("transformer")
    assert MODELS["anode"].options == ("augment_dim",)
    assert set(MODELS["hbnode"].options) == {"xi", "learn_xi"}
    assert set(MODELS["ghbnode"].options) == {"xi", "learn_xi", "sigma"}
    assert set(MODELS["nesterovnode"].options) == {"r", "xi", "learn_xi"}
    assert set(MODELS["gnesterovnode"].options) == {"r", "xi", "learn_xi", "sigma"}
    # Options of other models are ignored, so one set of options serves every model.
    for name in MODEL_NAMES:
        dyn = make_dynamics(name, TinyField(3), augment_dim=0, r=2.0, xi=0.5, learn_xi=False)
        assert isinstance(dyn, MODELS[name].cls)
    assert make_dynamics("nesterovnode", TinyField(3), r=2.0).r == 2.0
    with pytest.raises(TypeError, match="unknown model options"):
        make_dynamics("node", TinyField(3), gamma=1.0)


@pytest.mark.parametrize("r", [5.0, 10.0])
def test_nesterov_readout_matches_the_bessel_closed_form_for_other_factors(r):
    """The closed form of MATH.md for the paper's other factors r (the contract suite checks
    r = 3 on every engine and solver)."""
    err = nesterov_closed_form_error(r, rtol=1e-10, atol=1e-12)
    assert err < 1e-7, f"r={r}: max |readout - closed form| = {err:.3e}"


def test_nesterov_factor_satisfies_its_defining_ode():
    # 2k' + (r/t) k = k is what turns the Nesterov ODE into x'' + x' + f̃ = 0.
    t = torch.linspace(0.5, 20.0, 50, dtype=torch.float64)
    for r in (3.0, 5.0, 10.0):
        k, kd = nesterov_k(t, r), nesterov_k_dot(t, r)
        torch.testing.assert_close(2 * kd + r / t * k, k, rtol=1e-12, atol=0)
        assert torch.allclose(
            nesterov_k(torch.tensor(2.0), r), torch.tensor(2.0 ** (-r / 2) * np.e)
        )
