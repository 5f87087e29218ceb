"""The training loop: epochs of Adam with a progress bar, NFE logging, checkpoints, resume.

One run trains one model of one task with one seed. Each epoch appends a record

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
for eager steps). ``max_iters``
truncates every epoch after that many iterations (quick timings; still one record per
epoch); ``subset`` / ``test_subset`` train / evaluate on the first N examples only.

Records go to ``log.jsonl`` and, with the model and optimizer, to ``checkpoint.pt`` after
every epoch, both written atomically: an interrupted run resumes after its last finished
epoch without repeating or losing one. Shuffling is seeded by (seed, epoch), so a resumed
run sees the batches it would have seen.

Under ``torchrun --nproc_per_node=K`` the same call trains with DistributedDataParallel
(process group from torchrun's environment: nccl on CUDA, gloo on CPU; each process
drives the GPU ``LOCAL_RANK``): a DistributedSampler gives each process a shard of every
epoch (seeded by (seed, epoch), the same on every rank), DDP averages the gradients, so
the replicas take identical steps; the epoch's sums (loss, correct, NFE, examples) and
the test accuracy are all-reduced, so every rank holds the same record; only rank 0
writes the checkpoint and log, and all ranks meet at a barrier after every epoch. A
process group this module initialised is destroyed by ``shutdown_distributed()`` (the
CLI calls it when its command ends) or, failing that, at interpreter exit.
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..io import save_torch_atomic, write_json_atomic, write_text_atomic
from ..solve import SolveConfig, clear_engine_caches
from ..tasks import Task, TaskModel, count_parameters, get_task
from .compiling import FIRST_RUN_SECONDS, check_setting, compile_steps, compile_value
from .failures import RunFailed, classify, read_checkpoint, read_failure, read_log
from .folder import claim

#: What a run writes to its folder (``_save``).
RUN_FILES = ("checkpoint.pt", "log.jsonl", "config.json")

#: The floating-point types a run may train in (``TrainConfig.dtype``).
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The dtype of runs saved before the dtype was recorded (every task trained in float32).
LEGACY_DTYPE = "float32"


def saved_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A saved run's identity as it reads today: runs saved without a dtype were float32."""
    return {**config, "dtype": config.get("dtype", LEGACY_DTYPE)}


def engine_of(config: dict[str, Any]) -> str | None:
    """The engine a saved or asked run identity runs on: its ``engine``, or for None (the
    default) the engine the solver resolves to; None when it cannot be resolved here."""
    if config.get("engine") is not None:
        return config["engine"]
    try:
        return (
            SolveConfig(
                solver=config["solver"],
                rtol=config["tol"],
                atol=config["tol"],
                sensitivity=config["sensitivity"],
                dt=config.get("model_options", {}).get("dt"),
            )
            .resolve()
            .engine.name
        )
    except Exception:  # noqa: BLE001 - an identity that does not resolve compares as saved
        return None


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run identity with its engine resolved (None -> the engine that runs), so a run
    saved with the default engine and one asked for by that engine's name are the same."""
    if "solver" not in config or "tol" not in config:
        return dict(config)
    return {**config, "engine": engine_of(config)}


def dtype_hint(saved: dict[str, Any], asked: dict[str, Any]) -> str:
    """The way to resume a run saved in another dtype (older runs are float32)."""
    if saved.get("dtype") != asked.get("dtype"):
        return (
            f"; it was trained in {saved.get('dtype')} (runs saved before the dtype was "
            f"recorded are {LEGACY_DTYPE}): pass --dtype {saved.get('dtype')} "
            f"(dtype={saved.get('dtype')!r}) to resume it"
        )
    return ""


