"""Compare models on one task: train each over several seeds, then tabulate and plot.

The output directory holds

    results.json            {"task", "config", "models": {NAME: {"params", "runs": [...]}},
                             "summary", "configuration", "versions", "git_commit",
                             "hardware", "started", "finished"} (see ``run_metadata``)
    runs/NAME/seedK/        each run's checkpoint.pt, log.jsonl, config.json
    loss.png, nfe_forward.png, nfe_backward.png    geometric mean and band over seeds against epoch
    features.png            learned features h(T) coloured by class (2-D tasks)

(the pictures are drawn by ``plotting.write_plots``).

``out`` follows the run-folder protocol (``runs.folder``): results there are continued
only with ``resume`` (same configuration) and replaced only with ``overwrite``. Runs are
independent and may go in parallel processes (``jobs``); every finished epoch
is checkpointed, so an interrupted comparison resumes where it stopped. A run that fails
(``RunFailed``) is recorded as failed (``"status": "failed"`` with its cause) and the
comparison goes on; results.json, the table and the plots always show what finished.
Resuming keeps every model and seed already in results.json (a subset asked for extends
nothing away) and refuses fewer epochs than were saved. Under torchrun
the runs go one after another, each trained by all processes with DDP; only rank 0
writes ``results.json`` and the plots.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
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
from .failures import RunFailed
from .folder import claim
from .training import (
    TrainConfig,
    comparable,
    distributed_env,
    dtype_hint,
    saved_identity,
    train,
)


def comparison_config(base: TrainConfig) -> dict[str, Any]:
    """What makes two comparisons the same experiment (models, seeds and epochs may grow);
    ``engine`` is the engine that runs (the default resolved to its name)."""
    d = comparable(base.identity())
    d.pop("model")
    d.pop("seed")
    return d


def run_dir(out: Path, model: str, seed: int) -> Path:
    return out / "runs" / model / f"seed{seed}"


def _saved_comparison_config(results: Path) -> dict[str, Any]:
    """The configuration of a comparison's ``results.json`` (not epochs or seeds, which a
    resumed comparison may extend)."""
    saved = comparable(saved_identity(read_json(results).get("config", {})))
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
    config: TrainConfig,
    out: str,
    threads: int | None,
    progress: bool = True,
    on_epoch=None,
    notify=None,
) -> dict[str, Any]:
    """Train one (model, seed) run; in a worker process its epochs go to the main process
    through the worker's queue."""
    if threads:
        torch.set_num_threads(threads)
    queue = _WORKER_QUEUE
    if queue is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _train_one(config, out, progress, queue, on_epoch, notify)
    finally:
        if queue is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_one(
    config: TrainConfig, out: str, progress: bool, queue, on_epoch=None, notify=None
) -> dict[str, Any]:
    task = get_task(config.task)
    path = run_dir(Path(out), config.model, config.seed)

    def report(record):
        if queue is not None:
            queue.put(("epoch", config.model, config.seed, record))
        elif on_epoch is not None:
            on_epoch(config.model, config.seed, record)

    def tell(text):
        if queue is not None:
            queue.put(("message", config.model, config.seed, text))
        elif notify is not None:
            notify(text)

    try:
        result = train(
            config,
            path,
            resume=True,
            task=task,
            progress=progress and queue is None,
            on_epoch=report,
            notify=tell,
        )
    except RunFailed as failure:
        tell(f"failed: {failure}")
        return {
            "model": config.model,
            "seed": config.seed,
            "params": _params(task, config),
            "epochs": failure.history,
            "status": "failed",
            "failure": {k: v for k, v in failure.record().items() if k != "status"},
        }
    entry = {
        "model": config.model,
        "seed": config.seed,
        "params": result.params,
        "epochs": result.history,
        "status": "finished",
    }
    if task.name == "pointcloud":
        h, y = _features(result.model, task, config.seed, config.device)
        entry["features"], entry["labels"] = h, y
    return entry


