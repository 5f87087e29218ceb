"""Shared code of the experiment scripts (not part of the library).

Every script here has the same shape: CPU-sized defaults that finish in minutes,
``--paper`` for the paper's sizes, ``--out DIR``; it writes ``results.json`` and PNGs
atomically (``nesterovnode.io``, ``nesterovnode.plotting.save``), shows a progress bar on
long work, and ends by printing what was seen (``report``).

Image experiments (r ablation, Euler stability) train with the library's ``train`` and
write ``results.json`` in the format of ``nesterovnode compare`` (``{"task", "config",
"models": {LABEL: {"params", "runs": [{"seed", "epochs": [...]}]}}}``), so
``image_curves.py`` draws any of them, or any ``nesterovnode compare mnist|cifar10``
output, in the same panels.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesterovnode.io import write_json_atomic
from nesterovnode.plotting import color, label, line_style, new_figure, save

#: The repository root (experiments/ lives in it).
ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """NESTEROVNODE_DATA when set, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("NESTEROVNODE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """The arguments every experiment takes: --out, --paper, --seed, --threads, --quiet."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", default=default_out, help="folder for results.json and the PNGs")
    p.add_argument("--paper", action="store_true", help="the paper's sizes (long; GPU for images)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def setup(args: argparse.Namespace) -> Path:
    """Apply --threads; return --out as a Path (created on first write)."""
    torch.set_num_threads(max(1, args.threads))
    return Path(args.out)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", quiet: bool = False):
    """A tqdm bar over ``iterable`` (none when quiet or stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=False,
        disable=True if quiet else None,
        dynamic_ncols=True,
    )


def write_results(out: Path, results: dict[str, Any]) -> Path:
    """``out/results.json``, strict JSON, written atomically."""
    path = Path(out) / "results.json"
    write_json_atomic(path, results)
    return path


def report(lines: list[str], out: Path | None = None) -> str:
    """Print the statement of what was seen (and keep it in ``out/seen.txt``)."""
    from nesterovnode.io import write_text_atomic

    text = "\n".join(lines)
    print(text)
    if out is not None:
        write_text_atomic(Path(out) / "seen.txt", text + "\n")
    return text


def fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x (the exponent p of y ~ x^p)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


# -- Silverbox ------------------------------------------------------------------------------


def load_silverbox(data_dir: str | Path | None = None) -> np.ndarray:
    """The Silverbox benchmark (Wigren & Schoukens) as ``[N, 2]`` float64: columns V1 (input
    voltage) and V2 (output voltage), from ``DATA_DIR/silverbox.csv`` (header "V1","V2";
    a trailing comma per line is allowed)."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    path = folder / "silverbox.csv" if folder.is_dir() or not folder.suffix else folder
    if not path.exists():
        raise FileNotFoundError(
            f"no Silverbox data at {path}; pass --data-dir with the folder holding "
            f"silverbox.csv (columns V1, V2; the Wigren & Schoukens benchmark)"
        )
    data = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0, 1), dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 2 or not np.isfinite(data).all():
        raise ValueError(f"{path}: expected two finite numeric columns V1, V2")
    return data


# -- image runs ------------------------------------------------------------------------------


def image_run_options(args: argparse.Namespace, data_dir: str, **fixed) -> dict[str, Any]:
    """TrainConfig fields shared by the image experiments: the CPU-sized defaults (2
    epochs on 128 training / 300 test images at lr 1e-3) unless ``--paper``, the user's
    overrides, and ``fixed`` (the experiment's own, e.g. the model)."""
    cpu = not args.paper
    return dict(
        task=args.task,
        epochs=args.epochs or (2 if cpu else None),
        lr=args.lr or (1e-3 if cpu else None),
        batch_size=args.batch_size,
        subset=args.subset or (128 if cpu else None),
        test_subset=args.test_subset or (300 if cpu else None),
        device=args.device,
        data_dir=data_dir,
        **fixed,
    )


