"""The ``solvers compare`` and ``stiffness`` subcommands of the ``nesterovnode`` CLI.

    nesterovnode solvers compare --task pointcloud --model nesterovnode \\
        --solvers DP5 BS3 RK4 scipy:Radau scipy:LSODA --tols 1e-3 1e-5 1e-7 --dt 0.1 --out DIR
    nesterovnode stiffness --task pointcloud --models node hbnode nesterovnode --epochs 30 --out DIR

``cli.py`` calls ``add_parsers(subparsers)``; each parser sets ``func`` to its handler,
which takes the argparse Namespace. The work itself is in ``compare_model`` and
``stiffness_of_models`` (a ``TaskModel`` in, plain results out), which tests and scripts
call directly.

Models: ``--checkpoint`` loads a trained run; otherwise ``--epochs N`` trains one with
``training.load_or_train`` (checkpointed under ``OUT/runs/<model>``, so a second call
reuses it), and ``--epochs 0`` takes the untrained model (fixed seed).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from .cli import _model_arg, _task_arg
from .io import write_json_atomic
from .tables import text_table
from .tasks import MODEL_NAMES

DEFAULT_SOLVERS = ("DP5", "BS3", "RK4", "scipy:Radau", "scipy:LSODA")


# -- models and data -------------------------------------------------------------------------
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
    default) by ``training.load_or_train``, or untrained when ``epochs == 0``."""
    from .tasks import get_task

    task = get_task(task_name)
    if checkpoint is None and epochs == 0:
        torch.manual_seed(seed)
        return task.build_model(model_name)
    from .runs.training import load_or_train

    if epochs is None:
        epochs = task.defaults.epochs
    run_dir = None if out is None or checkpoint is not None else Path(out) / "runs" / model_name
    return load_or_train(
        task_name, model_name, checkpoint=checkpoint, epochs=epochs, seed=seed, out_dir=run_dir
    )


def task_inputs(task_name: str, points: int | None = None, seed: int = 0) -> torch.Tensor:
    """Inputs ``x`` of the task's training set (the first ``points`` of a seeded shuffle)."""
    from .tasks import get_task

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


def _initial_state(model, x: torch.Tensor, dtype=torch.float64):
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
    from .diagnostics import compare_solvers

    model, y0, ts = _initial_state(model, x)
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
    from .diagnostics import stiffness_along_trajectory

    reports = {}
    for name, model in models.items():
        model, y0, ts = _initial_state(model, x)
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


def _write_json(path: Path, data) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    write_json_atomic(path, clean(data))


# -- handlers --------------------------------------------------------------------------------
def solver_table() -> str:
    """The solver registry: canonical name, properties and which engines offer it."""
    from .solve import SOLVERS, engines

    known = engines()
    head = [
        "solver",
        "order",
        "adaptive",
        "implicit",
        "stiff",
        "switching",
        "|hλ| bound",
        "engines (native name)",
    ]
    rows = []
    for name, info in SOLVERS.items():
        offered = []
        for ename, cls in known.items():
            if name in cls.methods:
                mark = "" if cls.available() else " [not installed]"
                offered.append(f"{ename} ({cls.methods[name]}){mark}")
        rows.append(
            [
                name,
                str(info.order),
                "yes" if info.adaptive else "no",
                "yes" if info.implicit else "no",
                "yes" if info.stiff else "no",
                "yes" if info.auto_switching else "no",
                "-" if info.stability_bound is None else f"{info.stability_bound:g}",
                ", ".join(offered) or "-",
            ]
        )
    return text_table(head, rows)


def run_list(args: argparse.Namespace) -> str:
    """``solvers list``: print the registry."""
    table = solver_table()
    print(table)
    return table


def run_compare(args: argparse.Namespace) -> dict:
    """``solvers compare``: print the table, write the work-precision PNG and JSON."""
    from .diagnostics import format_table
    from .plotting import plot_work_precision

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = get_model(
        args.task,
        args.model,
        checkpoint=args.checkpoint,
        epochs=args.epochs,
        seed=args.seed,
        out=out,
    )
    x = task_inputs(args.task, args.points, args.seed)
    comparison = compare_model(
        model,
        x,
        args.solvers,
        args.tols,
        args.dt,
        reference=args.reference,
        reference_tol=args.reference_tol,
        backward=args.backward,
        repeats=args.repeats,
    )
    trained = "untrained" if args.checkpoint is None and args.epochs == 0 else "trained"
    print(
        f"{args.task} {args.model} ({trained}), {len(x)} points, t in "
        f"[{comparison.ts[0]}, {comparison.ts[-1]}], float64"
    )
    print(format_table(comparison))
    stem = f"compare_{args.task}_{args.model}"
    json_path = out / f"{stem}.json"
    png = plot_work_precision(
        comparison,
        out / f"{stem}.png",
        title=f"{args.task} {args.model} ({trained}): work-precision",
    )
    _write_json(
        json_path,
        {
            "task": args.task,
            "model": args.model,
            "trained": trained == "trained",
            "points": len(x),
            **comparison.as_dict(),
        },
    )
    print(f"wrote {png} and {json_path}")
    return {"comparison": comparison, "png": png, "json": str(json_path)}


