"""SolveConfig, bad input to the solve layer, and the defects of the old solve layer, each
with the numbers that showed it."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import nesterovnode as nno
from helpers import TinyField
from nesterovnode.solve import SolveConfig
from nesterovnode.solve.config import ToleranceWarning


class Cos(nn.Module):
    def forward(self, t, y):
        return torch.cos(t) * y


# -- the configuration ---------------------------------------------------------------------
def test_a_config_is_one_frozen_value_with_the_defaults_in_one_place():
    c = SolveConfig()
    assert (c.solver, c.rtol, c.atol, c.dt, c.sensitivity, c.engine, c.max_steps) == (
        "DP5",
        1e-7,
        1e-7,
        None,
        "adjoint",
        None,
        100_000,
    )
    with pytest.raises(AttributeError):
        c.rtol = 1e-3
    d = c.replace(rtol=1e-5, engine="torch")
    assert (d.rtol, d.engine, c.rtol) == (1e-5, "torchdiffeq", 1e-7)  # old engine name mapped
    assert d.as_dict()["engine"] == "torchdiffeq"


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"rtol": 0}, ValueError, "rtol must be a finite number > 0"),
        ({"atol": -1e-3}, ValueError, "atol must be a finite number > 0"),
        ({"rtol": "1e-3"}, TypeError, "rtol must be a number"),
        ({"dt": 0.0}, ValueError, "dt must be a finite number > 0"),
        ({"max_steps": 0}, ValueError, "max_steps must be a positive integer"),
        ({"sensitivity": "adjont"}, ValueError, "unknown sensitivity 'adjont'; valid: adjoint"),
        ({"engine": "matlab"}, ValueError, "unknown engine 'matlab'; valid engines: rk"),
        ({"options": ["cuda_graphs"]}, TypeError, "options must be a dict"),
        ({"tol": 1e-3}, TypeError, "SolveConfig has no field tol; its fields: solver, rtol"),
    ],
)
def test_bad_configurations_are_refused_with_what_to_do(changes, error, match):
    with pytest.raises(error, match=match):
        SolveConfig().replace(**changes)


def test_solve_takes_a_config_and_changes_of_it():
    dyn, y0 = nno.NODE(Cos()), torch.ones(1, 1, dtype=torch.float64)
    config = SolveConfig(solver="Tsit5", rtol=1e-9, atol=1e-9)
    a = nno.solve(dyn, y0, [0.0, 1.0], config)
    b = nno.solve(dyn, y0, [0.0, 1.0], solver="Tsit5", rtol=1e-9, atol=1e-9)  # the old form
    assert torch.equal(a.ys, b.ys) and a.stats.solver == "Tsit5"
    c = nno.solve(dyn, y0, [0.0, 1.0], config, rtol=1e-3)
    assert c.stats.nfe_forward < a.stats.nfe_forward
    with pytest.raises(TypeError, match=r"unknown arguments \['first_step'\]"):
        nno.solve(dyn, y0, [0.0, 1.0], first_step=0.1)


def test_any_method_runs_at_a_fixed_step():
    dyn, y0 = nno.NODE(Cos()), torch.ones(1, 1, dtype=torch.float64)
    sol = nno.solve(dyn, y0, [0.0, 1.0], solver="DP5", dt=0.1)
    assert sol.stats.steps_accepted == 10 and sol.stats.steps_rejected == 0
    assert sol.stats.nfe_forward == 6 * 10  # no error estimate, no FSAL stage
    assert abs(float(sol.ys[-1, 0, 0]) - math.exp(math.sin(1.0))) < 1e-8


def test_a_tolerance_float32_cannot_resolve_is_warned_about_with_the_fix():
    dyn = nno.NODE(Cos())
    with pytest.warns(ToleranceWarning, match="below what float32 can resolve.*float64"):
        nno.solve(dyn, torch.ones(1, 1), [0.0, 1.0], rtol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nno.solve(dyn, torch.ones(1, 1), [0.0, 1.0], rtol=1e-5)
        nno.solve(dyn, torch.ones(1, 1, dtype=torch.float64), [0.0, 1.0], rtol=1e-10)


def test_a_native_sensitivity_picks_its_engine_and_a_clash_is_refused():
    dyn = nno.NODE(TinyField(2))
    y0 = torch.randn(3, 2, requires_grad=True)
    sol = nno.solve(dyn, y0, [0.0, 1.0], sensitivity="torchdiffeq:adjoint", rtol=1e-5)
    assert sol.stats.engine == "torchdiffeq"
    with pytest.raises(ValueError, match="is the torchdiffeq engine's, but engine='rk'"):
        nno.solve(dyn, y0, [0.0, 1.0], sensitivity="torchdiffeq:adjoint", engine="rk")
    with pytest.raises(ValueError, match="has no sensitivity 'Gauss'"):
        nno.solve(dyn, y0, [0.0, 1.0], sensitivity="torchdiffeq:Gauss")


def test_a_block_holds_its_solve_config():
    block = nno.ODEBlock(nno.NODE(TinyField(2)), solver="BS3", rtol=1e-4)
    assert block.config == SolveConfig(solver="BS3", rtol=1e-4)


# -- item 9: plain callables ---------------------------------------------------------------
def test_a_plain_callable_hiding_trainable_parameters_is_refused_at_solve_time():
    net = nn.Linear(2, 2)
    dyn = nno.NesterovNODE(lambda t, h: net(h))
    y0 = dyn.initial_state(1.0, torch.randn(3, 2))
    with pytest.raises(TypeError, match="uses trainable net.*NesterovNODE\\(net\\)"):
        nno.solve(dyn, y0, [1.0, 2.0], rtol=1e-5)
    # backprop sees them; a parameter-free callable (an exact field) is fine
    sol = nno.solve(dyn, y0, [1.0, 2.0], rtol=1e-5, sensitivity="backprop")
    sol.ys[-1].sum().backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0
    nno.solve(nno.NesterovNODE(lambda t, h: -h), y0, [1.0, 2.0], rtol=1e-5)


# -- item 10: the defects, each with its numbers --------------------------------------------
def test_torchdiffeq_bs3_is_as_accurate_at_T_as_rk():
    """It stepped past T and interpolated back with bosh3's second-order interpolant:
    y' = cos(t) y on [0, 10] at rtol 1e-8 had error 4.9e-6 there against rk's 1.2e-7."""
    y0 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.exp(math.sin(10.0))
    err = {}
    for engine in ("rk", "torchdiffeq"):
        sol = nno.solve(
            nno.NODE(Cos()), y0, [0.0, 10.0], solver="BS3", engine=engine, rtol=1e-8, atol=1e-8
        )
        err[engine] = abs(float(sol.ys[-1, 0, 0]) - exact)
    assert err["torchdiffeq"] < 2 * err["rk"] < 1e-6


def test_a_non_finite_initial_state_is_named_as_such():
    """It was reported as "step size underflowed" by the torch engine."""
    y0 = torch.tensor([[1.0, float("nan")]])
    for engine in ("rk", "torchdiffeq", "scipy"):
        with pytest.raises(ValueError, match="y0 contains NaN or Inf"):
            nno.solve(nno.NODE(TinyField(2)), y0, [0.0, 1.0], engine=engine)


def test_an_ode_block_keeps_its_output_times_exact_whatever_the_default_dtype():
    """ts built in float64 while the default dtype was float32 stayed rounded by ~5e-8
    after .double()."""
    ts = torch.tensor([1.0, 1.1, 2.0], dtype=torch.float64)
    block = nno.ODEBlock(nno.NODE(TinyField(2)), ts).double()
    assert block.ts.dtype == torch.float64 and torch.equal(block.ts, ts)
    block = block.float()  # converting the model does not round the times either
    assert torch.equal(block.ts, ts)


def test_nfe_of_a_dense_output_method_does_not_grow_with_the_output_times():
    """NesterovNODE took 38 / 68 / 314 forward NFE for 2 / 11 / 51 output times with DP5
    while HBNODE stayed at 32 (steps forced onto every output time for the Nesterov models
    only), so NFE tables compared unlike things."""
    torch.manual_seed(0)
    nfe = {}
    for name, cls in (("nesterov", nno.NesterovNODE), ("hb", nno.HBNODE)):
        dyn = cls(TinyField(2).double())
        y0 = dyn.initial_state(1.0, torch.randn(4, 2, dtype=torch.float64))
        for n in (2, 11, 51):
            sol = nno.solve(dyn, y0, torch.linspace(1.0, 2.0, n, dtype=torch.float64))
            nfe[name, n] = sol.stats.nfe_forward
    assert nfe["nesterov", 2] == nfe["nesterov", 11] == nfe["nesterov", 51]
    assert nfe["hb", 2] == nfe["hb", 11] == nfe["hb", 51]


def test_julia_takes_any_ordinarydiffeq_algorithm_by_name():
    """Names outside the canonical table reach the julia engine as written (resolving
    needs no Julia; only an installed engine is instantiated)."""
    from nesterovnode.solve.registry import _resolve, engine_class, open_method

    info = open_method("AutoTsit5(Rosenbrock23())")
    assert info.auto_switching and info.implicit and info.name == "AutoTsit5(Rosenbrock23())"
    assert engine_class("julia").open_methods and not engine_class("rk").open_methods
    with pytest.raises(ValueError, match="the rk engine has no solver 'AutoTsit5"):
        _resolve("rk:AutoTsit5(Rosenbrock23())")
