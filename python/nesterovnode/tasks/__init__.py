"""Tasks: data + the paper's model builders + metric. ``MODEL_NAMES`` and
``check_model_name`` are the model registry's (``dynamics.registry``)."""

from ..dynamics.registry import MODEL_NAMES, check_model_name
from .base import TASKS, Task, TaskDefaults, TaskModel, count_parameters, get_task

__all__ = [
    "MODEL_NAMES",
    "TASKS",
    "Task",
    "TaskDefaults",
    "TaskModel",
    "check_model_name",
    "count_parameters",
    "get_task",
]