def run_stiffness(args: argparse.Namespace) -> dict:
    """``stiffness``: Jacobian spectra of several models along their trajectories."""
    from .plotting import plot_spectra

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {}
    checkpoints = dict(c.split("=", 1) for c in (args.checkpoints or []))
    for name in args.models:
        models[name] = get_model(
            args.task,
            name,
            checkpoint=checkpoints.get(name),
            epochs=args.epochs,
            seed=args.seed,
            out=out,
        )
    x = task_inputs(args.task, args.points, args.seed)
    reports = stiffness_of_models(
        models,
        x,
        n_times=args.times,
        solver=args.solver,
        tol=args.tol,
        per_sample=not args.whole_batch,
    )
    trained = "untrained" if args.epochs == 0 and not checkpoints else "trained"
    print(
        f"{args.task}: Jacobian spectra of ∂f/∂state along the trajectories ({trained}, "
        f"{len(x)} points, {args.times} times, {args.solver} at {args.tol:g}; ratio = "
        f"max|Re λ|/min|Re λ| over decaying modes, "
        f"{'per sample' if not args.whole_batch else 'whole batch'})"
    )
    print(format_stiffness_table(reports))
    stem = f"stiffness_{args.task}"
    json_path = out / f"{stem}.json"
    png = plot_spectra(reports, out / f"{stem}.png", title=f"{args.task} ({trained})")
    _write_json(
        json_path,
        {
            "task": args.task,
            "trained": trained == "trained",
            "points": len(x),
            "models": {k: r.as_dict() for k, r in reports.items()},
        },
    )
    print(f"wrote {png} and {json_path}")
    return {"reports": reports, "png": png, "json": str(json_path)}


# -- parsers ---------------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task", default="pointcloud", type=_task_arg, help="task name (default: pointcloud)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, model and training")
    p.add_argument(
        "--points",
        type=int,
        default=None,
        help="use this many inputs of the training set (default: all)",
    )


def add_parsers(subparsers) -> None:
    """Add ``solvers compare`` and ``stiffness`` to the CLI's subparsers."""
    solvers = subparsers.add_parser(
        "solvers",
        help="solver engines: compare named solvers on a model's ODE",
        description="Solver engines and solver comparison.",
    )
    sub = solvers.add_subparsers(dest="solvers_command", metavar="{list,compare}")
    sub.required = True
    lst = sub.add_parser("list", help="solver names, their properties and engines")
    lst.set_defaults(func=run_list)
    c = sub.add_parser(
        "compare",
        help="NFE, steps, error and time of several solvers and tolerances",
        description="Solve one model's ODE (from the task's inputs, float64) with several "
        "named solvers and tolerances; print NFE, steps, rejections, error against a tight "
        "reference and time; write a work-precision PNG and JSON.",
    )
    _model_args(c)
    c.add_argument(
        "--model",
        default="nesterovnode",
        type=_model_arg,
        help=f"one of: {', '.join(MODEL_NAMES)} (default: nesterovnode)",
    )
    c.add_argument("--checkpoint", default=None, help="a trained run (directory or .pt)")
    c.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="without --checkpoint: train this many epochs first (default 0: the untrained model)",
    )
    c.add_argument(
        "--solvers",
        nargs="+",
        default=list(DEFAULT_SOLVERS),
        help="solver names, e.g. DP5 BS3 RK4 scipy:Radau scipy:LSODA",
    )
    c.add_argument(
        "--tols",
        nargs="+",
        type=float,
        default=[1e-3, 1e-5, 1e-7],
        help="rtol = atol values for adaptive solvers",
    )
    c.add_argument(
        "--dt",
        nargs="+",
        type=float,
        default=[0.1, 0.05, 0.02],
        help="step sizes for fixed-step solvers (RK4, Euler, Midpoint)",
    )
    c.add_argument(
        "--reference",
        default="scipy:DOP853",
        help="reference solver (default scipy:DOP853, i.e. DP8 on SciPy)",
    )
    c.add_argument("--reference-tol", type=float, default=1e-12)
    c.add_argument(
        "--backward",
        action="store_true",
        help="also run a backward (adjoint) pass and report its NFE",
    )
    c.add_argument("--repeats", type=int, default=1, help="time the best of N runs")
    c.add_argument("--out", default="results/solvers", help="output directory")
    c.set_defaults(func=run_compare)

    s = subparsers.add_parser(
        "stiffness",
        help="compare the models' Jacobian spectra and stiffness ratios",
        description="Train (or load) models and compare the eigenvalues of ∂f/∂state, the "
        "stiffness ratio max|Re λ|/min|Re λ| and step size × spectral radius against the "
        "solver's stability bound along the trajectory; print a table, write PNG and JSON.",
    )
    _model_args(s)
    s.add_argument(
        "--models",
        nargs="+",
        default=list(MODEL_NAMES),
        type=_model_arg,
        help=f"any of: {', '.join(MODEL_NAMES)} (default: all)",
    )
    s.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default: the task's; 0: untrained models)",
    )
    s.add_argument(
        "--checkpoints",
        nargs="*",
        default=None,
        metavar="MODEL=PATH",
        help="trained runs to load instead of training",
    )
    s.add_argument("--times", type=int, default=11, help="analysis times along [t0, T]")
    s.add_argument("--solver", default="DP5")
    s.add_argument("--tol", type=float, default=1e-7)
    s.add_argument(
        "--whole-batch",
        action="store_true",
        help="one Jacobian for the whole batch instead of one per sample",
    )
    s.add_argument("--out", default="results/stiffness", help="output directory")
    s.set_defaults(func=run_stiffness)
