"""The Python side of the julia engine, where no Julia is installed: retcodes judged by
SciMLBase's rule, the install hint whenever Julia cannot start, which fields run in
Julia (state shapes, computed weights), the vector-Jacobian products call-back mode can
use, the environment juliacall is given (juliapkg, or one's own with PythonCall at
juliacall's version), and the DLPack hand-over of tensors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import nesterovnode as nno
from helpers import REPO, TinyField
from nesterovnode.dynamics.layout import LayoutError, check_state, dynamics_layout
from nesterovnode.solve.engines import julia as julia_engine
from nesterovnode.solve.engines.julia_arrays import (
    DLPACK_DEVICE,
    dlpack_device,
    handover,
    received,
)
from nesterovnode.solve.errors import EngineNotInstalledError, SolverError
from nesterovnode.solve.stats import Recorder, SolveStats
from nesterovnode.tasks.networks import mlp


# -- retcodes (SciMLBase.successful_retcode decides, in Julia) ----------------------------
@pytest.mark.parametrize("retcode", ["Default", "MaxIters", "Unstable", "Failure"])
def test_a_retcode_that_successful_retcode_rejects_raises_solver_error(retcode):
    recorder = Recorder(SolveStats(solver="Tsit5", engine="julia"))
    with pytest.raises(SolverError):
        julia_engine.JuliaEngine._check(recorder, retcode, False, 1.5)


def test_max_iters_raises_with_the_max_steps_hint_and_the_time_reached():
    recorder = Recorder(SolveStats(solver="Tsit5", engine="julia"))
    with pytest.raises(SolverError, match="at t = 1.25") as info:
        julia_engine.JuliaEngine._check(recorder, "MaxIters", False, 1.25)
    assert info.value.reason == "max_steps" and info.value.t_reached == 1.25


@pytest.mark.parametrize("retcode", ["Success", "Terminated"])
def test_a_successful_retcode_passes(retcode):
    recorder = Recorder(SolveStats(solver="Tsit5", engine="julia"))
    julia_engine.JuliaEngine._check(recorder, retcode, True, 2.0)


def test_a_failed_backward_solve_raises_from_the_backward_recorder():
    stats = SolveStats(solver="Tsit5", engine="julia")
    with pytest.raises(SolverError, match="backward"):
        julia_engine.JuliaEngine._check(Recorder(stats, backward=True), "MaxIters", False, None)


# -- Julia cannot start: the install hint, never a bare exception ---------------------------
@pytest.fixture
def julia_installed(monkeypatch):
    """As if juliacall were installed (and Julia not started yet)."""
    monkeypatch.setattr(julia_engine.JuliaEngine, "available", classmethod(lambda cls: True))
    monkeypatch.setattr(julia_engine, "_MODULE", None)
    for name in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIACALL_PROJECT", julia_engine.ENV_VARIABLE):
        monkeypatch.delenv(name, raising=False)


def test_a_juliacall_that_cannot_start_julia_gives_the_install_hint(julia_installed, monkeypatch):
    broken = types.ModuleType("juliacall")

    def __getattr__(name):
        raise ConnectionError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    broken.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "juliacall", broken)
    with pytest.raises(EngineNotInstalledError) as info:
        julia_engine.julia_module()
    assert julia_engine.INSTALL_COMMAND in str(info.value)
    assert "ConnectionError" in str(info.value)


def test_an_environment_without_the_package_gives_the_install_hint(julia_installed, monkeypatch):
    class Main:
        @staticmethod
        def seval(code):
            raise RuntimeError("ArgumentError: Package NesterovNODEJulia not found")

    monkeypatch.setitem(sys.modules, "juliacall", types.SimpleNamespace(Main=Main))
    with pytest.raises(EngineNotInstalledError, match="NesterovNODEJulia not found") as info:
        julia_engine.julia_module()
    assert julia_engine.INSTALL_COMMAND in str(info.value)


# -- which fields run in Julia ----------------------------------------------------------------
def _nesterov(n=3):
    return nno.NesterovNODE(mlp([n, 5, n], nn.Tanh)).double()


def test_a_second_order_state_of_more_than_three_dimensions_is_not_read_by_julia():
    dyn = _nesterov()
    layout = dynamics_layout(dyn)
    check_state(layout, (4, 2, 3))
    for shape in [(4, 2, 5, 3), (4, 3), (4, 2, 2), (2, 3)]:
        with pytest.raises(LayoutError, match="reads a state"):
            check_state(layout, shape)
    y0 = torch.zeros(4, 2, 5, 3, dtype=torch.float64)
    layout_json, why = julia_engine.native_layout(dyn, y0, "auto")
    assert layout_json is None and "[B, 2, 3]" in why
    with pytest.raises(ValueError, match="mode'\\] = 'native'"):
        julia_engine.native_layout(dyn, y0, "native")


def test_a_first_order_state_is_read_row_by_row_whatever_its_leading_dimensions():
    from nesterovnode.dynamics.layout import field_numpy
    from nesterovnode.solve.fields import flat_parameters

    dyn = nno.NODE(mlp([3, 5, 3], nn.Tanh)).double()
    layout = dynamics_layout(dyn)
    y = torch.randn(4, 6, 3, dtype=torch.float64)
    check_state(layout, tuple(y.shape))
    expected = dyn(torch.tensor(1.0, dtype=torch.float64), y).detach().numpy().reshape(-1)
    got = field_numpy(layout, flat_parameters(dyn).numpy(), 1.0, y.numpy().reshape(-1))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert julia_engine.native_layout(dyn, y, "auto")[0] is not None


class _Scaled(nn.Module):
    def forward(self, w):
        return 2.0 * w


def test_a_parametrised_linear_layer_falls_back_to_call_back_mode():
    net = mlp([3, 5, 3], nn.Tanh).double()
    parametrize.register_parametrization(net[0], "weight", _Scaled())
    dyn = nno.NesterovNODE(net).double()
    with pytest.raises(LayoutError, match="computed"):
        dynamics_layout(dyn)
    layout, why = julia_engine.native_layout(dyn, torch.zeros(2, 2, 3, dtype=torch.float64), "auto")
    assert layout is None and "computed" in why


def test_spectral_norm_weights_fall_back_to_call_back_mode():
    net = mlp([3, 5, 3], nn.Tanh).double()
    net[0] = nn.utils.spectral_norm(net[0])
    with pytest.raises(LayoutError, match="computed"):
        dynamics_layout(nno.NODE(net))


# -- call-back mode reads torch's VJPs only through ZygoteVJP ---------------------------------
@pytest.mark.parametrize("vjp", ["EnzymeVJP", "ReverseDiffVJP"])
def test_call_back_mode_refuses_enzyme_and_reversediff_vjps_before_julia_starts(
    vjp, julia_installed, monkeypatch
):
    def started():
        raise AssertionError("Julia was started")

    monkeypatch.setattr(julia_engine, "julia_module", started)
    dyn = nno.NODE(TinyField(2)).double()  # a network Julia does not mirror
    with pytest.raises(ValueError, match="only through ZygoteVJP"):
        nno.solve(
            dyn,
            torch.zeros(3, 2, dtype=torch.float64),
            [0.0, 1.0],
            solver="Tsit5",
            engine="julia",
            sensitivity="julia:GaussAdjoint",
            options={"autojacvec": vjp},
        )


# -- the environment juliacall is given ------------------------------------------------------
def test_by_default_juliapkg_installs_and_resolves_everything():
    assert julia_engine.juliacall_settings({}) == {}


def test_an_environment_of_ones_own_is_handed_to_juliacall_as_it_is(tmp_path):
    (tmp_path / "Project.toml").write_text("[deps]\n")
    julia = tmp_path / "julia"
    settings = julia_engine.juliacall_settings(
        {julia_engine.ENV_VARIABLE: str(tmp_path), "PYTHON_JULIAPKG_EXE": str(julia)}
    )
    assert settings == {
        "PYTHON_JULIACALL_PROJECT": str(tmp_path),
        "PYTHON_JULIACALL_EXE": str(julia),
    }


def test_juliacalls_own_variables_win(tmp_path):
    env = {julia_engine.ENV_VARIABLE: str(tmp_path), "PYTHON_JULIACALL_PROJECT": "/x"}
    assert julia_engine.juliacall_settings(env) == {}


def test_an_environment_variable_naming_no_environment_is_refused(tmp_path):
    with pytest.raises(EngineNotInstalledError, match="no Project.toml"):
        julia_engine.juliacall_settings({julia_engine.ENV_VARIABLE: str(tmp_path)})


def test_an_environment_of_ones_own_needs_a_julia(tmp_path, monkeypatch):
    (tmp_path / "Project.toml").write_text("[deps]\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EngineNotInstalledError, match="PYTHON_JULIAPKG_EXE"):
        julia_engine.juliacall_settings({julia_engine.ENV_VARIABLE: str(tmp_path)})


MANIFEST = """# This file is machine-generated - editing it directly is not advised

