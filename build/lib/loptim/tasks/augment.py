"""Task augmentation for meta-training: reparameterized tasks and mixtures of task families.

Reparameterization (Celo, Moudgil et al. 2025; VeLO, Metz et al. 2022): tensor k is stored as s_k * theta_k and the
loss sees stored / s_k, so the function is unchanged but the gradient scales by 1 / s_k and the parameters by
s_k: an optimizer that ignores scale fails on such tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, TaskFamily
from loptim.tasks.registry import FAMILIES


class ReparameterizedTask(Task):
    """`task` with tensor k stored as scales[k] * theta_k; losses and metrics are the original task's."""

    def __init__(self, task: Task, scales: dict[str, float]) -> None:
        self.task = task
        self.scales = scales
        self.name = f"{task.name}-reparam"
        self.default_steps, self.batch_size, self.data_source = task.default_steps, task.batch_size, task.data_source

    def _original(self, params: Params) -> Params:
        return {k: v / self.scales[k] for k, v in params.items()}

    def init(self, generator: torch.Generator) -> Params:
        return {k: v * self.scales[k] for k, v in self.task.init(generator).items()}

    def loss(self, params: Params, batch: Batch) -> Tensor:
        return self.task.loss(self._original(params), batch)

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        return self.task.batches(split, generator)

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        return self.task.eval_batches(split)

    def metrics(self, params: Params, split: str) -> dict[str, float]:
        return self.task.metrics(self._original(params), split)


def reparameterize(task: Task, generator: torch.Generator, log10_range: tuple[float, float]) -> ReparameterizedTask:
    """Per-tensor scales log-uniform in 10 ** log10_range, drawn from `generator`."""
    names = list(task.init(torch.Generator().manual_seed(0)))
    low, high = log10_range
    exponents = low + (high - low) * torch.rand(len(names), generator=generator, dtype=torch.float64)
    return ReparameterizedTask(task, {k: float(10.0**e) for k, e in zip(names, exponents)})


class MixtureFamily(TaskFamily):
    """Draws a family by weight, a task from it, and with probability `augment` reparameterizes it."""

    def __init__(
        self,
        families: tuple[tuple[str, float], ...],
        augment: float = 0.0,
        log10_scales: tuple[float, float] = (-1.0, 1.0),
        name: str = "mixture",
    ) -> None:
        if not families or any(weight <= 0 for _, weight in families):
            raise ValueError(f"a mixture needs families with positive weights, got {families}")
        self.families = [(FAMILIES.get(family), weight) for family, weight in families]
        self.augment = augment
        self.log10_scales = log10_scales
        self.name = name

    def sample(self, generator: torch.Generator) -> Task:
        weights = torch.tensor([weight for _, weight in self.families], dtype=torch.float64)
        index = int(torch.multinomial(weights, 1, generator=generator))
        task = self.families[index][0].sample(generator)
        if float(torch.rand((), generator=generator, dtype=torch.float64)) < self.augment:
            return reparameterize(task, generator, self.log10_scales)
        return task
