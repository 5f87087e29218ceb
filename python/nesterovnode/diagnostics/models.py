"""Diagnostics on a task's models: load or train a model, take the task's inputs, and run
the solver comparison (``compare.compare_solvers``) or the stiffness analysis
(``stiffness.stiffness_along_trajectory``) on its ODE block.

Models: ``get_model`` loads a trained run (``checkpoint``), trains one with
``runs.training.load_or_train`` (checkpointed under ``OUT/runs/<model>``, so a second call
reuses it) or, with ``epochs=0``, takes the untrained model (fixed seed). The work itself
(``compare_model``, ``stiffness_of_models``) takes ``TaskModel``s and returns plain results
(the CLI's ``solvers compare`` and ``stiffness`` print and write them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..tables import text_table
from .compare import compare_solvers
from .stiffness import stiffness_along_trajectory

DEFAULT_SOLVERS = ("DP5", "BS3", "RK4", "scipy:Radau", "scipy:LSODA")


# -- models and inputs -------------------------------------------------------------------------
def get_model(
    task_name: str,
    model_name: str,
    *,
    checkpoint: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
):
    """A ``TaskModel``: from ``checkpoint``, trained for ``epochs`` (None: the task's
    default) by ``runs.training.load_or_train``, or untrained when ``epochs == 0``."""
    from ..tasks import get_task

    task = get_task(task_name)
    if checkpoint is None and epochs == 0:
        torch.manual_seed(seed)
        return task.build_model(model_name)
    from ..runs.training import load_or_train

    if epochs is None:
        epochs = task.defaults.epochs
    run_dir = None if out is None or checkpoint is not None else Path(out) / "runs" / model_name
    return load_or_train(
        task_name, model_name, checkpoint=checkpoint, epochs=epochs, seed=seed, out_dir=run_dir
    )


def task_inputs(task_name: str, points: int | None = None, seed: int = 0) -> torch.Tensor:
    """Inputs ``x`` of the task's training set (the first ``points`` of a seeded shuffle)."""
    from ..tasks import get_task

    data = get_task(task_name).datasets(seed)[0]
    x = (
        data.tensors[0]
        if hasattr(data, "tensors")
        else torch.stack([data[i][0] for i in range(len(data))])
    )
    if points is not None and points < len(x):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x = x[perm[:points]]
    return x


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
    "get_model",
    "initial_state",
    "stiffness_of_models",
    "task_inputs",
]
