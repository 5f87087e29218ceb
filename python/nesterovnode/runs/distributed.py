"""Training under torchrun: the process group, the device of each process, and sums over
processes.

Under ``torchrun --nproc_per_node=K`` a run trains with DistributedDataParallel (process
group from torchrun's environment: nccl on CUDA, gloo on CPU; each process drives the GPU
``LOCAL_RANK``). A process group this module initialised is destroyed by
``shutdown_distributed()`` (the CLI calls it when its command ends) or, failing that, at
interpreter exit. Without torchrun (WORLD_SIZE unset or 1) everything here is the
single-process identity: rank 0 of 1, sums unchanged.
"""

from __future__ import annotations

import atexit
import os

import torch


class DeviceUnavailableError(RuntimeError):
    """The device asked for (``--device cuda``) does not exist here."""


def distributed_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


_OWN_PROCESS_GROUP = False  # True while a process group this module created is alive


def shutdown_distributed() -> None:
    """Destroy the process group ``init_distributed`` initialised (no-op otherwise, or
    twice)."""
    global _OWN_PROCESS_GROUP
    if _OWN_PROCESS_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _OWN_PROCESS_GROUP = False


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device): torchrun's process group joined when WORLD_SIZE > 1.

    ``device``: "auto" (cuda when torch sees a GPU), "cpu", "cuda" or "cuda:K"; under
    torchrun each process takes the GPU ``LOCAL_RANK``. An unknown name is a ValueError,
    a CUDA device torch does not see a ``DeviceUnavailableError``."""
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


def all_reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    """``values`` summed over the ``world`` processes (in float64); the same list, not a
    copy, in a single process."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def barrier(world: int) -> None:
    """Wait for every process (no-op in a single process)."""
    if world > 1:
        torch.distributed.barrier()


__all__ = [
    "DeviceUnavailableError",
    "all_reduce_sum",
    "barrier",
    "distributed_env",
    "init_distributed",
    "shutdown_distributed",
]
