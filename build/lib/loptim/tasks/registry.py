"""The task and task-family registries: every task is looked up by name (CLI, harness, tests)."""

from loptim.registry import Registry
from loptim.tasks.base import Task, TaskFamily

TASKS: Registry[Task] = Registry("task")
FAMILIES: Registry[TaskFamily] = Registry("task family")
