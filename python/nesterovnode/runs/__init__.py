"""Runs: training one model (``training``), comparing several over seeds
(``comparison``), and the run-folder protocol both follow (``folder``)."""

from .comparison import compare, summary_rows
from .failures import CorruptRunError, RunFailed, read_checkpoint, read_failure
from .folder import ConfigurationMismatch, claim
from .training import (
    DeviceUnavailableError,
    RunResult,
    TrainConfig,
    load_model,
    load_or_train,
    read_log,
    train,
)

__all__ = [
    "ConfigurationMismatch",
    "CorruptRunError",
    "RunFailed",
    "DeviceUnavailableError",
    "RunResult",
    "TrainConfig",
    "claim",
    "compare",
    "load_model",
    "load_or_train",
    "read_checkpoint",
    "read_failure",
    "read_log",
    "summary_rows",
    "train",
]
