"""An inner training run in progress, as data: the task, its parameters, the learned optimizer's state, the step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from loptim.tasks.base import Task


@dataclass
class UnrollState:
    """Carried between truncations (detached); the inner run restarts when `step` reaches `total_steps`."""

    task: Task
    params: dict[str, Tensor]
    opt_state: dict[str, Tensor]
    step: int
    total_steps: int
    batches: Iterator[Any]
    valid_batches: Iterator[Any] | None = None

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


def start_unroll(task: Task, lopt: Any, total_steps: int, seed: int, with_valid: bool = False) -> UnrollState:
    """A fresh inner run of `task`: parameters and train (and valid) batch streams all derived from `seed`."""
    params = task.init(torch.Generator().manual_seed(seed))
    batches = task.batches("train", torch.Generator().manual_seed(seed + 1))
    valid = task.batches("valid", torch.Generator().manual_seed(seed + 2)) if with_valid else None
    return UnrollState(task, params, lopt.init_state(params), 0, total_steps, batches, valid)


def detach_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in state.items()}
