"""The learned features h(T) a run hands back for its task's feature plot (the point
cloud's, the paper's Fig. 4): after its last epoch, and after each of the task's
``Task.feature_epochs`` before it.

The features are h(T) of the whole training set, computed without gradients in eval mode
(``features``). A snapshot is taken on the main rank after its epoch has trained and
before that epoch is checkpointed (``train``'s ``after_epoch``, ``snapshot_taker``) and
written atomically to the run folder:

    features.npz    {"epoch100": h [points, n], ...}: one array per snapshot epoch

so that a run resumed after that epoch still has it (a run stopped between the snapshot
and the checkpoint trains the epoch again and takes it again), and a cluster's task ships
it with the run's other files (``checkpoint.RUN_FILES``), so every executor hands back the
same entry. A snapshot is taken at each declared epoch a run reaches, its last included:
a run extended later (100 epochs, then resumed to 200) keeps its features after 100.
``snapshots_before`` gives what ``sweep.run_job`` hands back: those before the run's last
epoch (the last one is its final features). A run that trained past a snapshot epoch
without taking it (its folder written before snapshots were kept, or the file removed)
has no snapshot there: the comparison's plot of that epoch leaves its model out.

A snapshot changes no training number: the model runs forward only, without gradients,
between two epochs, and its parameters, optimizer and the batches' shuffling are left
as they were (tests/runs/test_feature_snapshots.py).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..io import write_atomic
from ..tasks import Task, TaskModel
from .checkpoint import FEATURES, CorruptRunError


def features(model: TaskModel, task: Task, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(h, labels)``: h(T) ``[points, n]`` of ``task``'s training set for ``seed`` and its
    labels, without gradients in eval mode; the model's mode is left as it was."""
    data, _ = task.datasets(seed=seed)
    x, y = data.tensors
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters())
            h = model.features(x.to(param.device, param.dtype)).cpu().numpy()
    finally:
        model.train(was_training)
    return h, y.numpy()


def snapshot_taker(
    task: Task, seed: int, folder: str | Path
) -> Callable[[int, TaskModel], None] | None:
    """``train``'s ``after_epoch`` for a run of ``seed`` in ``folder``: at each of
    ``task.feature_epochs`` it writes the features to the run's snapshots
    (``write_snapshot``); None where the task declares no such epoch."""
    wanted = set(task.feature_epochs)
    if not wanted:
        return None

    def take(epoch: int, model: TaskModel) -> None:
        if epoch in wanted:
            write_snapshot(folder, epoch, features(model, task, seed)[0])

    return take


def read_snapshots(folder: str | Path) -> dict[int, np.ndarray]:
    """The snapshots in a run ``folder``, by epoch ({} where it holds none); an unreadable
    file is a ``CorruptRunError`` saying what to do."""
    path = Path(folder) / FEATURES
    if not path.is_file():
        return {}
    try:
        with np.load(path) as data:
            return {int(name.removeprefix("epoch")): data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptRunError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); remove it to resume the "
            f"run (the features it held are then not drawn)"
        ) from None


def write_snapshot(folder: str | Path, epoch: int, h: np.ndarray) -> None:
    """Add (or replace) the snapshot of ``epoch`` in ``folder``'s snapshots, atomically."""
    saved = read_snapshots(folder)
    saved[epoch] = h
    arrays = {f"epoch{e}": saved[e] for e in sorted(saved)}
    write_atomic(Path(folder) / FEATURES, lambda fh: np.savez(fh, **arrays))


def snapshots_before(folder: str | Path, task: Task, epochs: int) -> dict[int, np.ndarray]:
    """The snapshots a run of ``epochs`` hands back: those of ``task.feature_epochs``
    before its last epoch that ``folder`` holds."""
    saved = read_snapshots(folder)
    return {e: saved[e] for e in sorted(task.feature_epochs) if e < epochs and e in saved}


__all__ = ["features", "read_snapshots", "snapshot_taker", "snapshots_before", "write_snapshot"]