@dataclass
class TrainConfig:
    """What a run is: the task, the model, the optimiser and the solve options.

    ``None`` fields take the task's paper defaults (``task.defaults``).
    """

    task: str = "pointcloud"
    model: str = "nesterovnode"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    solver: str | None = None
    tol: float | None = None
    sensitivity: str | None = None
    engine: str | None = None
    device: str = "cpu"
    seed: int = 0
    data_dir: str | None = None
    evaluate: bool = True  #: test accuracy at the end of each epoch (when a test set exists)
    subset: int | None = None  #: train on the first N samples only (quick checks)
    test_subset: int | None = None  #: evaluate on the first N test samples only
    max_iters: int | None = None  #: stop each epoch after N iterations (quick timings)
    download: bool = False  #: fetch missing data files (image tasks; needs torchvision)
    num_workers: int = 0
    #: "float32" or "float64": the model and data in training (None: the task's default)
    dtype: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  #: r, xi, …
    #: compiled ODE steps: "auto", "on" or "off" (``runs/compiling.py``)
    compile: str = "auto"

    def resolved(self, task: Task) -> TrainConfig:
        """A copy with every default filled in from the task."""
        d = task.defaults
        out = TrainConfig(**asdict(self))
        out.task = task.name
        out.epochs = d.epochs if self.epochs is None else self.epochs
        out.lr = d.lr if self.lr is None else self.lr
        out.batch_size = d.batch_size if self.batch_size is None else self.batch_size
        out.solver = d.solve.solver if self.solver is None else self.solver
        out.tol = d.tol if self.tol is None else self.tol
        out.sensitivity = d.solve.sensitivity if self.sensitivity is None else self.sensitivity
        out.engine = self.engine
        out.solve_config()  # checks solver, tolerance, sensitivity and engine once, here
        for name in ("epochs", "batch_size"):
            if getattr(out, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(out, name)}")
        if not out.lr > 0:
            raise ValueError(f"lr must be > 0, got {out.lr}")
        for name in ("subset", "test_subset", "max_iters"):
            value = getattr(out, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None for all), got {value}")
        out.dtype = d.dtype if self.dtype is None else self.dtype
        if out.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {out.dtype!r}")
        check_setting(out.compile)
        return out

    def solve_config(self) -> SolveConfig:
        """The run's SolveConfig (after ``resolved``)."""
        return SolveConfig(
            solver=self.solver,
            rtol=self.tol,
            atol=self.tol,
            sensitivity=self.sensitivity,
            engine=self.engine,
            dt=self.model_options.get("dt"),
        )

    def identity(self) -> dict[str, Any]:
        """The fields that make two runs the same experiment (not epochs: a run may be
        extended; not device or data location)."""
        d = asdict(self)
        # compile: compiled steps give the eager numbers to round-off
        for k in ("epochs", "device", "data_dir", "num_workers", "evaluate", "download", "compile"):
            d.pop(k)
        # Absent unless set, so runs saved before these options existed still resume.
        for k in ("test_subset", "max_iters", "dtype"):
            if d[k] is None:
                d.pop(k)
        return d


@dataclass
class RunResult:
    """A finished (or resumed-and-finished) run."""

    model: TaskModel
    params: int
    history: list[dict[str, float]]
    config: TrainConfig


class DeviceUnavailableError(RuntimeError):
    """The device asked for (``--device cuda``) does not exist here."""


# -- distributed -------------------------------------------------------------------------
def distributed_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


_OWN_PROCESS_GROUP = False  # True while a process group this module created is alive


def shutdown_distributed() -> None:
    """Destroy the process group ``train`` initialised (no-op otherwise, or twice)."""
    global _OWN_PROCESS_GROUP
    if _OWN_PROCESS_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _OWN_PROCESS_GROUP = False


def _init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device): torchrun's process group joined when WORLD_SIZE > 1."""
    global _OWN_PROCESS_GROUP
    rank, local, world = distributed_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:K") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"--device {device} was asked for but torch {torch.__version__} sees no CUDA "
                f"device; use --device cpu or install a CUDA build of torch"
            )
        if world > 1 or dev.index is None:
            dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if not _OWN_PROCESS_GROUP:
            atexit.register(shutdown_distributed)
        _OWN_PROCESS_GROUP = True
    return rank, world, dev


def _all_reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


