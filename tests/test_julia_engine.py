"""The julia engine where Julia is installed (marked ``julia``; skipped elsewhere): the
Julia fields equal torch's to 1e-12 in float64 and Julia-native gradients equal the rk
engine's to 1e-6, for the seven point-cloud models and the four named adjoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nesterovnode as nn_
from nesterovnode.solve.engines import julia as julia_engine
from nesterovnode.solve.engines.julia_layout import dynamics_layout, flat_parameters, layout_json
from nesterovnode.tasks.pointcloud import WIDTHS, PointCloudTask

pytestmark = pytest.mark.julia

ADJOINTS = ("GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "BacksolveAdjoint")


@pytest.fixture(scope="module")
def jl():
    if not julia_engine.JuliaEngine.available():
        pytest.skip(julia_engine.JuliaEngine.unavailable_reason())
    return julia_engine.julia_module()


def _dynamics(model):
    dyn = PointCloudTask().build_model(model).dynamics.double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in dyn.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return dyn


@pytest.mark.parametrize("model", tuple(WIDTHS))
def test_the_julia_field_equals_the_torch_field(jl, model):
    dyn = _dynamics(model)
    layout = dynamics_layout(dyn)
    n = layout["state"]["features"]
    shape = (6, 2, n) if layout["state"]["second_order"] else (6, n)
    y = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    L = jl.parse_layout(layout_json(dyn))
    theta = flat_parameters(dyn).numpy()
    for t in (1.0, 1.5, 2.0):
        expected = dyn(torch.tensor(t, dtype=torch.float64), y).detach().numpy().reshape(-1)
        got = np.asarray(jl.field(L, y.numpy().reshape(-1), theta, t))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def _gradients(dyn, sensitivity, engine):
    h0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h0.requires_grad_()
    ts = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64)
    y0 = dyn.initial_state(ts[0], h0)
    sol = nn_.solve(
        dyn, y0, ts, solver="Tsit5", engine=engine, sensitivity=sensitivity, rtol=1e-10, atol=1e-10
    )
    h = dyn.readout(ts, sol.ys)
    loss = (h[-1] ** 2).sum() + h[1].sum()
    params = [p for p in dyn.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, [h0, *params]), sol


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("model", tuple(WIDTHS))
def test_julia_native_gradients_equal_the_rk_engines(jl, model, adjoint):
    dyn = _dynamics(model)
    ref, _ = _gradients(dyn, "adjoint", "rk")
    got, sol = _gradients(dyn, f"julia:{adjoint}", "julia")
    assert sol.stats.engine == "julia" and sol.stats.nfe_forward > 0
    assert sol.stats.extra["julia_retcode"] == "Success"
    for a, b in zip(got, ref):
        assert float((a - b).abs().max()) <= 1e-6 * max(1.0, float(b.abs().max()))


def test_too_many_steps_raise_solver_error_with_the_max_steps_hint(jl):
    dyn = _dynamics("nesterovnode")
    y0 = dyn.initial_state(1.0, torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(nn_.SolverError, match="raise max_steps"):
        nn_.solve(
            dyn, y0, [1.0, 2.0], engine="julia", sensitivity="julia:GaussAdjoint", max_steps=2
        )


def test_an_auto_switching_algorithm_reports_its_method_per_step(jl):
    dyn = _dynamics("node")
    y0 = torch.randn(3, 2, dtype=torch.float64)
    sol = nn_.solve(
        dyn, y0, [1.0, 2.0], engine="julia", options={"algorithm": "AutoTsit5(Rosenbrock23())"}
    )
    assert len(sol.stats.extra["julia_alg_choice"]) > 0
