"""Runs: one concern a module.

config       a run's identity (``TrainConfig``, carrying a ``SolveConfig``); saved
             identities read back in either layout
training     the loop: one epoch -> one record; ``train`` a run
checkpoint   a run folder's files: save, read back checked, resume, ``load_model``
features     a run's learned features h(T): final, and snapshots kept in its folder
folder       the run-folder protocol (resume / overwrite / refuse) of runs and
             comparisons
failures     what counts as a failed run, and its one line
distributed  torchrun: the process group, devices, sums over processes
sweep        the runs of a (model, seed) grid behind one ``Executor`` seam
comparison   ``compare``: a sweep's results.json and plots
provenance   versions, commit, hardware, time
summary      summary over seeds, rows, the text table
statistics   over seeds for a claim: per run, per model, paired between two models
             (ratios, t and bootstrap intervals, sign and Wilcoxon tests), verdicts
compiling    whether a run's ODE steps are compiled
models       a task's models and inputs for the diagnostics
"""

from .checkpoint import CorruptRunError, load_model, read_checkpoint, read_failure, read_log
from .comparison import compare
from .config import TrainConfig
from .distributed import DeviceUnavailableError
from .failures import RunFailed
from .folder import ConfigurationMismatch, claim
from .models import get_model, task_inputs
from .summary import format_table, run_rows, summary_rows
from .sweep import Executor, InProcess, ProcessPool
from .training import RunResult, load_or_train, train

__all__ = [
    "ConfigurationMismatch",
    "CorruptRunError",
    "DeviceUnavailableError",
    "Executor",
    "InProcess",
    "ProcessPool",
    "RunFailed",
    "RunResult",
    "TrainConfig",
    "claim",
    "compare",
    "format_table",
    "get_model",
    "load_model",
    "load_or_train",
    "read_checkpoint",
    "read_failure",
    "read_log",
    "run_rows",
    "summary_rows",
    "task_inputs",
    "train",
]