def run_description(args: argparse.Namespace, runs, figure: str, **extra) -> dict[str, Any]:
    """What an image experiment's results.json says about its runs: the figure, the data
    (MNIST here is labelled as standing in for CIFAR-10), the shared training settings."""
    return {
        "figure": figure,
        "data": "MNIST (CIFAR-10 absent here)" if args.task == "mnist" else "CIFAR-10",
        **extra,
        # the settings all runs share: not the dynamics' or the solve's, which the
        # experiments vary per run (``extra`` names them)
        "train": {k: v for k, v in vars(runs[0][1]).items() if k not in ("model_options", "solve")},
    }


def train_runs(
    runs: list[tuple[str, Any]],
    out: Path,
    task_name: str,
    extra: dict[str, Any],
    quiet: bool = False,
    executor=None,
) -> dict[str, Any]:
    """Train each ``(label, TrainConfig)`` (resuming a run folder ``out/runs/LABEL/seedK``
    found there) on ``executor`` (default: one after another in this process; see
    ``make_executor``), writing ``results.json`` in the comparison format after every
    run (labels and seeds in the order of ``runs``)."""
    from nesterovnode.runs.sweep import InProcess, Job, sweep
    from nesterovnode.tasks import get_task

    jobs = [Job(cfg.resolved(get_task(cfg.task)), str(out), name) for name, cfg in runs]
    results: dict[str, Any] = {"task": task_name, "config": extra, "models": {}}
    done: dict[tuple[str, int], dict[str, Any]] = {}

    def collect(entry: dict[str, Any]) -> None:
        done[(entry["name"], entry["seed"])] = entry
        models: dict[str, Any] = {}
        for job in jobs:  # the order of ``runs``, whatever order they finished in
            if job.key in done:
                got = done[job.key]
                block = models.setdefault(job.label, {"params": got["params"], "runs": []})
                block["runs"].append({"seed": got["seed"], "epochs": got["epochs"]})
        results["models"] = models
        write_results(out, results)

    sweep(jobs, executor or InProcess(progress=not quiet), collect)
    return results


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """--executor, --address, --retries, as ``nesterovnode compare`` takes them
    (docs/cluster.md); --threads is then the CPUs of a run."""
    from nesterovnode.cli.runs import add_executor_options

    add_executor_options(p)


def make_executor(args: argparse.Namespace):
    """The executor --executor asks for: None (the runs one after another here) for local,
    a started ``RayExecutor`` for ray (close it when done)."""
    if args.executor != "ray":
        if args.address is not None:
            die("--address names a Ray cluster: add --executor ray")
        return None
    from nesterovnode.runs.cluster import RayExecutor

    return RayExecutor(
        args.address,
        threads=args.threads,
        device=args.device,
        retries=args.retries,
        progress=not args.quiet,
    ).start()


def image_data_dir(args: argparse.Namespace, task: str) -> str:
    """The image data folder: --data-dir, else the shared data's mnist/ (MNIST)."""
    if args.data_dir:
        return args.data_dir
    return str(default_data_dir() / ("mnist" if task == "mnist" else "cifar10"))


