"""Compare models on one task: train each over several seeds, then tabulate and plot.

The output directory holds

    results.json            {"task", "config", "models": {NAME: {"params", "runs": [...]}}}
    runs/NAME/seedK/        each run's checkpoint.pt, log.jsonl, config.json
    loss.png, nfe_forward.png, nfe_backward.png    mean ± std over seeds against epoch
    features.png            learned features h(T) coloured by class (2-D tasks)

(the pictures are drawn by ``plotting.write_plots``).

``out`` follows the run-folder protocol (``runs.folder``): results there are continued
only with ``resume`` (same configuration) and replaced only with ``overwrite``. Runs are
independent and may go in parallel processes (``jobs``); every finished epoch
is checkpointed, so an interrupted comparison resumes where it stopped. Under torchrun
the runs go one after another, each trained by all processes with DDP; only rank 0
writes ``results.json`` and the plots.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import read_json, write_json_atomic
from ..plotting import write_plots
from ..tables import text_table
from ..tasks import MODEL_NAMES, check_model_name, get_task
from .folder import claim
from .training import TrainConfig, distributed_env, dtype_hint, saved_identity, train


def comparison_config(base: TrainConfig) -> dict[str, Any]:
    """What makes two comparisons the same experiment (models, seeds and epochs may grow)."""
    d = base.identity()
    d.pop("model")
    d.pop("seed")
    return d


def run_dir(out: Path, model: str, seed: int) -> Path:
    return out / "runs" / model / f"seed{seed}"


def _saved_comparison_config(results: Path) -> dict[str, Any]:
    """The configuration of a comparison's ``results.json`` (not epochs or seeds, which a
    resumed comparison may extend)."""
    saved = saved_identity(read_json(results).get("config", {}))
    return {k: v for k, v in saved.items() if k not in ("epochs", "seeds")}


def _features(model, task, seed: int, device: str):
    """h(T) for the whole training set (for the feature plot of 2-D tasks)."""
    data, _ = task.datasets(seed=seed)
    x, y = data.tensors
    model.eval()
    with torch.no_grad():
        dtype = next(model.parameters()).dtype
        h = model.features(x.to(device, dtype)).cpu().numpy()
    return h, y.numpy()


_WORKER_QUEUE = None  # a worker process's channel for per-epoch records (see _run_parallel)


def _init_worker(queue) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    # Progress records are expendable: a worker must be able to exit after an interrupt
    # even when the main process has stopped reading them.
    queue.cancel_join_thread()
    # An idle worker ignores Ctrl-C (the pool is shut down by the main process); a worker
    # in the middle of a run stops it (see _run_one), leaving its last checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_one(
    config: TrainConfig, out: str, threads: int | None, progress: bool = True
) -> dict[str, Any]:
    """Train one (model, seed) run; in a worker process its epochs go to the main process
    through the worker's queue."""
    if threads:
        torch.set_num_threads(threads)
    queue = _WORKER_QUEUE
    if queue is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _train_one(config, out, progress, queue)
    finally:
        if queue is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_one(config: TrainConfig, out: str, progress: bool, queue) -> dict[str, Any]:
    task = get_task(config.task)
    path = run_dir(Path(out), config.model, config.seed)

    def report(record):
        if queue is not None:
            queue.put((config.model, config.seed, record))

    result = train(
        config, path, resume=True, task=task, progress=progress and queue is None, on_epoch=report
    )
    entry = {
        "model": config.model,
        "seed": config.seed,
        "params": result.params,
        "epochs": result.history,
    }
    if task.name == "pointcloud":
        h, y = _features(result.model, task, config.seed, config.device)
        entry["features"], entry["labels"] = h, y
    return entry


