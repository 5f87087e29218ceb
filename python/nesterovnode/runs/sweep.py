"""A sweep: the runs of a (model, seed) grid, each a ``Job``, run by an ``Executor``.

The executor is the one seam between what a comparison runs and where it runs:

    executor.run(jobs, on_result, on_epoch=..., notify=...) -> [entry, ...]

runs every job (``run_job``: train one run in its folder, resuming what is there), hands
each run's entry to ``on_result`` in the calling process as soon as it finishes (the
comparison writes results.json then), and returns the entries in the order they finished.
``on_epoch(model, seed, record)`` and ``notify(text)`` are called in the calling process
too, where the executor can pass them on. An entry is plain data (picklable, no model):

    {"model", "seed", "params", "epochs": [record, ...], "status": "finished"|"failed"
     [, "failure": {...}][, "name": Job.name][, "features", "labels": numpy arrays
     (the point cloud)][, "features_at": {epoch: numpy array} (its snapshots before
     the last epoch, ``features``)]}

Two executors here, a third in ``cluster`` (``RayExecutor``: Ray tasks across a cluster,
imported only when asked for): ``InProcess`` (one run after another in this process; under torchrun,
where every process takes part in every run) and ``ProcessPool`` (runs in parallel spawned
processes, their epochs and messages sent back through a queue). An executor with more
than one worker is given the costliest runs first (``costliest_first``). Another executor
(a cluster's tasks whose results come back to the driver) needs only ``workers`` and
``run``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from ..tasks import count_parameters, get_task
from .config import TrainConfig, build_model
from .failures import RunFailed
from .features import features, snapshot_taker, snapshots_before
from .training import train

#: on_epoch(model, seed, record) and notify(text), in the calling process
OnEpoch = Callable[[str, int, dict[str, Any]], None]
Notify = Callable[[str], None]


def run_dir(out: str | Path, model: str, seed: int) -> Path:
    """The folder of one run of a comparison in ``out``."""
    return Path(out) / "runs" / model / f"seed{seed}"


@dataclass(frozen=True)
class Job:
    """One run of a sweep: its resolved config (model and seed set) and the comparison
    folder it belongs to (the run's own folder is ``run_dir(out, name, seed)``); ``name``:
    the run's label where one model runs in several settings (an experiment's "r=5"),
    else the model's name."""

    config: TrainConfig
    out: str
    name: str | None = None

    @property
    def label(self) -> str:
        """``name``, else the model's name."""
        return self.name or self.config.model

    @property
    def key(self) -> tuple[str, int]:
        """(label, seed): the run's one identity within its sweep."""
        return self.label, self.config.seed

    @property
    def folder(self) -> Path:
        return run_dir(self.out, self.label, self.config.seed)


def grid(base: TrainConfig, models: Sequence[str], seeds: int, out: str | Path) -> list[Job]:
    """The jobs of ``models`` x seeds ``0..seeds-1`` (model-major, the table's order)."""
    return [Job(replace(base, model=m, seed=s), str(out)) for m in models for s in range(seeds)]


def costliest_first(configs: list[TrainConfig], task) -> list[TrainConfig]:
    """``configs`` in the order parallel workers should take them: the costliest first
    (``Task.run_cost`` per model times the epochs; ties keep their order). Handing out the
    longest runs first keeps one worker from starting the longest run when the others are
    nearly done (for the point cloud on 2 workers: about 165 s instead of 205 s)."""
    return sorted(configs, key=_cost(task), reverse=True)


def _cost(task) -> Callable[[TrainConfig], float]:
    """A run's relative cost: ``Task.run_cost`` of its model times its epochs."""
    return lambda c: task.run_cost.get(c.model, 1.0) * (c.epochs or task.defaults.epochs)


