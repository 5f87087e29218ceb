"""The bridge to external engines and what is particular to the SciPy engine (the engine
contract itself — gradients, NFE, the interval, blow-ups — is tests/engines)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from helpers import BlowUp
from nesterovnode.solve import (
    EngineNotInstalledError,
    ExternalEngine,
    ODEProblem,
    SolverError,
    register_engine,
    resolve,
    solve,
)
from nesterovnode.solve.engines.julia import INSTALL_COMMAND, JuliaEngine
from nesterovnode.solve.engines.scipy import ScipyEngine
from nesterovnode.solve.registry import ENGINE_ORDER
from nesterovnode.solve.stats import Recorder, SolveStats
from nesterovnode.tasks.pointcloud import build_dynamics

TS = (1.0, 1.5, 2.0)  # Nesterov models need t0 > 0


def small_model(name: str, seed: int = 0):
    """A point-cloud-style dynamics with a tiny network (hidden 8), float64, batch 3."""
    torch.manual_seed(seed)
    n = 3 if name == "anode" else 2
    dyn = build_dynamics(name, n, 8).double()
    h0 = torch.randn(3, 2, dtype=torch.float64)
    if dyn.second_order:
        y0 = dyn.initial_state(TS[0], h0, 0.5 * torch.randn(3, 2, dtype=torch.float64))
    else:
        y0 = dyn.initial_state(TS[0], h0)
    return dyn, y0.detach()


def gradient(dyn, y0, solver, sensitivity="adjoint", tol=1e-10, ts=TS):
    """dL/dy0 and dL/dθ (flattened together) for L = Σ ys² + Σ ys[1], and the stats."""
    y0 = y0.clone().requires_grad_(True)
    dyn.zero_grad()
    sol = solve(
        dyn,
        y0,
        torch.tensor(ts, dtype=y0.dtype),
        solver=solver,
        rtol=tol,
        atol=tol,
        sensitivity=sensitivity,
    )
    loss = (sol.ys**2).sum() + sol.ys[1].sum()
    loss.backward()
    grads = [y0.grad.reshape(-1)] + [
        p.grad.reshape(-1) for p in dyn.parameters() if p.requires_grad
    ]
    return torch.cat(grads), sol


def rel(a, b):
    return float((a - b).norm() / b.norm())


# -- 1. gradients through the bridge equal the torch engine's --------------------------------
def test_seminorm_gives_the_same_gradient_and_leaves_the_parameter_channels_out(
    backward_attempts,
):
    dyn, y0 = small_model("hbnode", seed=1)
    g_adj, sol_adj = gradient(dyn, y0, "scipy:RK45", "adjoint", tol=1e-8)
    full = list(backward_attempts)
    backward_attempts.clear()
    g_semi, sol_semi = gradient(dyn, y0, "scipy:RK45", "adjoint-seminorm", tol=1e-8)
    assert rel(g_semi, g_adj) < 1e-5
    # a different step control: other backward steps (their counts may coincide)
    assert len(full) > 10 and backward_attempts != full

    # SciPy's error norm RMS(err / (atol + rtol |y|)) over the N channels becomes exactly the
    # RMS over the first m (state and adjoint) channels.
    from nesterovnode.solve.engines.scipy import _tolerances

    rng = np.random.default_rng(0)
    n, m = 10, 4
    y, err = rng.standard_normal(n), 1e-6 * rng.standard_normal(n)
    prob = ODEProblem(
        fun=None,
        y0=y,
        t=np.array([1.0, 0.0]),
        solver="DP5",
        method="RK45",
        rtol=1e-6,
        atol=1e-8,
        recorder=Recorder(SolveStats()),
        error_channels=m,
    )
    rtol, atol = _tolerances(prob, "RK45")
    full = np.linalg.norm(err / (atol + rtol * np.abs(y))) / np.sqrt(n)
    semi = np.linalg.norm(err[:m] / (1e-8 + 1e-6 * np.abs(y[:m]))) / np.sqrt(m)
    assert full == pytest.approx(semi, rel=1e-12)


def test_float32_gradients_come_back_in_float32():
    dyn, y0 = small_model("nesterovnode")
    dyn = dyn.float()
    y0 = y0.float().requires_grad_(True)
    sol = solve(dyn, y0, TS, solver="scipy:RK45", rtol=1e-6, atol=1e-6)
    assert sol.ys.dtype == torch.float32
    sol.ys[-1].sum().backward()
    assert y0.grad.dtype == torch.float32
    assert all(p.grad.dtype == torch.float32 for p in dyn.parameters() if p.requires_grad)


def test_solver_names_reach_the_scipy_engine_three_ways():
    dyn, y0 = small_model("node")
    with torch.no_grad():
        a = solve(dyn, y0, TS, solver="scipy:Radau", rtol=1e-9, atol=1e-9)
        b = solve(dyn, y0, TS, solver="RadauIIA5", rtol=1e-9, atol=1e-9)
        c = solve(dyn, y0, TS, solver="RadauIIA5", engine="scipy", rtol=1e-9, atol=1e-9)
    for sol in (a, b, c):
        assert (sol.stats.engine, sol.stats.solver, sol.stats.method) == (
            "scipy",
            "RadauIIA5",
            "Radau",
        )
        assert sol.stats.extra["njev"] >= 1 and sol.stats.extra["nlu"] >= 1
    assert torch.allclose(a.ys, b.ys) and torch.allclose(a.ys, c.ys)
    assert resolve("DP5")[0].name == "rk"  # the library's own engine wins where it offers a name
    assert resolve("torch:dopri5")[0].name == "torchdiffeq"  # the old engine name still works


def test_rejected_runge_kutta_steps_are_counted_exactly():
    # RK45 costs 2 evaluations to start and exactly 6 per step attempt (accepted or not).
    class Sharp(nn.Module):
        def forward(self, t, y):
            return -50.0 * (y - torch.cos(t))

    y0 = torch.ones(1, 1, dtype=torch.float64)
    with torch.no_grad():
        sol = solve(Sharp(), y0, [0.0, 2.0], solver="scipy:RK45", rtol=1e-6, atol=1e-6)
    st = sol.stats
    assert st.steps_rejected > 0
    assert st.nfe_forward == 2 + 6 * (st.steps_accepted + st.steps_rejected)
    assert abs(sum(st.step_sizes) - 2.0) < 1e-12
    assert len(st.rejected_steps) == st.steps_rejected


# -- 2. stiff problems ----------------------------------------------------------------------
class VanDerPol(nn.Module):
    """x' = v, v' = μ (1 - x²) v - x."""

    def __init__(self, mu: float):
        super().__init__()
        self.mu = mu

    def forward(self, t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, self.mu * (1 - x**2) * v - x], dim=-1)


@pytest.fixture(scope="module")
def van_der_pol_runs():
    """μ = 1000 over [0, 3] (DP5 takes a few thousand steps), rtol = atol = 1e-6."""
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    runs = {}
    with torch.no_grad():
        for solver in ("scipy:RK45", "RadauIIA5", "BDF", "LSODA"):
            runs[solver] = solve(
                VanDerPol(1000.0), y0, [0.0, 3.0], solver=solver, rtol=1e-6, atol=1e-6
            )
    return runs


def test_radau_and_bdf_take_ten_times_fewer_steps_than_dp5_on_van_der_pol(van_der_pol_runs):
    dp5 = van_der_pol_runs["scipy:RK45"].stats.steps_accepted
    assert dp5 > 1000
    for solver in ("RadauIIA5", "BDF"):
        sol = van_der_pol_runs[solver]
        assert sol.stats.engine == "scipy"
        assert 10 * sol.stats.steps_accepted <= dp5
        assert torch.allclose(
            sol.ys[-1], van_der_pol_runs["scipy:RK45"].ys[-1], rtol=1e-3, atol=1e-5
        )


def test_lsoda_reports_switching_to_bdf_on_van_der_pol(van_der_pol_runs):
    st = van_der_pol_runs["LSODA"].stats
    methods = st.extra["lsoda_methods"]
    assert len(methods) == st.steps_accepted
    assert methods[0] == 1 and 2 in methods  # starts with Adams, switches to BDF
    assert st.extra["lsoda_switches"] >= 1
    assert st.extra["lsoda_bdf_steps"] == methods.count(2)


# -- 4. errors ------------------------------------------------------------------------------
def test_a_solver_name_no_engine_offers_is_an_error_listing_the_names():
    with pytest.raises(ValueError, match="unknown solver 'Kutta9'") as exc:
        resolve("Kutta9")
    for name in ("DP5", "RadauIIA5", "LSODA", "Tsit5"):
        assert name in str(exc.value)


def test_a_name_the_chosen_engine_lacks_says_which_engines_have_it():
    with pytest.raises(ValueError, match="engines that have it: rk, torchdiffeq, julia"):
        resolve("scipy:RK4")


@pytest.mark.skipif(shutil.which("julia") is not None, reason="Julia is installed here")
def test_an_engine_that_is_not_installed_says_how_to_install_it():
    assert not JuliaEngine.available()
    for call in (lambda: resolve("Vern7"), lambda: resolve("DP5", engine="julia")):
        with pytest.raises(EngineNotInstalledError) as exc:
            call()
        msg = str(exc.value)
        assert "julia" in msg.lower()
        assert 'pip install "nesterovnode[julia]"' in msg  # juliapkg then installs Julia
        assert "NESTEROVNODE_JULIA_ENV" in msg  # or a Julia environment of one's own
        assert INSTALL_COMMAND in msg


def test_the_julia_engine_module_imports_nothing_from_julia():
    import sys

    assert "juliacall" not in sys.modules and "diffeqpy" not in sys.modules


def test_a_failed_scipy_solve_raises_with_the_engine_message_and_the_stats_so_far():
    with pytest.raises(SolverError) as exc:
        solve(BlowUp(), torch.ones(1, 1, dtype=torch.float64), [0.0, 2.0], solver="scipy:RK45")
    err = exc.value
    assert "Required step size is less than spacing between numbers" in str(err)
    assert "step size underflowed" in str(err)  # the shared hint
    assert "stats so far" in str(err)
    assert err.stats.nfe_forward > 0 and err.stats.steps_accepted > 0
    assert abs(err.t_reached - 1.0) < 1e-3  # where the solution blows up


def test_backprop_through_an_external_engine_is_a_clear_error():
    dyn, y0 = small_model("node")
    with pytest.raises(ValueError, match="backprop"):
        solve(dyn, y0, TS, solver="scipy:RK45", sensitivity="backprop")
    assert not ScipyEngine.differentiable


def test_a_new_engine_needs_only_integrate_arrays(float64):
    """The engine protocol: a forward-Euler engine in a few lines gets the library's adjoint
    (gradients for free) by registering."""

    class EulerEngine(ExternalEngine):
        name = "euler-test"
        methods = {"Euler": "euler"}

        def integrate_arrays(self, problem: ODEProblem) -> np.ndarray:
            out, y = [problem.y0], problem.y0.copy()
            for t0, t1 in zip(problem.t[:-1], problem.t[1:]):
                n = 2000
                h = (t1 - t0) / n
                for k in range(n):
                    problem.on_attempt(t0 + k * h, h)
                    y = y + h * problem.fun(t0 + k * h, y)
                    problem.on_accept(t0 + k * h, h)
                out.append(y)
            return np.stack(out)

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(-0.5, dtype=torch.float64))

        def forward(self, t, y):
            return self.a * y

    register_engine("euler-test", EulerEngine)
    try:
        dyn = Linear()
        y0 = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
        sol = solve(dyn, y0, [0.0, 1.0], engine="euler-test", solver="Euler", dt=1e-3)
        sol.ys[-1].sum().backward()
    finally:
        ENGINE_ORDER.pop("euler-test")
    # y(1) = y0 e^a: dy/dy0 = e^a, dy/da = y0 e^a
    assert abs(float(y0.grad) - np.exp(-0.5)) < 1e-3
    assert abs(float(dyn.a.grad) - 2 * np.exp(-0.5)) < 2e-3
    assert sol.stats.nfe_forward == 2000 and sol.stats.nfe_backward == 2000


@pytest.mark.julia
def test_gradients_through_the_julia_bridge_equal_the_rk_engines():
    dyn, y0 = small_model("nesterovnode")
    g_torch, _ = gradient(dyn, y0, "rk:DP5", tol=1e-10)
    g_julia, sol = gradient(dyn, y0, "julia:Tsit5", tol=1e-10)
    assert sol.stats.engine == "julia"
    assert rel(g_julia, g_torch) < 1e-5