julia_version = "1.11.2"
manifest_format = "2.0"

[[deps.PythonCall]]
deps = ["CondaPkg", "Dates"]
git-tree-sha1 = "0123"
uuid = "6099a3de-0909-46bc-b1f4-468b9a2dfc0d"
version = "{version}"

[[deps.Zygote]]
uuid = "e88e6eb3-aa80-5325-afca-941959d7151f"
version = "0.7.3"
"""


def test_pythoncall_at_juliacalls_version_passes(tmp_path):
    (tmp_path / "Manifest.toml").write_text(MANIFEST.format(version="0.9.34"))
    julia_engine.check_pythoncall(tmp_path, "0.9.34")


def test_pythoncall_and_juliacall_of_different_versions_are_refused_before_julia_starts(tmp_path):
    (tmp_path / "Manifest-v1.11.toml").write_text(MANIFEST.format(version="0.9.23"))
    with pytest.raises(EngineNotInstalledError, match="PythonCall 0.9.23 but juliacall is 0.9.34"):
        julia_engine.check_pythoncall(tmp_path, "0.9.34")


def test_an_environment_without_a_manifest_is_refused_with_the_instantiate_command(tmp_path):
    with pytest.raises(EngineNotInstalledError, match="Pkg.instantiate"):
        julia_engine.check_pythoncall(tmp_path, "0.9.34")


def test_a_running_julia_session_is_used_as_it_is(julia_installed, monkeypatch, tmp_path):
    """diffeqpy (or the user) imported juliacall first: one Julia per process, nothing set."""
    monkeypatch.setenv(julia_engine.ENV_VARIABLE, str(tmp_path))  # would be refused
    loaded = []

    class Main:
        NesterovNODEJulia = "the module"

        @staticmethod
        def seval(code):
            loaded.append(code)

    monkeypatch.setitem(sys.modules, "juliacall", types.SimpleNamespace(Main=Main))
    assert julia_engine.julia_module() == "the module"
    assert loaded == ["using NesterovNODEJulia"]
    assert "PYTHON_JULIACALL_PROJECT" not in __import__("os").environ


# -- the DLPack hand-over ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_a_handed_over_tensor_is_float64_contiguous_and_on_its_device(dtype):
    x = torch.arange(12, dtype=dtype).reshape(3, 4).T  # not contiguous
    out = handover(x)
    assert out.dtype == torch.float64 and out.is_contiguous() and out.device == x.device
    assert torch.equal(out, x.double())
    assert dlpack_device(out) == (DLPACK_DEVICE["cpu"], 0)


def test_a_float64_contiguous_tensor_is_handed_over_without_a_copy():
    x = torch.randn(5, 3, dtype=torch.float64)
    assert handover(x).data_ptr() == x.data_ptr()


def test_the_capsule_shares_memory_with_strides_julia_reads_column_major():
    """[len(ts), n] row-major, as DLPack.jl wraps it: the n x len(ts) column-major matrix."""
    ys = torch.arange(12, dtype=torch.float64).reshape(4, 3)  # 4 times, n = 3
    capsule = handover(ys).__dlpack__()
    back = torch.from_dlpack(capsule)
    assert back.data_ptr() == ys.data_ptr() and back.stride() == (3, 1)
    julia_view = np.asarray(back).reshape(-1).reshape((3, 4), order="F")  # reshape(v, n, T)
    np.testing.assert_array_equal(julia_view, ys.numpy().T)


@pytest.mark.parametrize("bad", [torch.zeros(3, dtype=torch.int64), torch.zeros(3, device="meta")])
def test_tensors_dlpack_julia_cannot_take_are_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="julia engine takes"):
        handover(bad)


def test_what_julia_returns_comes_back_on_the_states_device_and_as_float64():
    back = received(np.arange(6.0), torch.device("cpu"))
    assert back.dtype == torch.float64 and torch.equal(back, torch.arange(6.0, dtype=torch.float64))
    shared = torch.arange(4, dtype=torch.float64)
    assert received(shared, torch.device("cpu")).data_ptr() == shared.data_ptr()


@pytest.mark.gpu
def test_a_cuda_tensor_is_handed_over_on_its_gpu():
    x = torch.randn(4, 3, device="cuda", dtype=torch.float32)
    out = handover(x)
    assert out.device == x.device and dlpack_device(out) == (
        DLPACK_DEVICE["cuda"],
        x.device.index or 0,
    )
    assert received(out, x.device).data_ptr() == out.data_ptr()


# -- import order (juliacall warns when torch came first) ------------------------------------
def test_the_import_order_juliacall_asks_for_is_documented_with_the_fix():

    docs = (REPO / "docs" / "julia.md").read_text()
    section = docs[docs.index("### Import order") :]
    section = section[: section.index("###", 5)]
    assert section.index("    import juliacall") < section.index("    import nesterovnode")
    assert "import juliacall" in julia_engine.__doc__ and "before" in julia_engine.__doc__


def test_the_engine_module_imports_no_juliacall_when_imported():
    assert "juliacall" not in sys.modules