def run_job(
    job: Job,
    folder: str | Path | None = None,
    *,
    progress: bool = True,
    on_epoch: OnEpoch | None = None,
    notify: Notify | None = None,
) -> dict[str, Any]:
    """Train one job in ``folder`` (default: its own, ``job.folder``), resuming what is
    there, and return its entry (the module doc). A run that fails (``RunFailed``) is an
    entry too, with its cause; ``notify`` hears it. Every executor runs this one unit of
    work: a cluster's task runs it in a local folder holding what the driver shipped
    (``cluster``), the local executors in the run's folder itself. A task that draws its
    features (``Task.draws_features``: the point cloud) also keeps its ``feature_epochs``
    snapshots in the folder (``features``), so a resumed run still hands back those taken
    before it stopped."""
    config = job.config
    task = get_task(config.task)
    where = job.folder if folder is None else Path(folder)
    draws = task.draws_features

    def report(record):
        if on_epoch is not None:
            on_epoch(config.model, config.seed, record)

    def tell(text):
        if notify is not None:
            notify(text)

    try:
        result = train(
            config,
            where,
            resume=True,
            task=task,
            progress=progress,
            on_epoch=report,
            notify=tell,
            after_epoch=snapshot_taker(task, config.seed, where) if draws else None,
        )
    except RunFailed as failure:
        tell(f"failed: {failure}")
        failed = {k: v for k, v in failure.record().items() if k != "status"}
        return failed_entry(config, failure.history, failed, job.name)
    entry = {
        "model": config.model,
        "seed": config.seed,
        "params": result.params,
        "epochs": result.history,
        "status": "finished",
    }
    if job.name is not None:
        entry["name"] = job.name
    if draws:
        entry["features"], entry["labels"] = features(result.model, task, config.seed)
        at = snapshots_before(where, task, len(result.history))
        if at:
            entry["features_at"] = at
    return entry


def failed_entry(
    config: TrainConfig,
    history: list[dict[str, Any]],
    failure: dict[str, Any],
    name: str | None = None,
) -> dict[str, Any]:
    """The entry of a run (``Job.name`` ``name``) that failed after the epochs
    ``history``: ``failure`` is ``{"epoch", "cause", "fix", "message"}`` (a ``RunFailed``
    record without its status)."""
    task = get_task(config.task)
    entry = {
        "model": config.model,
        "seed": config.seed,
        "params": count_parameters(
            build_model(task, config.model, config.solve, config.model_options)
        ),
        "epochs": history,
        "status": "failed",
        "failure": failure,
    }
    if name is not None:
        entry["name"] = name
    return entry


