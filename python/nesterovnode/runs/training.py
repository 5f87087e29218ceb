"""The training loop: epochs of Adam with a progress bar, NFE logging, checkpoints, resume.

One run trains one model of one task with one seed. Each epoch (``train_epoch``) returns
one record

    {"epoch", "loss", "accuracy", "nfe_forward", "nfe_backward", "seconds", "iterations",
     "samples_per_second", "compile_seconds"[, "test_accuracy"]}

("accuracy" is the task's ``metric``: a regression task such as walker2d records "mse" and
"test_mse" instead, the mean of its ``correct`` per example.)

where the NFEs are means per batch (forward solve, and backward adjoint solve),
``seconds`` is the wall time of the epoch's training iterations (evaluation not
included), ``iterations`` the optimiser steps each process took, and
``samples_per_second`` the training examples per second over all processes: images per
second for the image tasks (s/iteration is ``seconds / iterations``), and
``compile_seconds`` the part of ``seconds`` spent compiling ODE steps (``--compile``; 0
for eager steps). ``max_iters`` truncates every epoch after that many iterations (quick
timings; still one record per epoch); ``subset`` / ``test_subset`` train / evaluate on
the first N examples only.

Records go to the run folder after every epoch (``checkpoint``): an interrupted run
resumes after its last finished epoch without repeating or losing one. Shuffling is
seeded by (seed, epoch), so a resumed run sees the batches it would have seen.

Under torchrun (``distributed``) the same call trains with DistributedDataParallel: a
DistributedSampler gives each process a shard of every epoch (seeded by (seed, epoch), the
same on every rank), DDP averages the gradients, so the replicas take identical steps; the
epoch's sums (``EpochSums``) and the test accuracy are all-reduced, so every rank holds
the same record; only rank 0 writes the run folder, and all ranks meet at a barrier after
every epoch.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..solve import clear_engine_caches
from ..tasks import Task, TaskModel, count_parameters, get_task
from .checkpoint import claim_run, load_model, mark_failed, read_failure, save_run
from .compiling import FIRST_RUN_SECONDS, compile_steps, compile_value
from .config import DTYPES, TrainConfig, build_model
from .distributed import all_reduce_sum, barrier, init_distributed
from .failures import RunFailed, classify
from .provenance import record_session


@dataclass
class RunResult:
    """A finished (or resumed-and-finished) run."""

    model: TaskModel
    params: int
    history: list[dict[str, float]]
    config: TrainConfig


@dataclass
class EpochSums:
    """What an epoch adds up over its batches; under torchrun ``all_reduced`` sums it
    over the processes, so every rank makes the same record."""

    loss: float = 0.0  #: the batches' mean losses times their sizes
    correct: float = 0.0  #: the task's ``correct`` (a float: regression tasks sum MSEs)
    examples: float = 0.0
    nfe_forward: float = 0.0  #: forward solve's evaluations, summed over batches
    nfe_backward: float = 0.0  #: backward (adjoint) solve's, summed over batches
    batches: float = 0.0

    def add(self, loss: float, correct: float, examples: int, stats) -> None:
        """One batch: its mean ``loss``, its ``correct``, its size and its solve stats."""
        self.loss += loss * examples
        self.correct += correct
        self.examples += examples
        self.nfe_forward += stats.nfe_forward
        self.nfe_backward += stats.nfe_backward
        self.batches += 1

    def all_reduced(self, device: torch.device, world: int) -> EpochSums:
        """The sums over all ``world`` processes (these sums in a single process)."""
        return EpochSums(*all_reduce_sum(list(astuple(self)), device, world))

    def record(
        self, epoch: int, metric: str, seconds: float, world: int, compile_seconds: float
    ) -> dict[str, float]:
        """The epoch's record (the module doc) from the sums over all processes: means
        per example (loss, ``metric``) and per batch (NFE), and the epoch's throughput."""
        return {
            "epoch": epoch,
            "loss": self.loss / self.examples,
            metric: self.correct / self.examples,
            "nfe_forward": self.nfe_forward / self.batches,
            "nfe_backward": self.nfe_backward / self.batches,
            "seconds": seconds,
            "iterations": round(self.batches / world),
            "samples_per_second": self.examples / seconds,
            "compile_seconds": compile_seconds,
        }


@dataclass
class Session:
    """What every epoch of one ``train`` call works with (fixed for the call), and the
    iterations it has taken so far (for the duration estimate)."""

    cfg: TrainConfig
    task: Task
    model: TaskModel
    step_model: nn.Module  #: ``model``, wrapped in DDP under torchrun
    optimizer: torch.optim.Optimizer
    device: torch.device
    dtype: torch.dtype
    rank: int
    world: int
    train_set: Dataset
    test_set: Dataset | None  #: None: nothing to evaluate after an epoch
    out: Path | None
    progress: bool
    notify: Callable[[str], None] | None  #: None on ranks other than 0
    estimate_after: int
    iterations: int = 0


