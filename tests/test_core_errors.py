"""Bad input raises an error that names the argument and the fix."""

from __future__ import annotations

import pytest
import torch

import nesterovnode as nn_
from conftest import TinyField
from nesterovnode.solve import SolverError


def test_nesterov_start_time_at_or_below_zero_is_refused():
    dyn = nn_.NesterovNODE(TinyField(3))
    with pytest.raises(ValueError, match="t0 must be > 0"):
        dyn.initial_state(0.0, torch.randn(2, 3))
    with pytest.raises(ValueError, match="singular at t = 0"):
        nn_.solve(dyn, torch.zeros(2, 2, 3), [-1.0, 1.0])
    with pytest.raises(ValueError, match="t0 must be > 0"):
        nn_.ODEBlock(nn_.GNesterovNODE(TinyField(3)), ts=(0.0, 1.0))


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
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), ts)


def test_network_returning_the_wrong_shape_is_named():
    dyn = nn_.HBNODE(TinyField(3, n_out=4))
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\).*needs \(2, 3\)"):
        nn_.solve(dyn, dyn.initial_state(0.0, torch.randn(2, 3)), [0.0, 1.0])
    with pytest.raises(TypeError, match="f must be an nn.Module or a callable"):
        nn_.NODE(3)


def test_unknown_solver_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown solver 'dopri7'.*RK4.*DP5"):
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="dopri7")
    with pytest.raises(ValueError, match="torchdiffeq engine has no solver 'Radau'"):
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="torch:Radau")
    with pytest.raises(ValueError, match="unknown sensitivity"):
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], sensitivity="forward")


def test_engine_native_and_canonical_names_resolve_to_the_same_solver():
    y0 = torch.randn(2, 3)
    a = nn_.solve(nn_.NODE(TinyField(3)), y0, [0.0, 1.0], solver="torch:dopri5").ys
    b = nn_.solve(nn_.NODE(TinyField(3)), y0, [0.0, 1.0], solver="DP5", engine="torch").ys
    torch.testing.assert_close(a, b)


def test_fixed_step_solver_without_dt_says_to_pass_dt():
    with pytest.raises(ValueError, match="fixed-step solver: pass dt="):
        nn_.solve(nn_.NODE(TinyField(3)), torch.randn(2, 3), [0.0, 1.0], solver="RK4")


def test_non_finite_state_raises_with_time_reached_and_stats():
    # y' = y² blows up at t = 1/y0 = 0.5.
    dyn = nn_.NODE(lambda t, y: y * y)
    with pytest.raises(SolverError, match="failed at t = 0.5.*blow up") as info:
        nn_.solve(dyn, torch.full((1, 1), 2.0, dtype=torch.float64), [0.0, 1.0], max_steps=None)
    assert info.value.stats.nfe_forward > 0 and abs(info.value.t_reached - 0.5) < 1e-3
    # Euler from y0 = 20 overflows float32 after a few steps of 0.1.
    with pytest.raises(SolverError, match=r"non-finite state by t = 0\.[5-9]"):
        nn_.solve(dyn, torch.full((1, 1), 20.0), torch.linspace(0, 1, 11), solver="Euler", dt=0.1)


def test_step_count_beyond_max_steps_raises():
    dyn = nn_.NODE(lambda t, y: -1000.0 * y)  # stiff for an explicit method
    with pytest.raises(SolverError, match="more than max_steps = 50") as info:
        nn_.solve(dyn, torch.ones(1, 1), [0.0, 1.0], max_steps=50)
    assert info.value.stats.steps_accepted + info.value.stats.steps_rejected == 50
    with pytest.raises(ValueError, match="more than max_steps=10"):
        nn_.solve(dyn, torch.ones(1, 1), [0.0, 1.0], solver="Euler", dt=0.01, max_steps=10)


def test_integer_state_is_refused():
    with pytest.raises(TypeError, match="floating-point"):
        nn_.solve(nn_.NODE(TinyField(3)), torch.ones(2, 3, dtype=torch.long), [0.0, 1.0])
