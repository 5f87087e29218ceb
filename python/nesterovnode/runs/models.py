"""A task's models and inputs for analysis (``diagnostics`` works on them; the CLI's
``solvers compare`` and ``stiffness`` call these).

``get_model`` loads a trained run (``checkpoint``), trains one with
``training.load_or_train`` (checkpointed under ``OUT/runs/<model>``, so a second call
reuses it) or, with ``epochs=0``, takes the untrained model (fixed seed); ``task_inputs``
takes the inputs of a task's training set.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..tasks import TaskModel, get_task


def get_model(
    task_name: str,
    model_name: str,
    *,
    checkpoint: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
) -> TaskModel:
    """A ``TaskModel``: from ``checkpoint``, trained for ``epochs`` (None: the task's
    default) by ``training.load_or_train``, or untrained when ``epochs == 0``."""
    task = get_task(task_name)
    if checkpoint is None and epochs == 0:
        torch.manual_seed(seed)
        return task.build_model(model_name)
    from . import training  # looked up at call time: tests stand in for the training

    if epochs is None:
        epochs = task.defaults.epochs
    run_dir = None if out is None or checkpoint is not None else Path(out) / "runs" / model_name
    return training.load_or_train(
        task_name, model_name, checkpoint=checkpoint, epochs=epochs, seed=seed, out_dir=run_dir
    )


def task_inputs(task_name: str, points: int | None = None, seed: int = 0) -> torch.Tensor:
    """Inputs ``x`` of the task's training set (the first ``points`` of a seeded shuffle)."""
    data = get_task(task_name).datasets(seed)[0]
    x = (
        data.tensors[0]
        if hasattr(data, "tensors")
        else torch.stack([data[i][0] for i in range(len(data))])
    )
    if points is not None and points < len(x):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x = x[perm[:points]]
    return x


__all__ = ["get_model", "task_inputs"]