def train_epoch(s: Session, epoch: int, history: list[dict[str, float]]) -> dict[str, float]:
    """Train epoch ``epoch`` and return its record (the module doc). A failure raises
    ``RunFailed`` (``history``: the epochs finished before, kept in the run folder, whose
    log then ends with the failure record)."""
    cfg, task = s.cfg, s.task
    is_main = s.rank == 0
    loader = _loader(
        s.train_set, cfg.batch_size, cfg.seed, epoch, True, s.world, s.rank, cfg.num_workers
    )
    steps = _steps(loader, cfg)
    bar = _progress(
        steps, f"{cfg.model} seed {cfg.seed} epoch {epoch}/{cfg.epochs}", s.progress and is_main
    )
    sums = EpochSums()
    start, compile_seconds = time.perf_counter(), 0.0
    for x, y in itertools.islice(loader, steps):  # max_iters truncates the epoch
        x, y = _to(x, s.device, s.dtype, non_blocking=True), y.to(s.device, non_blocking=True)
        s.optimizer.zero_grad(set_to_none=True)
        phase = "forward"
        try:
            output = s.step_model(x)
            loss = task.loss_fn(output, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"the loss became {loss_value}")
            phase = "backward"
            loss.backward()
        except Exception as exc:
            found = classify(exc, phase, cfg)
            if found is None:
                raise
            bar.close()
            where = str(s.out / "checkpoint.pt") if s.out is not None and history else None
            failure = RunFailed(
                cfg.model, cfg.seed, epoch, *found, history=list(history), where=where
            )
            if is_main and s.out is not None:
                mark_failed(s.out, history, failure)
            clear_engine_caches()
            raise failure from exc
        s.optimizer.step()
        stats = s.model.stats
        compile_seconds += stats.compile_seconds
        s.iterations += 1
        if s.iterations == s.estimate_after and s.notify is not None:
            # compiling the steps happens once: it is not part of an iteration's time
            elapsed = time.perf_counter() - start - compile_seconds
            s.notify(
                _estimate(
                    elapsed / s.estimate_after,
                    steps,
                    cfg.epochs - epoch + 1,
                    task.name,
                    s.device,
                    cfg,
                    compile_seconds,
                )
            )
        # loss.item() has already waited for the batch: reading this adds no stall
        sums.add(loss_value, float(task.correct(output.detach(), y)), len(y), stats)
        bar.set_postfix(  # drawn at tqdm's own rate by update(), not every batch
            loss=f"{loss_value:.4f}",
            nfe_f=stats.nfe_forward,
            nfe_b=stats.nfe_backward,
            refresh=False,
        )
        bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    record = sums.all_reduced(s.device, s.world).record(
        epoch, task.metric, seconds, s.world, compile_seconds
    )
    if s.test_set is not None:
        record["test_" + task.metric] = evaluate(
            s.model, task, s.test_set, s.device, world=s.world, rank=s.rank, dtype=s.dtype
        )
    return record


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    task: Task | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    notify: Callable[[str], None] | None = None,
    estimate_after: int = 3,
    after_epoch: Callable[[int, TaskModel], None] | None = None,
) -> RunResult:
    """Train ``config.model`` on ``config.task``; checkpoint and log to ``out_dir``.

    ``out_dir`` follows the run-folder protocol (``runs.folder``): with ``resume=True`` and
    a checkpoint there the run continues after the last finished epoch (up to
    ``config.epochs``); a checkpoint of a different configuration is refused. Without
    ``resume`` an existing checkpoint is refused too, so nothing is overwritten by
    accident; ``overwrite=True`` removes the run found there and starts afresh.

    A failure (non-finite loss, a solve failing forward or backward, out of memory) stops
    the run with ``RunFailed`` (one line: model, seed, epoch, cause, fix); the finished
    epochs stay in the checkpoint and the log ends with a failure record. ``notify(text)``
    receives the human messages: where a resumed run continues, and the estimated
    duration after ``estimate_after`` iterations (with a warning when CPU image training
    would take hours). ``on_epoch(record)`` receives every finished epoch.

    ``after_epoch(epoch, model)`` is called on the main rank after each epoch has trained
    and before it is checkpointed, so that what it writes to the run folder is there
    whenever the checkpoint says the epoch finished (a run stopped between the two trains
    that epoch again and calls it again). It may run the model (a feature snapshot,
    ``runs.features``) but must not change its parameters; training goes on in training
    mode whatever mode it leaves.
    """
    if task is None:
        task = get_task(config.task)
    cfg = config.resolved(task)
    _allow_download(cfg, task)
    rank, world, device = init_distributed(cfg.device)
    is_main = rank == 0
    notify = notify if is_main else None
    torch.manual_seed(cfg.seed)  # the model's initial weights

    dtype = DTYPES[cfg.dtype]
    model = build_model(task, cfg.model, cfg.solve, cfg.model_options)
    model = model.to(device=device, dtype=dtype)
    params = count_parameters(model)
    optimizer = adam(model.parameters(), cfg.lr)
    out = Path(out_dir) if out_dir is not None else None
    history = _resume(out, cfg, task, model, optimizer, device, resume, overwrite, notify)

    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    train_set, test_set = _datasets(task, cfg, world, is_main)
    _compile(model, task, cfg, device, train_set, world, rank, len(history), notify)
    model.train()
    session = Session(
        cfg=cfg, task=task, model=model, step_model=step_model, optimizer=optimizer,
        device=device, dtype=dtype, rank=rank, world=world, train_set=train_set,
        test_set=test_set, out=out, progress=progress, notify=notify,
        estimate_after=estimate_after,
    )  # fmt: skip
    first = len(history) + 1
    for epoch in range(first, cfg.epochs + 1):
        record = train_epoch(session, epoch, history)
        history.append(record)
        if after_epoch is not None and is_main:
            after_epoch(epoch, model)
            model.train()
        if is_main and out is not None:
            save_run(out, model, optimizer, history, cfg)
            if epoch == first:  # a session that saved an epoch says what trained it
                record_session(out, first, device)
        barrier(world)
        if on_epoch is not None and is_main:
            on_epoch(record)
    # A finished run's CUDA graphs would keep its model and their memory alive while the
    # next run of a comparison trains; using the model again just captures anew.
    clear_engine_caches()
    return RunResult(model=model, params=params, history=history, config=cfg)


