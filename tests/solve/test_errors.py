"""Bad input raises an error that names the argument and the fix."""

from __future__ import annotations

import pytest
import torch

import nesterovnode as nno
from helpers import TinyField
from nesterovnode.solve import SolverError
from nesterovnode.solve.config import ToleranceWarning


def test_nesterov_start_time_at_or_below_zero_is_refused():
    dyn = nno.NesterovNODE(TinyField(3))
    with pytest.raises(ValueError, match="t0 must be > 0"):
        dyn.initial_state(0.0, torch.randn(2, 3))
    with pytest.raises(ValueError, match="singular at t = 0"):
        nno.solve(dyn, torch.zeros(2, 2, 3), [-1.0, 1.0])
    with pytest.raises(ValueError, match="t0 must be > 0"):
        nno.ODEBlock(nno.GNesterovNODE(TinyField(3)), ts=(0.0, 1.0))


@pytest.mark.parametrize(
    "ts, match",
    [
        ([1.0], "at least two"),
        ([2.0, 1.0], "strictly increasing"),
        ([1.0, 1.0, 2.0], "strictly increasing"),
        ([[1.0, 2.0]], "1-D"),
        ([1.0, float("nan")], "finite"),
    ],
)
def test_bad_time_grids_are_refused(ts, match):
    with pytest.raises(ValueError, match=match):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), ts)


def test_network_returning_the_wrong_shape_is_named():
    dyn = nno.HBNODE(TinyField(3, n_out=4))
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\).*needs \(2, 3\)"):
        nno.solve(dyn, dyn.initial_state(0.0, torch.randn(2, 3)), [0.0, 1.0])
    with pytest.raises(TypeError, match="f must be an nn.Module or a callable"):
        nno.NODE(3)


def test_unknown_solver_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown solver 'dopri7'.*RK4.*DP5"):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="dopri7")
    with pytest.raises(ValueError, match="torchdiffeq engine has no solver 'Radau'"):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="torch:Radau")
    with pytest.raises(ValueError, match="unknown sensitivity"):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], sensitivity="forward")


def test_engine_native_and_canonical_names_resolve_to_the_same_solver():
    y0 = torch.randn(2, 3)
    a = nno.solve(nno.NODE(TinyField(3)), y0, [0.0, 1.0], solver="torch:dopri5").ys
    b = nno.solve(nno.NODE(TinyField(3)), y0, [0.0, 1.0], solver="DP5", engine="torch").ys
    torch.testing.assert_close(a, b)


def test_fixed_step_solver_without_dt_says_to_pass_dt():
    with pytest.raises(ValueError, match="fixed-step solver: pass dt="):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="RK4")


def test_non_finite_state_raises_with_time_reached_and_stats():
    # y' = y² blows up at t = 1/y0 = 0.5.
    dyn = nno.NODE(lambda t, y: y * y)
    with pytest.raises(SolverError, match="failed at t = 0.5.*blow up") as info:
        nno.solve(dyn, torch.full((1, 1), 2.0, dtype=torch.float64), [0.0, 1.0], max_steps=None)
    assert info.value.stats.nfe_forward > 0 and abs(info.value.t_reached - 0.5) < 1e-3
    # Euler from y0 = 20 overflows float32 after a few steps of 0.1.
    with pytest.raises(SolverError, match=r"non-finite state by t = 0\.[5-9]"):
        nno.solve(dyn, torch.full((1, 1), 20.0), torch.linspace(0, 1, 11), solver="Euler", dt=0.1)


def test_step_count_beyond_max_steps_raises():
    dyn = nno.NODE(lambda t, y: -1000.0 * y)  # stiff for an explicit method
    with pytest.raises(SolverError, match="more than max_steps = 50") as info:
        nno.solve(dyn, torch.ones(1, 1), [0.0, 1.0], max_steps=50)
    assert info.value.stats.steps_accepted + info.value.stats.steps_rejected == 50
    with pytest.raises(ValueError, match="more than max_steps=10"):
        nno.solve(dyn, torch.ones(1, 1), [0.0, 1.0], solver="Euler", dt=0.01, max_steps=10)


