"""The ``train`` and ``compare`` subcommands: parse, call ``runs.train`` / ``runs.compare``,
print the epochs and the table.

    nesterovnode train pointcloud --model nesterovnode [--epochs N] [--out DIR] [--resume]
    nesterovnode compare pointcloud [--models ...] [--epochs N] [--seeds K] [--out DIR] [--resume]
                                    [--executor local|ray [--address ADDR] [--retries N]]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..runs.compiling import FIRST_RUN_SECONDS, SETTINGS
from ..tasks import TASKS
from .args import model_arg, nonnegative_int, positive_float, positive_int, task_arg


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", type=task_arg, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--epochs", type=positive_int, help="epochs per run (task default if omitted)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (task default if omitted)")
    p.add_argument("--batch-size", type=positive_int, help="batch size (task default if omitted)")
    p.add_argument("--solver", help="solver name, e.g. DP5, BS3, RK4, scipy:RK45 (default DP5)")
    p.add_argument(
        "--tol", type=positive_float, help="rtol = atol of the adaptive solver (task default)"
    )
    p.add_argument(
        "--dt",
        type=positive_float,
        help="a fixed step for any solver (needed by Euler, Midpoint, RK4)",
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
    p.add_argument(
        "--compile",
        choices=SETTINGS,
        default="auto",
        help="the rk engine's compiled solves: each solve (forward and adjoint), its "
        "first-step rule and its whole adaptive loop, traced and compiled to native code "
        f"by TorchInductor, {FIRST_RUN_SECONDS[True]} s per model "
        "on a machine's first run, a few seconds once Inductor's disk cache holds them; "
        f"steps: the adaptive steps only ({FIRST_RUN_SECONDS['steps']} s), the first-step "
        "rule, once per solve, eager; auto (default): steps for CPU runs of the point "
        "cloud of at least 300 iterations (the main job), on from 3000",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (cuda when torch sees a GPU, else cpu; the default), cpu, cuda or cuda:K",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="model and data precision (default: the task's: float64 for pointcloud, "
        "float32 for the image tasks and walker2d; --paper: float64 for walker2d)",
    )
    p.add_argument(
        "--data-dir",
        help="directory of the task's data: mnist: the four IDX files (or DIR/mnist/, "
        "DIR/MNIST/raw/); cifar10: the CIFAR-10 batches; walker2d: rollouts.npz (or "
        "DIR/walker2d/rollouts.npz); pointcloud generates its own. Default: "
        "$NESTEROVNODE_DATA, else ./data in the working directory",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch missing MNIST/CIFAR-10 files into --data-dir (needs torchvision and internet)",
    )
    p.add_argument(
        "--subset", type=positive_int, help="train on the first N samples only (quick checks)"
    )
    p.add_argument(
        "--test-subset",
        type=positive_int,
        help="evaluate on the first N test samples only (quick checks)",
    )
    p.add_argument(
        "--max-iters",
        type=positive_int,
        help="stop every epoch after N iterations (quick timings; one record per epoch); "
        "without --epochs the run is one epoch",
    )
    p.add_argument(
        "--r",
        type=positive_float,
        help="Nesterov factor r (nesterovnode, gnesterovnode only; default 3)",
    )
    p.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    p.add_argument("--overwrite", action="store_true", help="replace results found in --out")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (without a terminal there is none: one line per epoch instead)",
    )


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """--executor, --address, --retries: where a sweep's runs go (docs/cluster.md)."""
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: a pool of --jobs processes on this machine (default); ray: one Ray task "
        'per run (pip install "nesterovnode[cluster]"), on an embedded local Ray of this '
        "machine's cores, or on the cluster --address names",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the cluster to join: auto (the one this machine is a node "
        "of), HOST:PORT (the head's, from `ray start --head`), ray://HOST:PORT (Ray Client)",
    )
    p.add_argument(
        "--retries",
        type=nonnegative_int,
        default=3,
        help="with --executor ray: times a run is retried when its worker or node dies "
        "(Ray's max_retries; it resumes from its last epoch)",
    )


def _base_config(args, model: str = "nesterovnode", seed: int = 0):
    """The run asked for: the solve options given change the task's SolveConfig (the
    rest is the task's), --r goes to the dynamics."""
    from ..runs import TrainConfig

    model_options = {}
    if args.r is not None:
        model_options["r"] = args.r
    solve = {
        "solver": args.solver,
        "tol": args.tol,  # rtol = atol
        "dt": args.dt,
        "sensitivity": args.sensitivity,
        "engine": args.engine,
    }
    return TrainConfig(
        task=args.task,
        model=model,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        solve={k: v for k, v in solve.items() if v is not None},
        device=args.device,
        dtype=args.dtype,
        seed=seed,
        data_dir=args.data_dir,
        subset=args.subset,
        test_subset=args.test_subset,
        max_iters=args.max_iters,
        download=args.download,
        model_options=model_options,
        compile=args.compile,
    )