def _curves(entry: dict, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, mean, std) over seeds of ``key`` against epoch; key "time" is the cumulative
    training seconds (x is then that mean time, the y the test accuracy)."""
    runs = [r["epochs"] for r in entry["runs"] if r["epochs"]]
    if not runs:
        return None
    n = min(len(r) for r in runs)
    if key == "time":
        t = np.array([np.cumsum([e["seconds"] for e in r[:n]]) for r in runs]).mean(axis=0)
        if not all("test_accuracy" in e for e in runs[0][:n]):
            return None
        acc = np.array([[e["test_accuracy"] for e in r[:n]] for r in runs], dtype=float)
        return t, acc.mean(axis=0), acc.std(axis=0)
    if not all(key in e for e in runs[0][:n]):
        return None
    values = np.array([[np.nan if e[key] is None else e[key] for e in r[:n]] for r in runs])
    epochs = np.array([e["epoch"] for e in runs[0][:n]])
    return epochs, values.mean(axis=0), values.std(axis=0)


#: The panels of the paper's Fig. 5/6 (and 8, 9): key, y label, log y axis.
PANELS = (
    ("nfe_forward", "forward NFE per batch", False),
    ("nfe_backward", "backward NFE per batch", False),
    ("loss", "training loss", True),
    ("test_accuracy", "test accuracy", False),
    ("time", "test accuracy", False),
)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def run_scale(results: dict) -> str:
    """How large an image run was, for titles: "128 training / 300 test images, 2 epochs,
    1 seed" (``all`` where no subset was taken). Reads an experiment's results
    (``config["train"]``) or a comparison's (``config``); epochs and seeds are those the
    runs hold."""
    config = results.get("config", {})
    train = config.get("train", config)
    subset, test = train.get("subset"), train.get("test_subset")
    runs = [r for entry in results["models"].values() for r in entry["runs"]]
    epochs = max((len(r["epochs"]) for r in runs), default=0)
    seeds = max((len(entry["runs"]) for entry in results["models"].values()), default=0)
    return (
        f"{subset or 'all'} training / {test or 'all'} test images, "
        f"{_count(epochs, 'epoch', 'epochs')}, {_count(seeds, 'seed', 'seeds')}"
    )


def plot_panels(results: dict, path: Path, title: str) -> Path:
    """The paper's image panels, one line per model/label (mean ± std over seeds, each
    with its own marker and dash so that equal curves stay visible): forward NFE,
    backward NFE, training loss (log axis) and test accuracy per epoch (whole-epoch
    ticks), and test accuracy against cumulative training time (s). The legend sits
    below the panels; the title is followed by the run's scale (``run_scale``)."""
    from matplotlib.ticker import MaxNLocator

    models = results["models"]
    fig, axes = new_figure(1, len(PANELS), figsize=(4.0 * len(PANELS), 3.4))
    for ax, (key, ylabel, log) in zip(axes, PANELS):
        for i, (name, entry) in enumerate(models.items()):
            curve = _curves(entry, key)
            if curve is None:
                continue
            x, mean, std = curve
            c = color(name, i)
            style = line_style(name, i, len(x), len(models))
            ax.plot(x, mean, label=label(name), color=c, lw=1.6, **style)
            ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.18, lw=0)
        if key == "time":
            ax.set_xlabel("training time (s)")
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels_ = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels_,
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(handles), 6),
        )
    return save(fig, path, f"{title} ({run_scale(results)})")


def final_rows(results: dict) -> list[dict[str, Any]]:
    """Per model/label: last-epoch train loss and test accuracy, mean NFE over epochs,
    mean over seeds."""
    rows = []
    for name, entry in results["models"].items():
        runs = [r["epochs"] for r in entry["runs"] if r["epochs"]]
        if not runs:
            continue
        every = [e for r in runs for e in r]
        row = {
            "label": name,
            "params": entry.get("params"),
            "epochs": min(len(r) for r in runs),
            "final_loss": float(np.mean([r[-1]["loss"] for r in runs])),
            "nfe_forward": float(np.mean([e["nfe_forward"] for e in every])),
            "nfe_backward": float(np.mean([e["nfe_backward"] for e in every])),
            "s_per_epoch": float(np.mean([e["seconds"] for e in every])),
        }
        if "test_accuracy" in runs[0][-1]:
            row["test_accuracy"] = float(np.mean([r[-1]["test_accuracy"] for r in runs]))
        rows.append(row)
    return rows


def rows_table(rows: list[dict[str, Any]]) -> str:
    """A text table of ``final_rows``."""
    from nesterovnode.tables import text_table

    head = ["run", "params", "epochs", "train loss", "test acc", "NFE fwd", "NFE bwd", "s/epoch"]
    body = [
        [
            r["label"],
            str(r["params"]),
            str(r["epochs"]),
            f"{r['final_loss']:.4g}",
            f"{r['test_accuracy']:.4f}" if "test_accuracy" in r else "-",
            f"{r['nfe_forward']:.1f}",
            f"{r['nfe_backward']:.1f}",
            f"{r['s_per_epoch']:.1f}",
        ]
        for r in rows
    ]
    return text_table(head, body, numbers_right=True)


def add_image_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the image experiments."""
    p.add_argument("--task", default="mnist", choices=("mnist", "cifar10"))
    p.add_argument("--data-dir", default=None, help="the image data folder")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--subset", type=int, default=None, help="train on the first N images")
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on N test images")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--device", default="cpu")
    add_executor_arguments(p)


def die(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)
