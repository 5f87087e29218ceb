"""A run folder's files: written after every epoch, checked when read back.

    checkpoint.pt    {"model", "optimizer", "history", "config" (the run's identity,
                      ``TrainConfig.identity()``), "model_name", "task"}
    log.jsonl        one epoch record a line; a failed run's ends with a failure record
    config.json      the resolved ``TrainConfig`` (``dataclasses.asdict``), for people
    provenance.json  versions, commit and hardware of each session that trained it
    features.npz     only where the task keeps feature snapshots (``runs.features``):
                     h(T) after each snapshot epoch, written before that epoch's checkpoint

Every file is written atomically, so an interrupted run resumes after its last finished
epoch without repeating or losing one. ``read_checkpoint`` and ``read_log`` check a run's
files on load and raise ``CorruptRunError`` (a ValueError) naming the file and what to do,
instead of pickle's or JSON's own exceptions. ``claim_run`` applies the run-folder
protocol (``folder.claim``) to a run: what must match for ``--resume`` is the identity.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import save_torch_atomic, write_atomic, write_json_atomic, write_text_atomic
from ..solve import SolveConfig
from ..tasks import Task, TaskModel, get_task
from .config import DTYPES, TrainConfig, build_model, comparable, dtype_hint, read_identity
from .failures import RunFailed
from .folder import claim

#: A run's feature snapshots (``runs.features``), where its task keeps them.
FEATURES = "features.npz"
#: What a run writes to its folder (what ``overwrite`` removes), in the order a copy is
#: written (``write_run_files``): the snapshots come first, as a run writes them before
#: the checkpoint of their epoch, so no checkpoint is ever ahead of them.
RUN_FILES = (FEATURES, "checkpoint.pt", "log.jsonl", "config.json", "provenance.json")
#: What every checkpoint holds (``save_run``).
CHECKPOINT_KEYS = ("model", "optimizer", "history", "config", "model_name", "task")


class CorruptRunError(ValueError):
    """A checkpoint, log or results file that cannot be read back."""


def save_run(out: Path, model: nn.Module, optimizer, history: list[dict], cfg: TrainConfig) -> None:
    """Checkpoint, log and config of a run after an epoch, each written atomically."""
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
    write_json_atomic(out / "config.json", asdict(cfg))  # its SolveConfig as as_dict()


def mark_failed(out: Path, history: list[dict], failure: RunFailed) -> None:
    """End the run's log with the failure record (the checkpoint keeps the finished
    epochs as they were)."""
    lines = [json.dumps(r) for r in history] + [json.dumps(failure.record())]
    write_text_atomic(out / "log.jsonl", "\n".join(lines) + "\n")


def run_files(out: str | Path) -> dict[str, bytes]:
    """The bytes of every ``RUN_FILES`` file in ``out`` (those present; {} for a folder
    that does not exist): what a run's folder is, to send elsewhere (``write_run_files``
    writes it back; a cluster's worker and the driver exchange run folders so)."""
    out = Path(out)
    return {name: (out / name).read_bytes() for name in RUN_FILES if (out / name).is_file()}


def write_run_files(out: str | Path, files: dict[str, bytes]) -> None:
    """Make ``out`` hold ``files`` (``run_files``'s), each written atomically in the order
    a run writes them (``RUN_FILES``: feature snapshots, then the checkpoint, then the
    rest); a file whose bytes are already there is left alone. Only ``RUN_FILES`` names
    are accepted."""
    out = Path(out)
    unknown = sorted(set(files) - set(RUN_FILES))
    if unknown:
        raise ValueError(f"not files of a run folder: {unknown} (a run holds {RUN_FILES})")
    for name in RUN_FILES:
        if name not in files:
            continue
        path = out / name
        if path.is_file() and path.read_bytes() == files[name]:
            continue
        write_atomic(path, lambda fh, data=files[name]: fh.write(data))


def claim_run(
    out: Path | None,
    cfg: TrainConfig,
    task: Task,
    device: Any,
    *,
    resume: bool,
    overwrite: bool,
) -> dict[str, Any] | None:
    """The checkpoint a run continues from, or None when it starts afresh.

    The run-folder protocol (``folder.claim``) on ``out`` with the run's identity, the
    engine resolved on both sides (``config.comparable``) and a saved identity read in
    today's layout (``config.read_identity``): a checkpoint of another task or model, or
    of another identity, is refused; one of this identity is resumed only with
    ``resume``."""
    saved: dict[str, Any] = {}

    def read_config(path: Path) -> dict[str, Any]:
        saved.update(read_checkpoint(path, map_location=device))
        if saved["model_name"] != cfg.model or saved["task"] != task.name:
            raise ValueError(
                f"{path} is a {saved['task']} {saved['model_name']} run, not {task.name} "
                f"{cfg.model}; choose another --out"
            )
        return comparable(read_identity(saved["config"]))

    resuming = claim(
        out,
        comparable(cfg.identity()),
        results="checkpoint.pt",
        read_config=read_config,
        outputs=RUN_FILES,
        resume=resume,
        overwrite=overwrite,
        hint=dtype_hint,
    )
    return saved if resuming else None


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A run's ``checkpoint.pt``, checked: readable and holding ``CHECKPOINT_KEYS``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (
        OSError,
        EOFError,
        RuntimeError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        AttributeError,
        ImportError,
    ) as exc:
        raise CorruptRunError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); it may be truncated or "
            f"corrupt: restore it, or pass --overwrite to start the run again"
        ) from exc
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CorruptRunError(
            f"{path} is not a nesterovnode checkpoint (missing {', '.join(missing)}); pass "
            f"--overwrite to start the run again"
        )
    return state


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a run directory's ``log.jsonl`` (a failure record is left out:
    ``read_failure`` gives it)."""
    return [r for r in _log_lines(out_dir) if "status" not in r]


def read_failure(out_dir: str | Path) -> dict[str, Any] | None:
    """The failure record ending a run's log, or None for a run that has not failed."""
    lines = _log_lines(out_dir)
    return lines[-1] if lines and lines[-1].get("status") == "failed" else None


def _log_lines(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / "log.jsonl"
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CorruptRunError(
                f"{path} line {i} is not JSON ({exc.msg}); the log may be truncated or "
                f"corrupt: the checkpoint beside it holds the same epochs"
            ) from exc
    return records


def load_model(
    checkpoint: str | Path,
    device: str = "cpu",
    *,
    model: str | None = None,
    task: str | None = None,
) -> TaskModel:
    """Rebuild a trained ``TaskModel`` from a run's ``checkpoint.pt`` (a run saved in
    either identity layout); with ``model`` / ``task`` a checkpoint of another model or
    task is refused (ValueError)."""
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
    identity = read_identity(state["config"])
    built = build_model(
        get_task(state["task"]),
        state["model_name"],
        SolveConfig(**identity["solve"]),
        identity.get("model_options", {}),
    )
    built.to(dtype=DTYPES[identity["dtype"]])  # before loading: no rounding
    built.load_state_dict(state["model"])
    return built.to(device)


__all__ = [
    "CHECKPOINT_KEYS",
    "FEATURES",
    "RUN_FILES",
    "CorruptRunError",
    "claim_run",
    "load_model",
    "mark_failed",
    "read_checkpoint",
    "read_failure",
    "read_log",
    "run_files",
    "save_run",
    "write_run_files",
]
