"""The committed partition of every data set loptim can load into meta-train, meta-valid and suite (docs/data.md).

Meta-training samples tasks only from meta-train data (meta-valid data may score checkpoints and design choices);
the held-out suite (`loptim suite`) runs only on suite data, which meta-training refuses (`check_meta_trainable`).
"""

from __future__ import annotations

from loptim.errors import SuiteDataError, UnknownNameError
from loptim.tasks.base import Task

PARTS = ("meta-train", "meta-valid", "suite")
SYNTHETIC = "synthetic"  # generated functions (the quadratics), not a packaged data set

PARTITION: dict[str, str] = {
    # meta-train: what learned optimizers are meta-trained on
    SYNTHETIC: "meta-train",
    "mnist": "meta-train",
    "moby-dick": "meta-train",
    "sotu": "meta-train",
    "health-insurance": "meta-train",
    "us-births": "meta-train",
    # meta-valid: checkpoint and design selection, never a reported result
    "spam-assassin": "meta-valid",
    "doctor-contacts": "meta-valid",
    # suite: the held-out evaluation; the first three hold the original held-out tasks
    "fashion-mnist": "suite",
    "shakespeare": "suite",
    "movielens-100k": "suite",
    "brown": "suite",
    "fsdd": "suite",
    "diamonds": "suite",
}


def part_of(dataset: str) -> str:
    """The part ('meta-train', 'meta-valid' or 'suite') that data set `dataset` belongs to."""
    if dataset not in PARTITION:
        raise UnknownNameError(f"data set '{dataset}' is in no part of the partition; known: {', '.join(PARTITION)}")
    return PARTITION[dataset]


def datasets(part: str) -> tuple[str, ...]:
    """The data sets of one part, in the partition's order."""
    if part not in PARTS:
        raise UnknownNameError(f"no part '{part}'; use one of {', '.join(PARTS)}")
    return tuple(name for name, assigned in PARTITION.items() if assigned == part)


def check_meta_trainable(task: Task) -> Task:
    """`task` itself when meta-training may use it; a SuiteDataError when its data set is suite data."""
    if part_of(task.data_source) == "suite":
        raise SuiteDataError(
            f"task '{task.name}' trains on '{task.data_source}', which the partition (loptim/tasks/partition.py)"
            f" holds out for the suite; meta-train on {', '.join(datasets('meta-train'))}"
        )
    return task
