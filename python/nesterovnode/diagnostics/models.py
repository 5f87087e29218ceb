"""Diagnostics on a model of a task: the solver comparison (``compare.compare_solvers``)
or the stiffness analysis (``stiffness.stiffness_along_trajectory``) on its ODE block.

The work (``compare_model``, ``stiffness_of_models``) takes models that have an
``initial_state(x)``, a ``block.ts`` and ``dynamics`` (a ``TaskModel``) and inputs ``x``,
and returns plain results; where the models come from (a checkpoint, a training run, an
untrained build: ``runs.models``) is not this package's concern, so diagnostics imports
nothing from runs, tasks or cli. The CLI's ``solvers compare`` and ``stiffness`` print and
write the results.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..tables import text_table
from .compare import compare_solvers
from .stiffness import stiffness_along_trajectory

DEFAULT_SOLVERS = ("DP5", "BS3", "RK4", "scipy:Radau", "scipy:LSODA")


# -- a model's start ---------------------------------------------------------------------------
def initial_state(model, x: torch.Tensor, dtype=torch.float64):
    """``(model, y0, ts)``: the model converted to ``dtype``, its solver state at t0 for the
    inputs ``x`` and its output times, all in ``dtype``."""
    model = model.to(dtype)
    with torch.no_grad():
        y0 = model.initial_state(x.to(dtype))
    ts = model.block.ts.to(dtype)
    return model, y0, ts


# -- the work (TaskModel in, results out) ----------------------------------------------------
def compare_model(
    model,
    x: torch.Tensor,
    solvers: Sequence[str] = DEFAULT_SOLVERS,
    tols: Sequence[float] = (1e-3, 1e-5, 1e-7),
    dts: Sequence[float] | None = None,
    *,
    reference: str = "scipy:DOP853",
    reference_tol: float = 1e-12,
    backward: bool = False,
    repeats: int = 1,
):
    """Compare ``solvers`` on the ODE block of ``model`` started from the inputs ``x``
    (float64), see ``diagnostics.compare_solvers``."""

    model, y0, ts = initial_state(model, x)
    return compare_solvers(
        model.dynamics,
        y0,
        ts,
        solvers,
        tols,
        dt=dts,
        reference=reference,
        reference_tol=reference_tol,
        backward=backward,
        repeats=repeats,
    )


def stiffness_of_models(
    models: dict,
    x: torch.Tensor,
    *,
    n_times: int = 11,
    solver: str = "DP5",
    tol: float = 1e-7,
    per_sample: bool = True,
):
    """``{name: StiffnessReport}``: Jacobian spectra of each model's state along its
    trajectory from the inputs ``x`` at ``n_times`` equally spaced times (float64)."""

    reports = {}
    for name, model in models.items():
        model, y0, ts = initial_state(model, x)
        times = torch.linspace(float(ts[0]), float(ts[-1]), n_times, dtype=torch.float64)
        reports[name] = stiffness_along_trajectory(
            model.dynamics, y0, times, solver=solver, rtol=tol, atol=tol, per_sample=per_sample
        )
    return reports


def format_stiffness_table(reports: dict) -> str:
    """One row per model: NFE, steps, spectral radius, stiffness ratios, h·ρ/bound."""
    head = [
        "model",
        "NFE",
        "steps",
        "rejected",
        "max ρ",
        "max Re λ",
        "median ratio",
        "mean ratio",
        "max ratio",
        "max hρ/bound",
    ]
    rows = []
    for name, rep in reports.items():
        s = rep.summary()
        hb = s["max_h_rho_over_bound"]
        rows.append(
            [
                name,
                str(s["nfe"]),
                str(s["steps"]),
                str(s["rejected"]),
                f"{s['max_spectral_radius']:.3g}",
                f"{s['max_re']:.3g}",
                f"{s['median_stiffness_ratio']:.3g}",
                f"{s['mean_stiffness_ratio']:.3g}",
                f"{s['max_stiffness_ratio']:.3g}",
                "-" if hb is None else f"{hb:.3g}",
            ]
        )
    return text_table(head, rows)


__all__ = [
    "DEFAULT_SOLVERS",
    "compare_model",
    "format_stiffness_table",
    "initial_state",
    "stiffness_of_models",
]