def _allow_download(cfg: TrainConfig, task: Task) -> None:
    """``download``: the image tasks fetch missing files; other tasks refuse the flag."""
    if not cfg.download:
        return
    if not hasattr(task, "download"):
        raise ValueError(
            f"download applies to the image tasks (mnist, cifar10); the {task.name} data needs none"
        )
    task.download = True


def _resume(out, cfg, task, model, optimizer, device, resume, overwrite, notify) -> list[dict]:
    """The epochs a run continues from (``checkpoint.claim_run``), its model and optimizer
    loaded with their state; [] for a fresh run. ``notify`` hears where it continues."""
    saved = claim_run(out, cfg, task, device, resume=resume, overwrite=overwrite)
    if saved is None:
        return []
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    history = saved["history"]
    if notify is not None:
        if len(history) >= cfg.epochs:
            notify(
                f"{cfg.model} seed {cfg.seed}: all {cfg.epochs} epochs already in {out} "
                f"(nothing to train; pass a larger --epochs to extend it)"
            )
        else:
            failed = read_failure(out) if (out / "log.jsonl").exists() else None
            again = f" (it failed there before: {failed['cause']})" if failed else ""
            notify(
                f"{cfg.model} seed {cfg.seed}: resuming {out} after epoch {len(history)}, "
                f"from epoch {len(history) + 1} to {cfg.epochs}{again}"
            )
    return history


def _datasets(task: Task, cfg: TrainConfig, world: int, is_main: bool):
    """(train set, test set or None): the run's subsets; None when the task has no
    held-out set (its test set is the training set) or ``evaluate`` is off."""
    if world > 1 and cfg.download and not is_main:
        barrier(world)  # rank 0 downloads first; the others then read its files
    train_set, test_set = task.datasets(seed=cfg.seed, data_dir=cfg.data_dir)
    if world > 1 and cfg.download and is_main:
        barrier(world)
    if test_set is train_set or not cfg.evaluate:
        test_set = None
    if cfg.subset is not None:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.subset, len(train_set))))
    if cfg.test_subset is not None and test_set is not None:
        test_set = torch.utils.data.Subset(test_set, range(min(cfg.test_subset, len(test_set))))
    return train_set, test_set


