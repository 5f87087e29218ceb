"""Convergence order of the fixed-step solvers on y' = A y, y(t) = expm(A (t - t0)) y0.

The fitted slope of log(error) against log(dt) must be within ±0.3 of the method's order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nesterovnode as nn_
from conftest import Linear


def fitted_order(solver: str, dts) -> float:
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    ts = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = y0 @ torch.linalg.matrix_exp(2.0 * A).T
    errors = []
    for dt in dts:
        sol = nn_.solve(Linear(A), y0, ts, solver=solver, dt=dt, sensitivity="backprop")
        assert sol.stats.steps_accepted == round(2.0 / dt)
        errors.append(float((sol.ys[-1] - exact).abs().max()))
    slope, _ = np.polyfit(np.log(dts), np.log(errors), 1)
    return float(slope)


@pytest.mark.parametrize("engine", ["torch", "rk"])
@pytest.mark.parametrize(
    "solver, order, dts",
    [
        ("Euler", 1, [0.02, 0.01, 0.005, 0.0025]),
        ("Midpoint", 2, [0.04, 0.02, 0.01, 0.005]),
        ("RK4", 4, [0.2, 0.1, 0.05, 0.025]),
    ],
)
def test_fixed_step_solvers_converge_at_their_order(engine, solver, order, dts):
    slope = fitted_order(f"{engine}:{solver}", dts)
    assert abs(slope - order) < 0.3, f"{solver}: fitted order {slope:.2f}, expected {order}"


@pytest.mark.parametrize("solver", ["Heun", "BS3", "DP5", "DP8", "rk:BS3", "rk:DP5"])
def test_adaptive_solvers_error_at_T_falls_with_the_tolerance(solver):
    # Final-time error: torchdiffeq's dense output of BS3/DP8 between steps is of lower
    # order than the step itself, so interpolated outputs are not compared here.
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    ts = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = y0 @ torch.linalg.matrix_exp(2.0 * A).T
    errs = []
    for tol in (1e-5, 1e-8):
        sol = nn_.solve(Linear(A), y0, ts, solver=solver, rtol=tol, atol=tol)
        errs.append(float((sol.ys[-1] - exact).abs().max()))
    assert errs[1] < 2e-6 and errs[1] < errs[0] / 20, errs
