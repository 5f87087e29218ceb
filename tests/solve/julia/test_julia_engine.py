"""The julia engine where Julia is installed (marked ``julia``; skipped elsewhere): the
Julia fields equal torch's to 1e-12 in float64; Julia-native gradients equal the rk
engine's to 1e-6 for the seven point-cloud models, the four named adjoints and the three
vector-Jacobian products; algorithm specs that would run code are refused in Julia too;
julia/check.jl passes under Pkg.test (Bessel closed form, every adjoint x VJP against
finite differences, Van der Pol at mu = 1000); and, marked ``gpu`` too, CUDA tensors make
the DLPack round trip and julia/check_gpu.jl passes."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import nesterovnode as nno
from helpers import REPO
from nesterovnode.dynamics.layout import dynamics_layout, layout_json
from nesterovnode.solve.engines import julia as julia_engine
from nesterovnode.solve.fields import flat_parameters
from nesterovnode.tasks.pointcloud import WIDTHS, PointCloudTask

pytestmark = pytest.mark.julia

ADJOINTS = ("GaussAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "BacksolveAdjoint")
VJPS = ("ZygoteVJP", "EnzymeVJP", "ReverseDiffVJP")
ROOT = REPO


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


def _gradients(dyn, sensitivity, engine, options=None, device="cpu"):
    h0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h0 = h0.to(device).requires_grad_()
    ts = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64)
    y0 = dyn.initial_state(ts[0], h0)
    sol = nno.solve(
        dyn,
        y0,
        ts,
        solver="Tsit5",
        engine=engine,
        sensitivity=sensitivity,
        rtol=1e-10,
        atol=1e-10,
        options=options or {},
    )
    h = dyn.readout(ts, sol.ys)
    loss = (h[-1] ** 2).sum() + h[1].sum()
    params = [p for p in dyn.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, [h0, *params]), sol


@pytest.mark.parametrize("vjp", VJPS)
@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("model", tuple(WIDTHS))
def test_julia_native_gradients_equal_the_rk_engines(jl, model, adjoint, vjp):
    dyn = _dynamics(model)
    ref, _ = _gradients(dyn, "adjoint", "rk")
    got, sol = _gradients(dyn, f"julia:{adjoint}", "julia", {"autojacvec": vjp, "mode": "native"})
    assert sol.stats.engine == "julia" and sol.stats.nfe_forward > 0
    assert sol.stats.extra["julia_retcode"] == "Success"
    assert sol.stats.extra["julia_retcode_backward"] == "Success"
    for a, b in zip(got, ref):
        assert float((a - b).abs().max()) <= 1e-6 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_too_many_steps_raise_solver_error_with_the_time_reached(jl, adjoint):
    dyn = _dynamics("nesterovnode")
    y0 = dyn.initial_state(1.0, torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(nno.SolverError, match="raise max_steps") as info:
        nno.solve(dyn, y0, [1.0, 2.0], engine="julia", sensitivity=f"julia:{adjoint}", max_steps=2)
    assert 1.0 < info.value.t_reached < 2.0


def test_quadrature_adjoint_takes_the_solves_tolerances(jl):
    q = jl.sensealg("QuadratureAdjoint", reltol=1e-9, abstol=1e-10)
    assert float(q.reltol) == 1e-9 and float(q.abstol) == 1e-10


def test_injection_specs_are_refused_in_julia_before_anything_is_called(jl, tmp_path):
    marker = tmp_path / "marker"
    keep = tmp_path / "keep"
    keep.mkdir()
    specs = [
        "exit(3)",
        f'touch("{marker}")',
        f'rm("{keep}", recursive=true)',
        "Char(47)",
        "Tsit5(Char(47))",
        "Tsit5(); exit(3)",
        "Base.exit(3)",
        f'Tsit5(autodiff=touch("{marker}"))',
    ]
    for spec in specs:
        with pytest.raises(Exception, match="ArgumentError"):
            jl.algorithm(spec)
    assert not marker.exists() and keep.is_dir()
    assert "KenCarp4" in str(jl.algorithm("KenCarp4(autodiff=AutoFiniteDiff())"))


def test_a_python_field_refuses_vjps_other_than_zygote_in_julia(jl):
    rhs = jl.PyRHS(lambda du, u, t: None, None, 0)
    with pytest.raises(Exception, match="only ZygoteVJP"):
        jl.solve_with_pullback(
            rhs, np.ones(2), np.zeros(0), np.array([0.0, 1.0]), autojacvec="EnzymeVJP"
        )


@pytest.mark.skipif(shutil.which("julia") is None, reason="no julia on PATH for Pkg.test")
def test_the_julia_package_check_passes_under_pkg_test():
    """Bessel closed form, every adjoint x VJP against finite differences, Van der Pol at
    mu = 1000 with Tsit5 vs Rodas5P, the injection specs (julia/check.jl)."""
    command = ["julia", "--project=julia", "-e", "using Pkg; Pkg.instantiate(); Pkg.test()"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "JULIA_PKG_PRECOMPILE_AUTO": "1"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all checks passed" in done.stdout


def test_an_auto_switching_algorithm_reports_its_method_per_step(jl):
    dyn = _dynamics("node")
    y0 = torch.randn(3, 2, dtype=torch.float64)
    sol = nno.solve(
        dyn, y0, [1.0, 2.0], engine="julia", options={"algorithm": "AutoTsit5(Rosenbrock23())"}
    )
    assert len(sol.stats.extra["julia_alg_choice"]) > 0


@pytest.mark.gpu
@pytest.mark.parametrize("adjoint", ["GaussAdjoint", "InterpolatingAdjoint"])
def test_cuda_tensors_make_the_dlpack_round_trip_and_stay_on_the_gpu(jl, adjoint):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if not bool(jl.gpu_arrays()):
        from juliacall import Main

        Main.seval("import CUDA, DLPack")
    assert bool(jl.gpu_arrays()), "CUDA.jl and DLPack.jl: run julia.enable_gpu() once"
    dyn = _dynamics("nesterovnode")
    ref, _ = _gradients(dyn, "adjoint", "rk")
    dyn_gpu = dyn.to("cuda")
    got, sol = _gradients(dyn_gpu, f"julia:{adjoint}", "julia", {"mode": "native"}, "cuda")
    assert sol.ys.device.type == "cuda" and all(g.device.type == "cuda" for g in got)
    for a, b in zip(got, ref):
        assert float((a.cpu() - b).abs().max()) <= 1e-6 * max(1.0, float(b.abs().max()))
    # the hand-over itself: a Julia view of a CUDA tensor shares its memory, and back
    x = torch.arange(6, dtype=torch.float64, device="cuda")
    view = jl.wrap_dlpack(x)
    back = jl.share_dlpack(view, torch.from_dlpack)
    assert back.data_ptr() == x.data_ptr() and back.device == x.device


@pytest.mark.gpu
def test_the_julia_gpu_check_passes(jl):
    from juliacall import Main

    Main.seval("import CUDA, DLPack")
    Main.include(str(ROOT / "julia" / "check_gpu.jl"))
    assert bool(Main.check_gpu())