def _compile(model, task, cfg, device, train_set, world, rank, done: int, notify) -> None:
    """Compile the model's ODE steps as ``cfg.compile`` says for the iterations left
    (``runs.compiling``); say so first, since the first iteration waits for it."""
    per_epoch = _steps(_loader(train_set, cfg.batch_size, cfg.seed, 1, True, world, rank, 0), cfg)
    left = per_epoch * max(cfg.epochs - done, 0)
    value = compile_value(
        cfg.compile, device, left, task.defaults.compile_after, task.defaults.compile_rule_after
    )
    if compile_steps(model, cfg.compile, value) and notify is not None:
        notify(
            f"{cfg.model} seed {cfg.seed}: compiling its ODE steps in the first iterations "
            f"(TorchInductor: {FIRST_RUN_SECONDS[value]} s on a machine's first run, "
            f"seconds once its disk cache holds them; --compile off skips it)"
        )


def _loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool,
    world: int,
    rank: int,
    num_workers: int,
) -> DataLoader:
    """An epoch's batches, shuffled by (seed, epoch); a shard of them per process under
    torchrun (DistributedSampler, the same permutation on every rank)."""
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed
        )
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=g, num_workers=num_workers
    )


def evaluate(
    model: nn.Module,
    task: Task,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 256,
    world: int = 1,
    rank: int = 0,
    dtype: torch.dtype | None = None,
) -> float:
    """Accuracy of ``model`` on ``dataset`` (no gradients).

    With ``world > 1`` each rank scores every ``world``-th example from ``rank`` on (no
    padding, unlike DistributedSampler, so no example is counted twice) and the counts
    are all-reduced: every rank returns the accuracy on the whole set.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.float64, device=device)  # sums of MSEs too
    count = 0
    if world > 1:
        dataset = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x, y = _to(x, device, dtype), y.to(device)
            correct += task.correct(model(x), y)
            count += len(y)
    model.train(was_training)
    total_correct, total = all_reduce_sum([float(correct), float(count)], device, world)
    return total_correct / max(total, 1)


def _to(x: torch.Tensor, device: torch.device, dtype: torch.dtype | None, **kw) -> torch.Tensor:
    """``x`` on ``device``; floating inputs also in ``dtype`` (labels keep theirs)."""
    if dtype is not None and x.is_floating_point():
        return x.to(device, dtype, **kw)
    return x.to(device, **kw)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable).
    return tqdm(
        total=total, desc=desc, leave=False, disable=None if enabled else True, dynamic_ncols=True
    )


def _steps(loader, cfg: TrainConfig) -> int:
    """Iterations of an epoch: the loader's batches, at most ``max_iters``."""
    return len(loader) if cfg.max_iters is None else min(len(loader), cfg.max_iters)


def _estimate(
    per_iteration: float,
    steps: int,
    epochs_left: int,
    task: str,
    device,
    cfg,
    compiled: float = 0.0,
) -> str:
    """The estimated duration of the rest of a run, from the first iterations (without
    the ``compiled`` seconds spent compiling the steps in them); a warning when image
    training on the CPU would take hours."""
    total = per_iteration * steps * epochs_left
    after = f", after {_duration(compiled)} compiling its steps" if compiled > 0 else ""
    text = (
        f"{cfg.model} seed {cfg.seed}: about {_duration(total)} to go "
        f"({per_iteration:.3g} s/iteration x {steps} iterations x {epochs_left} epochs, "
        f"from the first iterations{after})"
    )
    if total > 3600 and torch.device(device).type == "cpu" and task in ("mnist", "cifar10"):
        text += (
            "\nwarning: image training on the CPU would take hours; use --device cuda, or "
            "--subset N / --max-iters N / --epochs N for a quick check"
        )
    return text


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam, fused (one kernel updates every parameter) where torch has it (floating
    parameters on the CPU or CUDA): the same update to round-off, 3.5× faster per step on
    the point cloud's 14 small tensors (85 against 299 µs, benchmarks/PERFORMANCE.md),
    where the default loops over the tensors in Python."""
    params = list(params)
    fused = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


def load_or_train(
    task_name: str,
    model_name: str,
    checkpoint: str | Path | None = None,
    epochs: int = 30,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    **config: Any,
) -> TaskModel:
    """A trained model: loaded from ``checkpoint`` when given, else trained for ``epochs``
    (and checkpointed in ``out_dir`` when given, resuming a run there); ``config``: more
    ``TrainConfig`` fields."""
    if checkpoint is not None:
        return load_model(checkpoint, model=model_name, task=task_name)
    cfg = TrainConfig(task=task_name, model=model_name, epochs=epochs, seed=seed, **config)
    return train(cfg, out_dir, resume=True, progress=progress).model


__all__ = [
    "EpochSums",
    "RunResult",
    "Session",
    "TrainConfig",
    "adam",
    "evaluate",
    "load_or_train",
    "train",
    "train_epoch",
]