def compare(
    base: TrainConfig,
    models: list[str] | None = None,
    seeds: int = 1,
    out: str | Path = "results/pointcloud",
    *,
    resume: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``models`` (default all seven) for ``seeds`` seeds each; write results and plots.

    Returns the ``results.json`` content.
    """
    task = get_task(base.task)
    base = base.resolved(task)
    models = [check_model_name(m) for m in (models or MODEL_NAMES)]
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    config = comparison_config(base)
    claim(
        out,
        config,
        results="results.json",
        read_config=_saved_comparison_config,
        outputs=("results.json", "runs"),
        resume=resume,
        overwrite=overwrite,
        what="comparison",
        unfinished="runs",
        hint=dtype_hint,
    )
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "task": task.name,
        "config": {**config, "epochs": base.epochs, "seeds": seeds},
        "models": {},
    }
    data = task.data_description(base.data_dir)
    if data is not None:  # the split and protocol of the task's data (walker2d)
        results["data"] = data
    configs = [replace(base, model=m, seed=s) for m in models for s in range(seeds)]
    entries: dict[tuple[str, int], dict] = {}
    features: dict[str, np.ndarray] = {}
    labels = None
    rank, _, world = distributed_env()
    is_main = rank == 0  # under torchrun only rank 0 writes results and plots

    def collect(entry):
        nonlocal labels
        entries[(entry["model"], entry["seed"])] = entry
        entry_features, entry_labels = entry.pop("features", None), entry.pop("labels", None)
        if entry_features is not None and entry["seed"] == 0:
            features[entry["model"]] = entry_features
            labels = entry_labels
        if is_main:
            _write_results(out, results, models, seeds, entries)

    if world > 1:
        jobs = 1  # under torchrun every process takes part in every run
    jobs = max(1, min(jobs, len(configs)))
    try:
        if jobs == 1:
            for cfg in configs:
                collect(_run_one(cfg, str(out), None, progress=progress))
        else:
            _run_parallel(configs, out, jobs, collect, progress)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every finished epoch is checkpointed under {out / 'runs'}; run "
            f"the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    if not is_main:
        return _write_results(None, results, models, seeds, entries)
    results = _write_results(out, results, models, seeds, entries)
    features = {m: features[m] for m in models if m in features}  # the paper's order
    write_plots(results, out, features, labels)
    return results


def _run_parallel(configs, out: Path, jobs: int, collect, progress: bool) -> None:
    from tqdm.auto import tqdm

    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")  # forking a process that has started torch threads can hang
    total = sum(c.epochs for c in configs)
    # The queue reaches the workers at their start (a plain queue cannot travel with a
    # submitted call); no manager process, so an interrupt leaves no dangling proxies.
    queue = ctx.Queue()
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(queue,))
    bar = tqdm(
        total=total,
        desc=f"{len(configs)} runs, {jobs} in parallel",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    try:
        pending = {pool.submit(_run_one, c, str(out), threads) for c in configs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not queue.empty():
                model, seed, rec = queue.get()
                bar.update()
                bar.set_postfix(
                    run=f"{model}/{seed}",
                    epoch=rec["epoch"],
                    loss=f"{rec['loss']:.4f}",
                    nfe_f=f"{rec['nfe_forward']:.0f}",
                    nfe_b=f"{rec['nfe_backward']:.0f}",
                )
            for fut in done:
                collect(fut.result())
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a signal to this process alone
        # (kill -INT) is passed on, so no run goes on after the command has returned.
        pool.shutdown(wait=False, cancel_futures=True)
        children = mp.active_children()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGINT)
        # A run already handed to a worker may start after the signal: end it too.
        # Checkpoints are written atomically, so a stopped worker corrupts none.
        for child in children:
            child.join(timeout=3)
            if child.is_alive():
                child.terminate()
        # The workers are gone: nothing left to wait for (joining the pool's threads after
        # killed workers can block).
        bar.close()
        raise
    pool.shutdown(wait=True)
    bar.close()
    queue.close()


def _write_results(out: Path | None, results: dict, models, seeds: int, entries: dict) -> dict:
    """Fill ``results["models"]`` from ``entries``; write ``results.json`` unless ``out`` is
    None."""
    results["models"] = {}
    for m in models:
        runs = [entries[(m, s)] for s in range(seeds) if (m, s) in entries]
        if runs:
            results["models"][m] = {
                "params": runs[0]["params"],
                "runs": [{"seed": r["seed"], "epochs": r["epochs"]} for r in runs],
            }
    if out is not None:
        write_json_atomic(out / "results.json", results)
    return results


#: The metrics a run may record (``Task.metric``), each also as ``test_<metric>``.
METRICS = ("accuracy", "mse")


def summary_rows(results: dict) -> list[dict[str, Any]]:
    """One row per model: params, final loss and accuracy (mean over seeds), NFE per batch
    (mean over epochs and seeds) and seconds per epoch."""
    rows = []
    for name, entry in results["models"].items():
        runs = [r["epochs"] for r in entry["runs"] if r["epochs"]]
        if not runs:
            continue
        every = [e for r in runs for e in r]
        row = {
            "model": name,
            "params": entry["params"],
            "seeds": len(runs),
            "epochs": min(len(r) for r in runs),
            "final_loss": float(np.mean([r[-1]["loss"] for r in runs])),
            "nfe_forward": float(np.mean([e["nfe_forward"] for e in every])),
            "nfe_backward": float(np.mean([e["nfe_backward"] for e in every])),
            "s_per_epoch": float(np.mean([e["seconds"] for e in every])),
        }
        for key in METRICS:  # the task's metric (accuracy; mse for regression tasks)
            for k in (key, "test_" + key):
                if k in runs[0][-1]:
                    row[k] = float(np.mean([r[-1][k] for r in runs]))
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``summary_rows``."""
    if not rows:
        return "(no runs)"
    cols = [
        ("model", "model", "{}"),
        ("params", "params", "{}"),
        ("final_loss", "final loss", "{:.4g}"),
    ]
    metric_columns = [
        ("accuracy", "accuracy", "{:.3f}"),
        ("test_accuracy", "test acc", "{:.4f}"),
        ("mse", "MSE", "{:.4f}"),
        ("test_mse", "test MSE", "{:.4f}"),
    ]
    cols += [c for c in metric_columns if c[0] in rows[0]]
    cols += [
        ("nfe_forward", "NFE fwd", "{:.1f}"),
        ("nfe_backward", "NFE bwd", "{:.1f}"),
        ("s_per_epoch", "s/epoch", "{:.3f}"),
    ]
    body = [[fmt.format(r[k]) for k, _, fmt in cols] for r in rows]
    return text_table([h for _, h, _ in cols], body, numbers_right=True)


__all__ = ["compare", "format_table", "summary_rows"]