def _params(task, config: TrainConfig) -> int:
    """The trainable parameters of a run's model (for a run that failed)."""
    from ..tasks import count_parameters
    from .training import _build_model

    return count_parameters(_build_model(task, config.model, config.identity()))


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
    paper: bool = False,
    paper_departures: dict[str, Any] | None = None,
    on_epoch=None,
    notify=None,
) -> dict[str, Any]:
    """Train ``models`` (default all seven) for ``seeds`` seeds each; write results and plots.

    ``on_epoch(model, seed, record)`` receives every finished epoch and ``notify(text)``
    the runs' messages (resume point, duration estimate, failure), in the main process.
    ``paper`` records that the run is the paper's protocol; ``paper_departures``
    ({option: value}) the options given with ``--paper`` that replace the paper's (the run
    is then recorded as not the paper's protocol). Returns the
    ``results.json`` content; ``results["failed"]`` lists the runs that failed.
    """
    task = get_task(base.task)
    base = base.resolved(task)
    base.solve_config().resolve()  # an engine missing here fails before --out is made
    models = [check_model_name(m) for m in (models or MODEL_NAMES)]
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    config = comparison_config(base)
    resuming = claim(
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
    if resuming:
        models, seeds = _extend(out / "results.json", models, seeds, base.epochs, notify)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        paper = {"requested": bool(paper), "departures": dict(paper_departures or {})}
        return _compare(
            base, task, models, seeds, out, config, jobs, progress, paper, on_epoch, notify
        )
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves no empty --out
        raise


def _extend(results: Path, models: list[str], seeds: int, epochs: int, notify):
    """A resumed comparison's models and seeds: those saved plus those asked; fewer
    epochs than saved are refused (the saved runs would no longer match the config)."""
    saved = read_json(results)
    saved_epochs = saved.get("config", {}).get("epochs")
    if saved_epochs is not None and epochs < saved_epochs:
        raise ValueError(
            f"{results} holds {saved_epochs} epochs per run; --epochs {epochs} would "
            f"describe it wrongly: pass --epochs {saved_epochs} or more to resume (or "
            f"--overwrite, or another --out)"
        )
    saved_models = list(saved.get("models", {}))
    merged = [m for m in MODEL_NAMES if m in saved_models or m in models]
    saved_seeds = int(saved.get("config", {}).get("seeds", seeds))
    kept = [m for m in saved_models if m not in models]
    if notify is not None and (kept or saved_seeds > seeds):
        notify(
            f"resuming {results.parent}: it holds {', '.join(saved_models)} with "
            f"{saved_seeds} seed(s); all are kept (models {', '.join(merged)}, "
            f"{max(seeds, saved_seeds)} seed(s), {epochs} epochs)"
        )
    return merged, max(seeds, saved_seeds)


def _compare(base, task, models, seeds, out, config, jobs, progress, paper, on_epoch, notify):
    started = _now()
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
    results.update(run_metadata(base, seeds, jobs, paper, started))

    def finish(entries_done: bool):
        results["finished"] = _now() if entries_done else None
        return _write_results(out if is_main else None, results, models, seeds, entries)

    try:
        if jobs == 1:
            for cfg in configs:
                collect(_run_one(cfg, str(out), None, progress, on_epoch, notify))
        else:
            ordered = costliest_first(configs, task)
            _run_parallel(ordered, out, jobs, collect, progress, on_epoch, notify)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every finished epoch is checkpointed under {out / 'runs'}; run "
            f"the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    except Exception:
        # another error: what finished is still written, with its pictures
        if is_main and entries:
            finish(False)
            write_plots(results, out, {m: features[m] for m in models if m in features}, labels)
        raise
    results = finish(True)
    if not is_main:
        return results
    features = {m: features[m] for m in models if m in features}  # the paper's order
    write_plots(results, out, features, labels)
    return results


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_metadata(
    base: TrainConfig, seeds: int, jobs: int, paper: bool | dict, started: str
) -> dict:
    """What a results.json says about how it was made: the resolved configuration,
    package versions, git commit, hardware and start time. ``paper``: True/False, or
    ``{"requested", "departures"}``: the run is the paper's protocol when it was requested
    and no option departs from it (``paper_departures`` lists those that do)."""
    if not isinstance(paper, dict):
        paper = {"requested": bool(paper), "departures": {}}
    import numpy
    import torch as _torch

    from .. import __version__

    resolved = base.solve_config().resolve()
    configuration = {
        "engine": resolved.engine.name,
        "solver": resolved.info.name,
        "method": resolved.method,
        "rtol": base.tol,
        "atol": base.tol,
        "dt": base.model_options.get("dt"),
        "sensitivity": resolved.sensitivity,
        "dtype": base.dtype,
        "device": _device_name(base.device),
        "lr": base.lr,
        "batch_size": base.batch_size,
        "epochs": base.epochs,
        "seeds": seeds,
        "subset": base.subset,
        "max_iters": base.max_iters,
        "jobs": jobs,
        "compile": base.compile,
        "paper_protocol": bool(paper["requested"]) and not paper["departures"],
        "paper_departures": dict(paper["departures"]),
    }
    versions = {
        "nesterovnode": __version__,
        "python": platform.python_version(),
        "torch": _torch.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("torchdiffeq", "scipy", "matplotlib"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    hardware = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch.get_num_threads(),
        "cuda": [_torch.cuda.get_device_name(i) for i in range(_torch.cuda.device_count())]
        if _torch.cuda.is_available()
        else [],
    }
    return {
        "configuration": configuration,
        "versions": versions,
        "git_commit": _git_commit(),
        "hardware": hardware,
        "started": started,
    }


def _device_name(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _git_commit() -> str | None:
    """The commit of the package's checkout (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


def costliest_first(configs: list[TrainConfig], task) -> list[TrainConfig]:
    """``configs`` in the order parallel workers should take them: the costliest first
    (``Task.run_cost`` per model times the epochs; ties keep their order). Handing out the
    longest runs first keeps one worker from starting the longest run when the others are
    nearly done (for the point cloud on 2 workers: about 165 s instead of 205 s)."""

    def cost(c: TrainConfig) -> float:
        return task.run_cost.get(c.model, 1.0) * (c.epochs or task.defaults.epochs)

    return sorted(configs, key=cost, reverse=True)


def _run_parallel(
    configs, out: Path, jobs: int, collect, progress: bool, on_epoch=None, notify=None
) -> None:
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

    def drain() -> None:
        """Pass on what the workers reported: messages, and epochs (to the bar too)."""
        while not queue.empty():
            kind, model, seed, rec = queue.get()
            if kind == "message":
                if notify is not None:
                    notify(rec)
                continue
            if on_epoch is not None:
                on_epoch(model, seed, rec)
            bar.update()
            bar.set_postfix(
                run=f"{model}/{seed}",
                epoch=rec["epoch"],
                loss=f"{rec['loss']:.4f}",
                nfe_f=f"{rec['nfe_forward']:.0f}",
                nfe_b=f"{rec['nfe_backward']:.0f}",
            )

    try:
        pending = {pool.submit(_run_one, c, str(out), threads) for c in configs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                drain()  # the run's last records before its result
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
    """Fill ``results["models"]``, ``["summary"]`` and ``["failed"]`` from ``entries``;
    write ``results.json`` unless ``out`` is None."""
    results["models"] = {}
    for m in models:
        runs = [entries[(m, s)] for s in range(seeds) if (m, s) in entries]
        if runs:
            results["models"][m] = {
                "params": runs[0]["params"],
                "runs": [
                    {
                        "seed": r["seed"],
                        "status": r.get("status", "finished"),
                        **({"failure": r["failure"]} if "failure" in r else {}),
                        "epochs": r["epochs"],
                    }
                    for r in runs
                ],
            }
    results["summary"] = summary(results)
    results["failed"] = [
        {"model": m, "seed": r["seed"], **r["failure"]}
        for m, e in results["models"].items()
        for r in e["runs"]
        if r.get("status") == "failed"
    ]
    if out is not None:
        write_json_atomic(out / "results.json", results)
    return results


#: summary quantities: key -> (what it is, taken from the epochs of one run)
SUMMARY = {
    "final_loss": "training loss of the last epoch (mean over its batches)",
    "accuracy": "training accuracy of the last epoch (running, over its batches)",
    "test_accuracy": "test accuracy after the last epoch",
    "mse": "training MSE of the last epoch (regression tasks: walker2d)",
    "test_mse": "test MSE after the last epoch (regression tasks)",
    "nfe_forward_last": "forward NFE per batch, last epoch",
    "nfe_forward": "forward NFE per batch, mean over all epochs",
    "nfe_backward_last": "backward NFE per batch, last epoch",
    "nfe_backward": "backward NFE per batch, mean over all epochs",
    "s_per_epoch": "wall seconds per epoch (training only), mean over epochs",
}


def _per_run(epochs: list[dict]) -> dict[str, float]:
    last = epochs[-1]
    out = {
        "final_loss": last["loss"],
        "nfe_forward_last": last["nfe_forward"],
        "nfe_forward": float(np.mean([e["nfe_forward"] for e in epochs])),
        "nfe_backward_last": last["nfe_backward"],
        "nfe_backward": float(np.mean([e["nfe_backward"] for e in epochs])),
        "s_per_epoch": float(np.mean([e["seconds"] for e in epochs])),
    }
    for key in ("accuracy", "test_accuracy", "mse", "test_mse"):  # the task's metric
        if key in last:
            out[key] = last[key]
    return out


def summary(results: dict) -> dict[str, Any]:
    """Per model: ``{QUANTITY: {"mean", "std"}}`` over the seeds whose runs finished (see
    ``SUMMARY``; std is the population std, 0 for one seed), with ``seeds``,
    ``finished``, ``failed`` and ``epochs`` (of the finished runs)."""
    out = {}
    for name, entry in results["models"].items():
        done = [
            r["epochs"]
            for r in entry["runs"]
            if r.get("status", "finished") == "finished" and r["epochs"]
        ]
        failed = [r for r in entry["runs"] if r.get("status") == "failed"]
        block: dict[str, Any] = {
            "params": entry["params"],
            "seeds": len(entry["runs"]),
            "finished": len(done),
            "failed": len(failed),
            "epochs": min((len(r) for r in done), default=0),
        }
        per = [_per_run(r) for r in done]
        for key in SUMMARY:
            values = [p[key] for p in per if key in p]
            if values:
                block[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        if failed:
            block["failures"] = [
                f"seed {r['seed']}: epoch {r['failure']['epoch']}, {r['failure']['cause']}"
                for r in failed
            ]
        out[name] = block
    return out


def summary_rows(results: dict) -> list[dict[str, Any]]:
    """One row per model: params, seeds, epochs, and every ``SUMMARY`` quantity as its
    mean over the seeds that finished (``KEY_std``: the std over them); a model none of
    whose runs finished has ``failed`` set and no numbers."""
    rows = []
    blocks = summary(results)
    for name, block in blocks.items():
        row: dict[str, Any] = {
            "model": name,
            "params": block["params"],
            "seeds": block["finished"],
            "epochs": block["epochs"],
            "failed": block["failed"],
        }
        for key in SUMMARY:
            if key in block:
                row[key] = block[key]["mean"]
                row[f"{key}_std"] = block[key]["std"]
        if "failures" in block:
            row["failures"] = block["failures"]
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], legend: bool = True) -> str:
    """A fixed-width text table of ``summary_rows``: mean ± std over the seeds that
    finished; a legend under it says what each column is."""
    if not rows:
        return "(no runs)"
    cols = [
        ("final_loss", "final loss", "{:.4g}"),
    ]
    for key, head, fmt in (
        ("accuracy", "train acc", "{:.3f}"),
        ("test_accuracy", "test acc", "{:.4f}"),
        ("mse", "train MSE", "{:.4f}"),
        ("test_mse", "test MSE", "{:.4f}"),
    ):
        if any(key in r for r in rows):
            cols.append((key, head, fmt))
    cols += [
        ("nfe_forward_last", "NFE fwd last", "{:.1f}"),
        ("nfe_forward", "NFE fwd mean", "{:.1f}"),
        ("nfe_backward_last", "NFE bwd last", "{:.1f}"),
        ("nfe_backward", "NFE bwd mean", "{:.1f}"),
        ("s_per_epoch", "s/epoch", "{:.3f}"),
    ]
    spread = any(r["seeds"] > 1 for r in rows)
    body = []
    for r in rows:
        cells = [r["model"], str(r["params"]), _runs_cell(r), str(r["epochs"])]
        for k, _, fmt in cols:
            if k not in r:
                cells.append("failed" if r["failed"] else "-")
                continue
            cell = fmt.format(r[k])
            if spread:
                cell += " ± " + fmt.format(r[f"{k}_std"])
            cells.append(cell)
        body.append(cells)
    head = ["model", "params", "seeds", "epochs"] + [h for _, h, _ in cols]
    text = text_table(head, body, numbers_right=True)
    if legend:
        text += "\n\n" + table_legend(rows, spread)
    return text


def _runs_cell(row: dict) -> str:
    if not row["failed"]:
        return str(row["seeds"])
    return f"{row['seeds']} ({row['failed']} failed)"


def table_legend(rows: list[dict[str, Any]], spread: bool) -> str:
    """What the table's numbers are."""
    lines = [
        ("mean ± std over the seeds that finished; " if spread else "one seed per model; ")
        + "seeds: runs that finished (failed runs counted apart, left out of the numbers)",
        "final loss, train acc / train MSE: the last epoch's training loss and running "
        "metric (mean over its batches, not a separate evaluation)",
        "NFE: function evaluations per batch, forward solve and backward (adjoint) solve; "
        "last: the last epoch; mean: over all epochs",
        "s/epoch: training wall time per epoch, measured with the other runs running in "
        "parallel when --jobs > 1",
    ]
    failures = [f"{r['model']} {f}" for r in rows for f in r.get("failures", [])]
    lines += [f"failed: {f}" for f in failures]
    return "\n".join(lines)


__all__ = ["compare", "format_table", "run_metadata", "summary", "summary_rows"]
