"""Algorithm specs of the julia engine are checked in Python before Julia is looked for:
a spec is an OrdinaryDiffEq algorithm called with literal arguments and nested algorithm
or ADTypes specs; Base's functions (exit, rm, run, include…) and every other expression
are refused with a message about the spec, whether or not Julia is installed."""

from __future__ import annotations

import sys

import pytest
import torch

import nesterovnode as nno
from nesterovnode.solve import SolveConfig
from nesterovnode.solve.engines import julia as julia_engine
from nesterovnode.solve.engines.julia_spec import (
    AlgorithmSpecError,
    ad_type_names,
    algorithm_names,
    check_algorithm_spec,
)
from nesterovnode.tasks.networks import mlp

ACCEPTED = [
    "Tsit5",
    "Rodas5P()",
    "KenCarp4(autodiff=AutoFiniteDiff())",
    "AutoTsit5(Rosenbrock23())",
    "AutoVern7(Rodas5P(autodiff=false), stiffalgfirst=true)",
    "Rodas5P(; autodiff=AutoForwardDiff(chunksize=2))",
    "KenCarp4(linsolve=nothing, step_limiter=nothing)",
    "Tsit5(thread=:false)",
    "RadauIIA5(maxiters=10, smooth_est=true)",
]

#: specs that would run arbitrary code if they were evaluated (or called by name)
INJECTIONS = [
    "exit()",
    "exit(1)",
    "rm(string(Char(47)), recursive=true, force=true)",
    'include("x.jl")',
    "run(`rm -rf /`)",
    "write(1, 2)",
    "Char(47)",
    "string(1)",
    "Tsit5(); exit()",
    "Tsit5(exit())",
    "Tsit5(autodiff=exit())",
    "Tsit5(Char(47))",
    "Base.exit()",
    "Core.eval(Main, 1)",
    "Tsit5()()",
    "Tsit5(x=y)",
    "Tsit5(1+2)",
    "Tsit5([1, 2])",
    "Tsit5($(exit()))",
    "eval(:(exit()))",
    "AutoFiniteDiff()",
    "Rodas5P(autodiff=AutoFiniteDiff)",
    "",
]


@pytest.fixture(autouse=True)
def fresh_resolutions(monkeypatch):
    """The registry caches what a solver name resolves to: the tests here that pretend
    Julia is installed must not leave such a resolution behind for later tests."""
    from nesterovnode.solve import registry

    monkeypatch.setattr(registry, "_RESOLVED", {})


@pytest.mark.parametrize("spec", ACCEPTED)
def test_an_algorithm_called_with_literals_and_nested_specs_is_accepted(spec):
    assert check_algorithm_spec(f"  {spec} ") == spec


@pytest.mark.parametrize("spec", INJECTIONS)
def test_anything_but_algorithm_constructors_and_literals_is_refused(spec):
    with pytest.raises(AlgorithmSpecError, match="julia algorithm spec"):
        check_algorithm_spec(spec)


def test_the_message_names_what_is_wrong_with_the_spec():
    with pytest.raises(AlgorithmSpecError, match="exit is not an algorithm OrdinaryDiffEq"):
        check_algorithm_spec("exit()")
    with pytest.raises(AlgorithmSpecError, match="Char is not an algorithm"):
        check_algorithm_spec("Tsit5(Char(47))")
    with pytest.raises(AlgorithmSpecError, match="write AutoFiniteDiff\\(\\)"):
        check_algorithm_spec("Rodas5P(autodiff=AutoFiniteDiff)")
    with pytest.raises(AlgorithmSpecError, match="'`' at position 5"):
        check_algorithm_spec("run(`ls`)")


def test_the_constructor_lists_come_from_the_upstream_sources_and_hold_no_base_function():
    algorithms, ad = algorithm_names(), ad_type_names()
    assert {"Tsit5", "Rodas5P", "KenCarp4", "AutoTsit5", "Vern7", "QNDF", "FBDF"} <= algorithms
    assert {"AutoFiniteDiff", "AutoForwardDiff", "AutoZygote"} <= ad
    assert "AutoFiniteDiff" not in algorithms  # OrdinaryDiffEq v6 does not export it
    for name in ("exit", "rm", "run", "write", "include", "eval", "Char", "string"):
        assert name not in algorithms | ad
    assert not any(n.startswith("OrdinaryDiffEq") for n in algorithms)  # its modules


def _dynamics():
    return nno.NODE(mlp([2, 4, 2], torch.nn.Tanh)).double()


@pytest.mark.parametrize(
    "solver", ["julia:exit()", "julia:rm(string(Char(47)), recursive=true, force=true)"]
)
def test_an_injection_through_the_solver_name_is_refused_before_julia_is_looked_for(
    solver, monkeypatch
):
    def looked_for(*args, **kwargs):
        raise AssertionError("Julia was looked for before the spec was checked")

    monkeypatch.setattr(julia_engine.JuliaEngine, "available", classmethod(looked_for))
    monkeypatch.setattr(julia_engine, "julia_module", looked_for)
    y0 = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(AlgorithmSpecError, match="is not an algorithm OrdinaryDiffEq"):
        nno.solve(_dynamics(), y0, [0.0, 1.0], solver=solver)
    with pytest.raises(AlgorithmSpecError):
        SolveConfig(solver=solver.split(":", 1)[1], engine="julia").resolve()
    assert "juliacall" not in sys.modules


def test_julia_exit_fails_the_same_way_with_or_without_julia(monkeypatch):
    messages = []
    for available in (False, True):
        monkeypatch.setattr(
            julia_engine.JuliaEngine, "available", classmethod(lambda cls, a=available: a)
        )
        with pytest.raises(AlgorithmSpecError) as info:
            nno.solve(
                _dynamics(),
                torch.zeros(3, 2, dtype=torch.float64),
                [0.0, 1.0],
                solver="julia:exit()",
            )
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_an_injection_through_the_algorithm_option_is_refused_before_julia_starts(monkeypatch):
    monkeypatch.setattr(julia_engine.JuliaEngine, "available", classmethod(lambda cls: True))

    def started(*args, **kwargs):
        raise AssertionError("Julia was started before the option was checked")

    monkeypatch.setattr(julia_engine, "julia_module", started)
    with pytest.raises(AlgorithmSpecError, match="exit is not an algorithm"):
        nno.solve(
            _dynamics(),
            torch.zeros(3, 2, dtype=torch.float64),
            [0.0, 1.0],
            engine="julia",
            options={"algorithm": "exit()"},
        )
    assert "juliacall" not in sys.modules