def _check_model_options(args, models: list[str]) -> None:
    """Options that only some models have (--r) are refused for the others."""
    from ..dynamics.registry import MODELS

    if args.r is not None:
        without = [m for m in models if "r" not in MODELS[m].options]
        if without:
            having = ", ".join(m for m in MODELS if "r" in MODELS[m].options)
            raise ValueError(
                f"--r applies to {having} only, not to {', '.join(without)}; drop --r or "
                f"choose those models"
            )


def _compiled(results: dict) -> str:
    """How the comparison's steps ran: --compile's setting and the seconds its runs spent
    compiling (Inductor's disk cache makes later runs of the same models cheaper)."""
    seconds = sum(
        e.get("compile_seconds", 0.0)
        for entry in results["models"].values()
        for run in entry["runs"]
        for e in run["epochs"]
    )
    setting = results["configuration"].get("compile", "off")
    if seconds == 0:
        return f"--compile {setting}: eager steps"
    return f"--compile {setting}: compiled steps, {seconds:.0f} s compiling in all runs"


def _device(args) -> str:
    """--device auto: cuda when torch sees a GPU, else cpu."""
    if args.device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return args.device


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _plain_lines(args) -> bool:
    """One line per epoch when no progress bar is drawn (not a terminal, or --no-progress)."""
    return args.no_progress or not sys.stderr.isatty()


def _apply_paper(args) -> None:
    """--paper: the task's paper protocol (``TaskDefaults.paper_protocol``: seeds, epochs,
    tolerance, dtype) for every one of these options not given. An option given explicitly
    wins; where it differs from the paper's value it is recorded in
    ``args.paper_departures`` ({option: (given, paper's)}) and said on stderr, and the
    run is then not the paper's protocol."""
    from ..tasks import get_task

    protocol = get_task(args.task).defaults.paper_protocol()
    if not hasattr(args, "seeds"):  # train: one run, no seeds
        protocol.pop("seeds")
    args.paper_departures = {}
    for option, paper_value in protocol.items():
        given = getattr(args, option)
        if given is None:
            setattr(args, option, paper_value)
        elif given != paper_value:
            args.paper_departures[option] = (given, paper_value)
    if args.paper_departures:
        _say(
            f"--paper with {departure_text(args.paper_departures, paper=True)}: the options "
            f"given replace the paper's, so this run is not the paper's protocol"
        )


def departure_text(departures: dict, paper: bool = False) -> str:
    """``--seeds 1, --dtype float32`` (with ``paper``: each followed by the paper's value)."""

    def value(v) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(
        f"--{option} {value(given)}" + (f" (the paper's: {value(theirs)})" if paper else "")
        for option, (given, theirs) in departures.items()
    )


def _prepare(args) -> None:
    """Settings shared by train and compare: --threads, --device auto, --max-iters without
    --epochs, and --paper's protocol (``_apply_paper``)."""
    args.device = _device(args)
    args.paper_departures = {}
    if args.max_iters is not None and args.epochs is None and not getattr(args, "paper", False):
        args.epochs = 1
        _say(
            f"--max-iters {args.max_iters} without --epochs: one epoch of at most "
            f"{args.max_iters} iterations"
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if getattr(args, "paper", False):
        _apply_paper(args)


def _protocol_text(configuration: dict, departures: dict) -> str:
    """Whether a comparison ran the paper's protocol, and if not what departed from it."""
    if configuration["paper_protocol"]:
        return "the paper's protocol"
    if departures:
        return f"not the paper's protocol (--paper with {departure_text(departures)})"
    return "not the paper's protocol (--paper)"


def format_epoch(rec: dict, task: str, epochs: int | None = None) -> str:
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
    of = f"/{epochs}" if epochs else ""
    return (
        f"epoch {rec['epoch']:>3}{of}  loss {rec['loss']:.4f}  {metric}{extra}  "
        f"NFE {rec['nfe_forward']:.1f}/{rec['nfe_backward']:.1f}  {rec['seconds']:.2f}s"
        f"{per_iter}  {rec['samples_per_second']:.1f} {unit}"
    )


def cmd_compare(args) -> int:
    from ..dynamics.registry import MODEL_NAMES
    from ..runs import compare, format_table, summary_rows
    from ..runs.distributed import distributed_env

    _check_model_options(args, args.models or list(MODEL_NAMES))
    _prepare(args)
    out = Path(args.out or f"results/{args.task}")
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1)
    if args.device != "cpu":
        jobs = 1  # one process per GPU; use torchrun for several
    executor = _executor(args)  # a cluster that does not answer fails here: nothing written
    epochs_of = {}

    def line(model, seed, rec):
        total = epochs_of.get("n")
        print(f"{model} seed {seed} " + format_epoch(rec, args.task, total), flush=True)

    base = _base_config(args)
    from ..tasks import get_task

    epochs_of["n"] = args.epochs or get_task(args.task).defaults.epochs
    try:
        results = compare(
            base,
            models=args.models,
            seeds=args.seeds or 1,
            out=out,
            resume=args.resume,
            overwrite=args.overwrite,
            jobs=jobs,
            executor=executor,
            progress=not args.no_progress,
            paper=bool(args.paper),
            paper_departures={k: given for k, (given, _) in args.paper_departures.items()},
            on_epoch=line if _plain_lines(args) else None,
            notify=_say,
        )
    finally:
        if executor is not None:
            executor.close()
    if distributed_env()[0] == 0:
        conf = results["configuration"]
        where = " on Ray" if conf.get("executor") == "ray" else ""
        print(
            f"\n{args.task}: {conf['epochs']} epochs, {conf['seeds']} seed(s), "
            f"{conf['solver']} on {conf['engine']} at tol {conf['rtol']:g}, {conf['dtype']}, "
            f"{conf['device']}, {conf['jobs']} run(s) in parallel{where}, {_compiled(results)}; "
            + _protocol_text(conf, args.paper_departures)
        )
        print(format_table(summary_rows(results)))
        plots = ", ".join(str(p) for p in sorted(out.glob("*.png")))
        print(f"\nresults: {out / 'results.json'}\nplots:   {plots}")
        if results["failed"]:
            _say(
                f"nesterovnode: {len(results['failed'])} run(s) failed (the lines above); "
                f"the others are in the table"
            )
            return 1
    return 0