def test_integer_state_is_refused():
    with pytest.raises(TypeError, match="floating-point"):
        nno.solve(nno.NODE(TinyField(3)), torch.ones(2, 3, dtype=torch.long), [0.0, 1.0])


def test_a_float32_state_with_a_float64_model_is_refused_naming_both():
    dyn = nno.NODE(TinyField(3).double())
    for options in ({}, {"compile": True}):
        with pytest.raises(TypeError, match="y0 is float32 but the model's parameter 'f.w1'"):
            nno.solve(dyn, torch.randn(2, 3), [0.0, 1.0], options=options)


def test_output_times_equal_in_the_states_dtype_are_refused():
    """1 and 1 + 1e-8 are two times in float64 but one in float32, y0's dtype: the solve
    would run an interval of zero length (rk once called that a NaN state)."""
    with pytest.raises(ValueError, match="equal in float32, y0's dtype"):
        nno.solve(nno.NODE(TinyField(3)), torch.randn(2, 3), [1.0, 1.0 + 1e-8])


@pytest.mark.parametrize("engine", ["rk", "torchdiffeq"])
def test_a_tolerance_the_dtype_cannot_resolve_is_named_as_the_cause(engine):
    """rtol = atol = 1e-300 on a plain NODE whose state stays finite: the failure names
    the tolerance and the fix, not a blow-up of a Nesterov model."""
    dyn = nno.NODE(TinyField(3).double())
    with pytest.warns(ToleranceWarning, match="below what float64 can resolve.*rtol >= 2e-15"):
        with pytest.raises(SolverError, match="rtol = 1e-300 .* below what float64") as info:
            nno.solve(
                dyn,
                torch.randn(2, 3, dtype=torch.float64),
                [0.0, 1.0],
                engine=engine,
                rtol=1e-300,
                atol=1e-300,
            )
    assert info.value.reason == "tolerance" and "NesterovNODE" not in str(info.value)


def test_the_tolerance_warning_tells_a_float64_user_the_tolerance_not_float64():
    with pytest.warns(ToleranceWarning) as caught:
        nno.solve(
            nno.NODE(TinyField(3).double()),
            torch.randn(2, 3, dtype=torch.float64),
            [0.0, 1.0],
            rtol=1e-17,
            atol=1e-9,
        )
    message = str(caught[0].message)
    assert "use rtol >= 2e-15" in message and "solve in float64" not in message


@pytest.mark.parametrize(
    "dtype, t0, r, low, high",
    [
        (torch.float64, 1e-300, 3.0, 6.1e-206, 1439.4),
        (torch.float32, 1e-30, 3.0, 4.0e-26, 191.2),
        (torch.float64, 2000.0, 3.0, 6.1e-206, 1439.4),
    ],
)
def test_a_nesterov_start_time_whose_factor_overflows_is_refused_with_the_range(
    dtype, t0, r, low, high
):
    """k(t0) = t0^(-r/2) e^(t0/2) overflows at t0 = 1e-300 (x0 = h0 / k(t0) became 0 and
    the readout NaN, silently): refused, naming the start times the dtype allows."""
    from nesterovnode.dynamics.nesterov import nesterov_k

    dyn = nno.NesterovNODE(TinyField(3).to(dtype), r=r)
    h0 = torch.randn(2, 3, dtype=dtype)
    with pytest.raises(ValueError, match="start at t0 between") as info:
        dyn.initial_state(t0, h0)
    found = [float(x) for x in str(info.value).split("between ")[1].split(" (")[0].split(" and ")]
    assert found[0] == pytest.approx(low, rel=0.02) and found[1] == pytest.approx(high, rel=0.01)
    for t in found:  # the edges themselves hold h0
        k = nesterov_k(torch.tensor(t, dtype=dtype), r)
        assert torch.isfinite(k) and k > 0
        assert torch.allclose(dyn.readout(t, dyn.initial_state(t, h0)), h0, rtol=1e-5)
