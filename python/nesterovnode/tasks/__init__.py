"""Tasks: data + the paper's model builders + metric."""

from .base import (
    MODEL_NAMES,
    TASKS,
    Task,
    TaskDefaults,
    TaskModel,
    check_model_name,
    count_parameters,
    get_task,
)

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
