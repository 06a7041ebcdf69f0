"""Tasks (what is trained) and task families (distributions of tasks for meta-training), by name."""

from loptim.tasks import families, image, quadratic, recsys, suite, text  # noqa: F401  (registers tasks, families)
from loptim.tasks.base import Task, TaskFamily
from loptim.tasks.registry import FAMILIES, TASKS


def get_task(name: str) -> Task:
    """A fresh Task by registry name; unknown names raise UnknownNameError listing the known ones."""
    return TASKS.get(name)


def get_family(name: str) -> TaskFamily:
    return FAMILIES.get(name)


__all__ = ["FAMILIES", "TASKS", "Task", "TaskFamily", "get_family", "get_task"]
