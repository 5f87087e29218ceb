"""The ``train`` and ``compare`` subcommands: parse, call ``runs.train`` / ``runs.compare``,
print the epochs and the table.

    nesterovnode train pointcloud --model nesterovnode [--epochs N] [--out DIR] [--resume]
    nesterovnode compare pointcloud [--models ...] [--epochs N] [--seeds K] [--out DIR] [--resume]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..tasks import TASKS
from .args import model_arg, task_arg


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", type=task_arg, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--epochs", type=int, help="epochs per run (task default if omitted)")
    p.add_argument("--lr", type=float, help="Adam learning rate (task default if omitted)")
    p.add_argument("--batch-size", type=int, help="batch size (task default if omitted)")
    p.add_argument("--solver", help="solver name, e.g. DP5, BS3, RK4, scipy:RK45 (default DP5)")
    p.add_argument("--tol", type=float, help="rtol = atol of the adaptive solver (task default)")
    p.add_argument(
        "--dt", type=float, help="a fixed step for any solver (needed by Euler, Midpoint, RK4)"
    )
    p.add_argument(
        "--sensitivity",
        help="adjoint (default), adjoint-seminorm, backprop, or an engine's own, e.g. "
        "torchdiffeq:adjoint (`nesterovnode list` shows them)",
    )
    p.add_argument(
        "--engine",
        help="solver engine: rk, torchdiffeq, scipy, julia (default: the first that offers "
        "the solver, rk for its methods)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (default cpu)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="model and data precision (default: the task's: float64 for pointcloud, "
        "float32 for the image tasks)",
    )
    p.add_argument(
        "--data-dir",
        help="directory holding the task's data files (image tasks; default "
        "$NESTEROVNODE_DATA, else ./data)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch missing MNIST/CIFAR-10 files into --data-dir (needs torchvision and internet)",
    )
    p.add_argument("--subset", type=int, help="train on the first N samples only (quick checks)")
    p.add_argument(
        "--test-subset", type=int, help="evaluate on the first N test samples only (quick checks)"
    )
    p.add_argument(
        "--max-iters",
        type=int,
        help="stop every epoch after N iterations (quick timings; one record per epoch still)",
    )
    p.add_argument("--r", type=float, help="Nesterov factor r for the Nesterov models (default 3)")
    p.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    p.add_argument("--overwrite", action="store_true", help="replace results found in --out")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _base_config(args, model: str = "nesterovnode", seed: int = 0):
    from ..runs.training import TrainConfig

    model_options = {}
    if args.r is not None:
        model_options["r"] = args.r
    if args.dt is not None:
        model_options["dt"] = args.dt
    return TrainConfig(
        task=args.task,
        model=model,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        solver=args.solver,
        tol=args.tol,
        sensitivity=args.sensitivity,
        engine=args.engine,
        device=args.device,
        dtype=args.dtype,
        seed=seed,
        data_dir=args.data_dir,
        subset=args.subset,
        test_subset=args.test_subset,
        max_iters=args.max_iters,
        download=args.download,
        model_options=model_options,
    )


def _prepare(args) -> None:
    """Settings shared by train and compare: --threads, and --paper's epochs and seeds."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if getattr(args, "paper", False):
        from ..tasks import get_task

        paper = get_task(args.task).defaults
        args.epochs = args.epochs or paper.paper_epochs or paper.epochs
        args.tol = args.tol or paper.paper_tol  # None: the task's tol is the paper's
        if hasattr(args, "seeds"):
            args.seeds = max(args.seeds or 0, paper.paper_seeds)


def format_epoch(rec: dict, task: str) -> str:
    """One line per epoch: loss, accuracy, test accuracy, NFE per batch, time, throughput."""
    if "mse" in rec:  # a regression task (walker2d)
        metric = f"mse {rec['mse']:.4f}"
        extra = f"  test mse {rec['test_mse']:.4f}" if "test_mse" in rec else ""
    else:
        metric = f"acc {rec['accuracy']:.3f}"
        extra = f"  test acc {rec['test_accuracy']:.4f}" if "test_accuracy" in rec else ""
    unit = "images/s" if task in ("mnist", "cifar10") else "samples/s"
    iters = rec.get("iterations")
    per_iter = f" ({rec['seconds'] / iters:.3f} s/it)" if iters else ""
    return (
        f"epoch {rec['epoch']:>3}  loss {rec['loss']:.4f}  {metric}{extra}  "
        f"NFE {rec['nfe_forward']:.1f}/{rec['nfe_backward']:.1f}  {rec['seconds']:.2f}s"
        f"{per_iter}  {rec['samples_per_second']:.1f} {unit}"
    )


def cmd_compare(args) -> int:
    from ..runs.comparison import compare, format_table, summary_rows
    from ..runs.training import distributed_env

    _prepare(args)
    out = Path(args.out or f"results/{args.task}")
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1)
    if args.device != "cpu":
        jobs = 1  # one process per GPU; use torchrun for several
    results = compare(
        _base_config(args),
        models=args.models,
        seeds=args.seeds or 1,
        out=out,
        resume=args.resume,
        overwrite=args.overwrite,
        jobs=jobs,
        progress=not args.no_progress,
    )
    if distributed_env()[0] == 0:
        print(format_table(summary_rows(results)))
        plots = ", ".join(str(p) for p in sorted(out.glob("*.png")))
        print(f"\nresults: {out / 'results.json'}\nplots:   {plots}")
    return 0


def cmd_train(args) -> int:
    from ..runs.comparison import format_table, summary_rows
    from ..runs.training import distributed_env, train

    _prepare(args)
    out = Path(args.out or f"runs/{args.task}/{args.model}/seed{args.seed}")
    cfg = _base_config(args, model=args.model, seed=args.seed)
    rank = distributed_env()[0]

    def show(rec):
        print(format_epoch(rec, args.task), flush=True)

    result = train(
        cfg,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        on_epoch=show,
    )
    if rank == 0:
        results = {
            "models": {
                args.model: {
                    "params": result.params,
                    "runs": [{"seed": args.seed, "epochs": result.history}],
                }
            }
        }
        print(format_table(summary_rows(results)))
        print(f"\ncheckpoint: {out / 'checkpoint.pt'}\nlog:        {out / 'log.jsonl'}")
    return 0


def add_parsers(sub) -> None:
    """Add ``compare`` and ``train`` to the CLI's subparsers."""
    p = sub.add_parser(
        "compare", help="train several models over seeds; table, results.json, plots"
    )
    _add_training_options(p)
    p.add_argument("--models", nargs="+", type=model_arg, help="default: all seven")
    p.add_argument("--seeds", type=int, help="runs per model (default 1)")
    p.add_argument("--out", help="output directory (default results/TASK)")
    p.add_argument("--paper", action="store_true", help="the paper's protocol (epochs, seeds)")
    p.add_argument("--jobs", type=int, help="runs in parallel processes (default: 2 on CPU)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train one model; checkpoint and log per epoch")
    _add_training_options(p)
    p.add_argument("--model", required=True, type=model_arg)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default runs/TASK/MODEL/seedK)")
    p.add_argument("--paper", action="store_true", help="the paper's number of epochs")
    p.set_defaults(func=cmd_train)