def _executor(args):
    """--executor ray: a started ``RayExecutor`` (its cluster reached and checked); None
    for the local executor (``compare`` makes it from --jobs)."""
    if args.executor != "ray":
        if args.address is not None:
            raise ValueError("--address names a Ray cluster: add --executor ray")
        return None
    if args.jobs is not None:
        raise ValueError(
            "--jobs sets the local executor's processes; on Ray the cluster's CPUs over "
            "--threads (CPUs and torch threads per run, default 1) decide how many runs go "
            "at once: drop --jobs"
        )
    from ..runs.cluster import RayExecutor

    return RayExecutor(
        args.address,
        threads=args.threads or 1,
        device=args.device,
        retries=args.retries,
        progress=not args.no_progress,
    ).start()


def cmd_train(args) -> int:
    from ..runs import RunFailed, format_table, run_rows
    from ..runs.distributed import distributed_env
    from ..runs.training import train  # looked up at call time: tests stand in for it

    _check_model_options(args, [args.model])
    _prepare(args)
    out = Path(args.out or f"runs/{args.task}/{args.model}/seed{args.seed}")
    cfg = _base_config(args, model=args.model, seed=args.seed)
    rank = distributed_env()[0]
    done = []

    def show(rec):
        done.append(rec["epoch"])
        print(format_epoch(rec, args.task), flush=True)

    try:
        result = train(
            cfg,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            on_epoch=show,
            notify=_say if rank == 0 else None,
        )
    except RunFailed as failure:
        _say(f"nesterovnode: run failed: {failure}")
        return 1
    except KeyboardInterrupt:
        if rank == 0:
            _say(
                f"\ninterrupted: every finished epoch is checkpointed in {out}; run the same "
                f"command with --resume to continue"
            )
        raise
    if rank == 0:
        print(format_table(run_rows(result)))
        print(f"\ncheckpoint: {out / 'checkpoint.pt'}\nlog:        {out / 'log.jsonl'}")
    return 0


def add_parsers(sub) -> None:
    """Add ``compare`` and ``train`` to the CLI's subparsers."""
    p = sub.add_parser(
        "compare", help="train several models over seeds; table, results.json, plots"
    )
    _add_training_options(p)
    p.add_argument("--models", nargs="+", type=model_arg, help="default: all seven")
    p.add_argument("--seeds", type=positive_int, help="runs per model (default 1)")
    p.add_argument("--out", help="output directory (default results/TASK)")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's protocol: its seeds, epochs, tolerance and dtype, for each of "
        "these options not given (a given one wins, and the run is then recorded as not "
        "the paper's protocol)",
    )
    p.add_argument(
        "--jobs", type=positive_int, help="runs in parallel processes (default: 2 on CPU)"
    )
    add_executor_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train one model; checkpoint and log per epoch")
    _add_training_options(p)
    p.add_argument("--model", required=True, type=model_arg)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", help="run directory (default runs/TASK/MODEL/seedK)")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's epochs, tolerance and dtype, for each of these options not given",
    )
    p.set_defaults(func=cmd_train)
