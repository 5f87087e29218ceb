"""Argument types shared by the subcommands: task and model names checked against the
registries, so a wrong name is a usage error listing the valid ones."""

from __future__ import annotations

import argparse

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