# -- the loop ----------------------------------------------------------------------------
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
    total_correct, total = _all_reduce_sum([float(correct), float(count)], device, world)
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
    would take hours).
    """
    if task is None:
        task = get_task(config.task)
    cfg = config.resolved(task)
    if cfg.download:  # the image tasks fetch missing files when their flag is set
        if not hasattr(task, "download"):
            raise ValueError(
                f"download applies to the image tasks (mnist, cifar10); the {task.name} data "
                f"needs none"
            )
        task.download = True
    rank, world, device = _init_distributed(cfg.device)
    is_main = rank == 0
    torch.manual_seed(cfg.seed)

    dtype = DTYPES[cfg.dtype]
    model = _build_model(task, cfg.model, cfg.identity()).to(device=device, dtype=dtype)
    params = count_parameters(model)
    optimizer = adam(model.parameters(), cfg.lr)
    history: list[dict[str, float]] = []

    out = Path(out_dir) if out_dir is not None else None
    saved: dict[str, Any] = {}

    def read_config(path: Path) -> dict[str, Any]:
        saved.update(read_checkpoint(path, map_location=device))
        if saved["model_name"] != cfg.model or saved["task"] != task.name:
            raise ValueError(
                f"{path} is a {saved['task']} {saved['model_name']} run, not {task.name} "
                f"{cfg.model}; choose another --out"
            )
        return comparable(saved_identity(saved["config"]))

    if claim(
        out,
        comparable(cfg.identity()),
        results="checkpoint.pt",
        read_config=read_config,
        outputs=RUN_FILES,
        resume=resume,
        overwrite=overwrite,
        hint=dtype_hint,
    ):
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        history = saved["history"]
        if notify is not None and is_main:
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

    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if world > 1 and cfg.download and not is_main:
        torch.distributed.barrier()  # rank 0 downloads first; the others then read its files
    train_set, test_set = task.datasets(seed=cfg.seed, data_dir=cfg.data_dir)
    if world > 1 and cfg.download and is_main:
        torch.distributed.barrier()
    same_set = test_set is train_set  # tasks without a held-out set evaluate nothing
    if cfg.subset is not None:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.subset, len(train_set))))
    if cfg.test_subset is not None and test_set is not None and not same_set:
        test_set = torch.utils.data.Subset(test_set, range(min(cfg.test_subset, len(test_set))))
    per_epoch = _steps(_loader(train_set, cfg.batch_size, cfg.seed, 1, True, world, rank, 0), cfg)
    left = per_epoch * max(cfg.epochs - len(history), 0)
    value = compile_value(
        cfg.compile, device, left, task.defaults.compile_after, task.defaults.compile_rule_after
    )
    if compile_steps(model, cfg.compile, value) and notify is not None and is_main:
        # the first iteration waits for the compilation: say why nothing moves meanwhile
        notify(
            f"{cfg.model} seed {cfg.seed}: compiling its ODE steps in the first iterations "
            f"(TorchInductor: {FIRST_RUN_SECONDS[value]} s on a machine's first run, "
            f"seconds once its disk cache holds them; --compile off skips it)"
        )
    model.train()
    iterations_done = 0  # in this call (for the duration estimate)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        loader = _loader(
            train_set, cfg.batch_size, cfg.seed, epoch, True, world, rank, cfg.num_workers
        )
        steps = _steps(loader, cfg)
        bar = _progress(
            steps,
            f"{cfg.model} seed {cfg.seed} epoch {epoch}/{cfg.epochs}",
            progress and is_main,
        )
        sums = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # loss·n, correct, n, nfe_f, nfe_b, batches
        start, compile_seconds = time.perf_counter(), 0.0
        for x, y in itertools.islice(loader, steps):  # max_iters truncates the epoch
            x, y = _to(x, device, dtype, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            phase = "forward"
            try:
                output = ddp_model(x)
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
                where = str(out / "checkpoint.pt") if out is not None and history else None
                failure = RunFailed(
                    cfg.model, cfg.seed, epoch, *found, history=list(history), where=where
                )
                if is_main and out is not None:
                    _mark_failed(out, history, failure)
                clear_engine_caches()
                raise failure from exc
            optimizer.step()
            stats = model.stats
            compile_seconds += stats.compile_seconds
            iterations_done += 1
            if iterations_done == estimate_after and notify is not None and is_main:
                # compiling the steps happens once: it is not part of an iteration's time
                compiled = compile_seconds
                elapsed = time.perf_counter() - start - compiled
                notify(
                    _estimate(
                        elapsed / estimate_after,
                        steps,
                        cfg.epochs - epoch + 1,
                        task.name,
                        device,
                        cfg,
                        compiled,
                    )
                )
            sums[0] += loss_value * len(y)
            # loss.item() has already waited for the batch: reading this adds no stall
            # float, not int: a regression task's metric is a sum of MSEs, not a count
            sums[1] += float(task.correct(output.detach(), y))
            sums[2] += len(y)
            sums[3] += stats.nfe_forward
            sums[4] += stats.nfe_backward
            sums[5] += 1
            bar.set_postfix(  # drawn at tqdm's own rate by update(), not every batch
                loss=f"{loss_value:.4f}",
                nfe_f=stats.nfe_forward,
                nfe_b=stats.nfe_backward,
                refresh=False,
            )
            bar.update()
        bar.close()
        seconds = time.perf_counter() - start
        loss_n, correct, n, nfe_f, nfe_b, batches = _all_reduce_sum(sums, device, world)
        record = {
            "epoch": epoch,
            "loss": loss_n / n,
            task.metric: correct / n,
            "nfe_forward": nfe_f / batches,
            "nfe_backward": nfe_b / batches,
            "seconds": seconds,
            "iterations": round(batches / world),
            "samples_per_second": n / seconds,
            "compile_seconds": compile_seconds,
        }
        if cfg.evaluate and test_set is not None and not same_set:
            record["test_" + task.metric] = evaluate(
                model, task, test_set, device, world=world, rank=rank, dtype=dtype
            )
        history.append(record)
        if is_main and out is not None:
            _save(out, model, optimizer, history, cfg)
        if world > 1:
            torch.distributed.barrier()
        if on_epoch is not None and is_main:
            on_epoch(record)
    # A finished run's CUDA graphs would keep its model and their memory alive while the
    # next run of a comparison trains; using the model again just captures anew.
    clear_engine_caches()
    return RunResult(model=model, params=params, history=history, config=cfg)


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


def _mark_failed(out: Path, history: list[dict], failure: RunFailed) -> None:
    """End the run's log with the failure record (the checkpoint keeps the finished
    epochs as they were)."""
    lines = [json.dumps(r) for r in history] + [json.dumps(failure.record())]
    write_text_atomic(out / "log.jsonl", "\n".join(lines) + "\n")


def _build_model(task: Task, model: str, config: dict[str, Any]) -> TaskModel:
    """The task's model with a run's solve options (``TrainConfig.identity()``, as saved
    in every checkpoint)."""
    return task.build_model(
        model,
        solver=config["solver"],
        rtol=config["tol"],
        atol=config["tol"],
        sensitivity=config["sensitivity"],
        engine=config["engine"],
        **config.get("model_options", {}),
    )


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


def _save(out: Path, model: nn.Module, optimizer, history: list[dict], cfg: TrainConfig) -> None:
    """Checkpoint, log and config of a run, each written atomically."""
    save_torch_atomic(
        out / "checkpoint.pt",
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": history,
            "config": cfg.identity(),
            "model_name": cfg.model,
            "task": cfg.task,
        },
    )
    write_text_atomic(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    write_json_atomic(out / "config.json", asdict(cfg))


def load_model(
    checkpoint: str | Path,
    device: str = "cpu",
    *,
    model: str | None = None,
    task: str | None = None,
) -> TaskModel:
    """Rebuild a trained ``TaskModel`` from a run's ``checkpoint.pt``; with ``model`` /
    ``task`` a checkpoint of another model or task is refused (ValueError)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `nesterovnode train`")
    state = read_checkpoint(path, map_location=device)
    for asked, key in ((model, "model_name"), (task, "task")):
        if asked is not None and asked != state[key]:
            raise ValueError(
                f"{path} holds a {state['task']} {state['model_name']} run, not "
                f"{task or state['task']} {model or state['model_name']}; pass the matching "
                f"model name or another checkpoint"
            )
    cfg = state["config"]
    task = get_task(state["task"])
    model = _build_model(task, state["model_name"], cfg)
    model.to(dtype=DTYPES[saved_identity(cfg)["dtype"]])  # before loading: no rounding
    model.load_state_dict(state["model"])
    return model.to(device)


def load_or_train(
    task_name: str,
    model_name: str,
    checkpoint: str | Path | None = None,
    epochs: int = 30,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    **config,
) -> TaskModel:
    """A trained model: loaded from ``checkpoint`` when given, else trained for ``epochs``
    (and checkpointed in ``out_dir`` when given, resuming a run there)."""
    if checkpoint is not None:
        return load_model(checkpoint, model=model_name, task=task_name)
    cfg = TrainConfig(task=task_name, model=model_name, epochs=epochs, seed=seed, **config)
    return train(cfg, out_dir, resume=True, progress=progress).model


__all__ = [
    "DeviceUnavailableError",
    "RunFailed",
    "RunResult",
    "TrainConfig",
    "load_model",
    "load_or_train",
    "read_log",
    "train",
]
