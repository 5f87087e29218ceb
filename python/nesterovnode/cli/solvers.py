"""The ``list``, ``solvers compare`` and ``stiffness`` subcommands: parse, call the
library (``catalog``, ``runs.models`` for the models, ``diagnostics``), print the table,
write the PNG and JSON.

    nesterovnode list        (``nesterovnode solvers list`` prints the same)
    nesterovnode solvers compare --task pointcloud --model nesterovnode \\
        --solvers DP5 BS3 RK4 scipy:Radau scipy:LSODA --tols 1e-3 1e-5 1e-7 --dt 0.1 --out DIR
    nesterovnode stiffness --task pointcloud --models node hbnode nesterovnode --epochs 30 --out DIR

Models: ``--checkpoint`` loads a trained run; otherwise ``--epochs N`` trains one
(checkpointed under ``OUT/runs/<model>``, so a second call reuses it), and ``--epochs 0``
takes the untrained model (fixed seed); see ``runs.models``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagnostics.models import DEFAULT_SOLVERS
from ..dynamics.registry import MODEL_NAMES
from ..io import write_json_atomic
from .args import model_arg, nonnegative_int, positive_float, positive_int, task_arg


# -- handlers --------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> str:
    """``list``: models (with their options), tasks, solvers with their engines, engines."""
    from ..catalog import catalog

    text = catalog()
    print(text)
    return text


def run_compare(args: argparse.Namespace) -> dict:
    """``solvers compare``: print the table, write the work-precision PNG and JSON."""
    from ..diagnostics import compare_model, format_table
    from ..plotting import plot_work_precision
    from ..runs.models import get_model, task_inputs

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
    write_json_atomic(
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
    from ..diagnostics import format_stiffness_table, stiffness_of_models
    from ..plotting import plot_spectra
    from ..runs.models import get_model, task_inputs

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
    write_json_atomic(
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
        "--task", default="pointcloud", type=task_arg, help="task name (default: pointcloud)"
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of data, model and training"
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=None,
        help="use this many inputs of the training set (default: all)",
    )


def add_parsers(subparsers) -> None:
    """Add ``solvers compare`` and ``stiffness`` to the CLI's subparsers."""
    solvers = subparsers.add_parser(
        "solvers",
        help="compare named solvers on a model's ODE (`solvers list`: as `list`)",
        description="Solver engines and solver comparison.",
    )
    sub = solvers.add_subparsers(dest="solvers_command", metavar="{list,compare}")
    sub.required = True
    lst = sub.add_parser("list", help="the same as `nesterovnode list`")
    lst.set_defaults(func=cmd_list)
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
        type=model_arg,
        help=f"one of: {', '.join(MODEL_NAMES)} (default: nesterovnode)",
    )
    c.add_argument("--checkpoint", default=None, help="a trained run (directory or .pt)")
    c.add_argument(
        "--epochs",
        type=nonnegative_int,
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
        type=positive_float,
        default=[1e-3, 1e-5, 1e-7],
        help="rtol = atol values for adaptive solvers",
    )
    c.add_argument(
        "--dt",
        nargs="+",
        type=positive_float,
        default=[0.1, 0.05, 0.02],
        help="step sizes for fixed-step solvers (RK4, Euler, Midpoint)",
    )
    c.add_argument(
        "--reference",
        default="scipy:DOP853",
        help="reference solver (default scipy:DOP853, i.e. DP8 on SciPy)",
    )
    c.add_argument("--reference-tol", type=positive_float, default=1e-12)
    c.add_argument(
        "--backward",
        action="store_true",
        help="also run a backward (adjoint) pass and report its NFE",
    )
    c.add_argument("--repeats", type=positive_int, default=1, help="time the best of N runs")
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
        type=model_arg,
        help=f"any of: {', '.join(MODEL_NAMES)} (default: all)",
    )
    s.add_argument(
        "--epochs",
        type=nonnegative_int,
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
    s.add_argument("--times", type=positive_int, default=11, help="analysis times along [t0, T]")
    s.add_argument("--solver", default="DP5")
    s.add_argument("--tol", type=positive_float, default=1e-7)
    s.add_argument(
        "--whole-batch",
        action="store_true",
        help="one Jacobian for the whole batch instead of one per sample",
    )
    s.add_argument("--out", default="results/stiffness", help="output directory")
    s.set_defaults(func=run_stiffness)


def add_list_parser(subparsers) -> None:
    """Add ``list`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "list", help="models and their options, tasks, solvers with their engines, engines"
    )
    p.set_defaults(func=cmd_list)
