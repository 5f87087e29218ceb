"""Argument types shared by the subcommands: task and model names checked against the
registries, so a wrong name is a usage error listing the valid ones; numbers checked
when parsed, so a bad value is refused in the option's own words
("argument --tol: must be a number > 0, got 0")."""

from __future__ import annotations

import argparse
import math

from ..dynamics.registry import MODEL_NAMES
from ..tasks import TASKS


def task_arg(value: str) -> str:
    key = value.lower()
    if key not in TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {value!r}; valid tasks: {', '.join(TASKS)}")
    return key


def model_arg(value: str) -> str:
    key = value.lower()
    if key not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}; valid models: {', '.join(MODEL_NAMES)}"
        )
    return key


def _int_at_least(value: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
    return n


def positive_int(value: str) -> int:
    """An integer >= 1 (epochs, seeds, jobs, batch size, iterations, threads)."""
    return _int_at_least(value, 1)


def nonnegative_int(value: str) -> int:
    """An integer >= 0 (a seed; an epoch count where 0 means untrained)."""
    return _int_at_least(value, 0)


def positive_float(value: str) -> float:
    """A finite number > 0 (learning rate, tolerance, step, Nesterov r)."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value!r}") from None
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return x
