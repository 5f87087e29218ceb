"""Every solve reports its statistics; NFE counts equal what a counting f observes."""

from __future__ import annotations

import pytest
import torch

import nesterovnode as nno
from helpers import CallCounter, TinyField


@pytest.mark.parametrize("sensitivity", ["backprop", "adjoint", "adjoint-seminorm"])
@pytest.mark.parametrize("solver", ["DP5", "BS3", "RK4"])
def test_nfe_counts_equal_the_calls_f_observes(solver, sensitivity):
    f = CallCounter(TinyField(3))
    dyn = nno.NesterovNODE(f)
    y0 = dyn.initial_state(1.0, torch.randn(4, 3), torch.randn(4, 3))
    sol = nno.solve(
        dyn, y0, [1.0, 2.0], solver=solver, dt=0.05, sensitivity=sensitivity, rtol=1e-6, atol=1e-6
    )
    assert sol.stats.nfe_forward == f.calls > 0
    forward_calls = f.calls
    dyn.readout(2.0, sol.ys[-1]).square().sum().backward()
    assert sol.stats.nfe_backward == f.calls - forward_calls
    if sensitivity == "backprop":
        assert sol.stats.nfe_backward == 0  # autograd replays the graph, no evaluations
    else:
        assert sol.stats.nfe_backward > 0
        assert sol.stats.steps_accepted_backward > 0
    assert sol.stats.wall_time_forward > 0


def test_step_counts_are_consistent_with_dopri5_evaluations():
    # Dormand–Prince is FSAL: 6 new evaluations per attempted step, plus 2 at the start
    # (f(t0) and the initial step-size probe).
    dyn = nno.NODE(TinyField(3))
    sol = nno.solve(
        dyn, torch.randn(4, 3), [0.0, 1.0, 3.0], rtol=1e-9, atol=1e-9, sensitivity="backprop"
    )
    s = sol.stats
    assert s.nfe_forward == 2 + 6 * (s.steps_accepted + s.steps_rejected)
    assert len(s.step_sizes) == s.steps_accepted
    # the last step is shortened to end exactly on the last output time
    assert sum(s.step_sizes) == pytest.approx(3.0, rel=1e-12)
    assert s.t_reached == pytest.approx(3.0, rel=1e-12)
    assert s.solver == "DP5" and s.engine == "rk" and s.method == "dp5"


def test_fixed_step_solver_lands_on_every_output_time():
    dyn = nno.NODE(TinyField(3))
    sol = nno.solve(dyn, torch.randn(2, 3), [0.0, 0.25, 1.0], solver="RK4", dt=0.1)
    # [0, .25] in 3 steps of 1/12, [.25, 1] in 8 steps of 0.09375.
    assert sol.stats.steps_accepted == 11
    assert sol.stats.nfe_forward == 4 * 11
    assert max(sol.stats.step_sizes) <= 0.1


def test_stats_have_plain_numbers_for_logs():
    dyn = nno.HBNODE(TinyField(3))
    sol = nno.solve(dyn, dyn.initial_state(0.0, torch.randn(2, 3)), [0.0, 1.0])
    d = sol.stats.as_dict()
    assert d["nfe_forward"] == sol.stats.nfe_forward and d["solver"] == "DP5"
    assert "NFE" in sol.stats.summary()


@pytest.mark.parametrize("sensitivity", ["backprop", "adjoint"])
def test_fixed_step_grid_passes_gradients_to_the_output_times(sensitivity):
    # y' = -y, y(T) = y0 e^{-(T - t0)}: d y(T)/d t0 = y(T), d y(T)/d T = -y(T) (RK4 with
    # dt = 0.1 is accurate to ~1e-6 here)
    class Decay(torch.nn.Module):
        def forward(self, t, y):
            return -y

    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(1, 1, dtype=torch.float64)
    sol = nno.solve(nno.NODE(Decay()), y0, ts, solver="RK4", dt=0.1, sensitivity=sensitivity)
    (grad,) = torch.autograd.grad(sol.ys[-1].sum(), ts)
    exact = torch.exp(torch.tensor(-2.0, dtype=torch.float64))
    assert grad[0] == pytest.approx(float(exact), rel=1e-5)
    assert grad[2] == pytest.approx(-float(exact), rel=1e-5)
    assert abs(float(grad[1])) < 1e-6


def test_gradients_with_respect_to_the_output_times_cost_len_ts_plus_one_evaluations():
    """The contract's count (solve/adjoint.py): f once per output time and once more at t0,
    on top of the adjoint's own evaluations."""
    from helpers import TimeRecorder, TinyField

    net = TimeRecorder(TinyField(3).double())
    dyn = nno.NODE(net)
    y0 = torch.randn(2, 3, dtype=torch.float64)
    grids = [[0.0, 0.5, 1.0], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64).requires_grad_()]
    counts = []
    for ts in grids:
        net.times.clear()
        sol = nno.solve(dyn, y0.clone().requires_grad_(), ts, solver="RK4", dt=0.1)
        forward = len(net.times)
        sol.ys.sum().backward()
        assert sol.stats.nfe_backward == len(net.times) - forward
        counts.append(sol.stats.nfe_backward)
    assert counts[1] - counts[0] == len(grids[1]) + 1