class Executor(Protocol):
    """Where a sweep's runs go (the module doc): ``workers`` runs at a time; ``name``
    (optional: "local" when absent) goes to results.json's configuration."""

    workers: int

    def run(
        self,
        jobs: Sequence[Job],
        on_result: Callable[[dict[str, Any]], None],
        *,
        on_epoch: OnEpoch | None = None,
        notify: Notify | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``jobs``; each entry to ``on_result`` as it finishes; all of them, in the
        order they finished."""
        ...


def sweep(
    jobs: Sequence[Job],
    executor: Executor,
    on_result: Callable[[dict[str, Any]], None],
    *,
    on_epoch: OnEpoch | None = None,
    notify: Notify | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` on ``executor``: in their order on one worker, the costliest first
    on several (``costliest_first``)."""
    if executor.workers > 1 and jobs:
        cost = _cost(get_task(jobs[0].config.task))
        jobs = sorted(jobs, key=lambda j: cost(j.config), reverse=True)
    return executor.run(jobs, on_result, on_epoch=on_epoch, notify=notify)


class InProcess:
    """One run after another in this process, each with its progress bar."""

    name = "local"
    workers = 1

    def __init__(self, progress: bool = True):
        self.progress = progress

    def run(self, jobs, on_result, *, on_epoch=None, notify=None):
        """See ``Executor.run``."""
        entries = []
        for job in jobs:
            entry = run_job(job, progress=self.progress, on_epoch=on_epoch, notify=notify)
            entries.append(entry)
            on_result(entry)
        return entries


def sweep_bar(jobs: Sequence[Job], workers: int, progress: bool = True):
    """The overall progress bar of parallel runs: the epochs of ``jobs`` finished, where
    ever they ran (none off a terminal, or without ``progress``)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=sum(j.config.epochs for j in jobs),
        desc=f"{len(jobs)} runs, {workers} in parallel",
        disable=None if progress else True,
        dynamic_ncols=True,
    )


def show_epoch(bar, model: str, seed: int, rec: dict[str, Any]) -> None:
    """Count one finished epoch of run (``model``, ``seed``) on ``sweep_bar``'s bar."""
    bar.update()
    bar.set_postfix(
        run=f"{model}/{seed}",
        epoch=rec["epoch"],
        loss=f"{rec['loss']:.4f}",
        nfe_f=f"{rec['nfe_forward']:.0f}",
        nfe_b=f"{rec['nfe_backward']:.0f}",
    )


_WORKER_QUEUE = None  # a pool worker's channel for per-epoch records (see ProcessPool)


def _init_worker(queue) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    # Progress records are expendable: a worker must be able to exit after an interrupt
    # even when the main process has stopped reading them.
    queue.cancel_join_thread()
    # An idle worker ignores Ctrl-C (the pool is shut down by the main process); a worker
    # in the middle of a run stops it (see _pool_job), leaving its last checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_job(job: Job, threads: int) -> dict[str, Any]:
    """``run_job`` in a pool worker: its epochs and messages go to the main process
    through the worker's queue; Ctrl-C stops the run."""
    torch.set_num_threads(threads)
    queue = _WORKER_QUEUE
    model, seed = job.config.model, job.config.seed
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_job(
            job,
            progress=False,
            on_epoch=lambda m, s, record: queue.put(("epoch", m, s, record)),
            notify=lambda text: queue.put(("message", model, seed, text)),
        )
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessPool:
    """Runs in ``workers`` spawned processes (``cpu_count // workers`` torch threads
    each), one overall progress bar; Ctrl-C stops every run at once, leaving their last
    checkpoints."""

    name = "local"

    def __init__(self, workers: int, progress: bool = True):
        self.workers = workers
        self.progress = progress

    def run(self, jobs, on_result, *, on_epoch=None, notify=None):
        """See ``Executor.run``."""
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = mp.get_context("spawn")  # forking a process that has started torch threads can hang
        # The queue reaches the workers at their start (a plain queue cannot travel with a
        # submitted call); no manager process, so an interrupt leaves no dangling proxies.
        queue = ctx.Queue()
        pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
        )
        bar = sweep_bar(jobs, self.workers, self.progress)

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
                show_epoch(bar, model, seed, rec)

        entries = []
        try:
            pending = {pool.submit(_pool_job, job, threads) for job in jobs}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    drain()  # the run's last records before its result
                    entries.append(fut.result())
                    on_result(entries[-1])
        except KeyboardInterrupt:
            _stop(pool)
            bar.close()
            raise
        pool.shutdown(wait=True)
        bar.close()
        queue.close()
        return entries


def _stop(pool: ProcessPoolExecutor) -> None:
    """End every worker of ``pool`` after Ctrl-C. Ctrl-C in a terminal reaches the workers
    too; a signal to this process alone (kill -INT) is passed on, so no run goes on after
    the command has returned."""
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


def executor_for(workers: int, progress: bool = True) -> Executor:
    """The local executor for ``workers`` runs at a time: ``InProcess`` for 1, else a
    ``ProcessPool``."""
    return InProcess(progress) if workers <= 1 else ProcessPool(workers, progress)


__all__ = [
    "Executor",
    "InProcess",
    "Job",
    "ProcessPool",
    "costliest_first",
    "executor_for",
    "failed_entry",
    "grid",
    "run_dir",
    "run_job",
    "show_epoch",
    "sweep",
    "sweep_bar",
]
