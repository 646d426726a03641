"""The one evaluation harness (DESIGN 3.3): tasks, metrics, runner, reports, lmms-eval adapter."""

from vlmrl.evals.interactive import Environment, Observation, environment_task
from vlmrl.evals.runner import EvalError, evaluate
from vlmrl.evals.tasks import (
    Docs,
    Interaction,
    Task,
    TaskError,
    get_task,
    get_tasks,
    register_task,
    task_names,
)

__all__ = [
    "Docs",
    "Environment",
    "EvalError",
    "Interaction",
    "Observation",
    "Task",
    "TaskError",
    "environment_task",
    "evaluate",
    "get_task",
    "get_tasks",
    "register_task",
    "task_names",
]
