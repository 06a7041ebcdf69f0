"""The functional Task interface: parameters are plain dicts of tensors, so unrolls stay differentiable."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

Params = dict[str, Tensor]
Batch = Any

SPLITS = ("train", "valid", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")


class Task(ABC):
    """A training problem: fresh parameters, a differentiable loss, and batches of a real data set per split.

    Subclasses implement `init`, `loss`, `batches` and `eval_batches`; `evaluate` averages the loss over the
    whole evaluation set of a split (plus any task metrics from `metrics`).
    """

    name: str = "task"
    default_steps: int = 100
    batch_size: int = 128
    data_source: str = "synthetic"  # the data set's name in the partition (loptim.tasks.partition)

    @abstractmethod
    def init(self, generator: torch.Generator) -> Params:
        """Fresh parameters (leaf tensors, not requiring grad) drawn from `generator`."""

    @abstractmethod
    def loss(self, params: Params, batch: Batch) -> Tensor:
        """Scalar loss, differentiable in `params`."""

    @abstractmethod
    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        """An endless stream of minibatches of `split`, random under `generator`."""

    @abstractmethod
    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        """The fixed evaluation set of `split` as (batch, weight) pairs; weights sum to the set's size."""

    def metrics(self, params: Params, split: str) -> dict[str, float]:
        """Task metrics besides the loss (e.g. hr@10); none by default."""
        return {}

    @torch.no_grad()
    def evaluate(self, params: Params, split: str, metrics: bool = True) -> dict[str, float]:
        """Mean loss over the split's evaluation set, plus task metrics unless `metrics` is False."""
        check_split(split)
        total, weight = 0.0, 0.0
        for batch, w in self.eval_batches(split):
            total += float(self.loss(params, batch)) * w
            weight += w
        loss = total / weight if weight > 0 else math.nan
        return {"loss": loss, **(self.metrics(params, split) if metrics else {})}

    def num_params(self) -> int:
        params = self.init(torch.Generator().manual_seed(0))
        return sum(p.numel() for p in params.values())


class TaskFamily(ABC):
    """A distribution over task variants (sizes, depths, activations, batch sizes, lengths) for meta-training."""

    name: str = "family"

    @abstractmethod
    def sample(self, generator: torch.Generator) -> Task:
        """Draw one task variant."""


def uniform_choice(generator: torch.Generator, options: list | tuple) -> Any:
    """One element of `options`, drawn from `generator`."""
    index = int(torch.randint(len(options), (1,), generator=generator))
    return options[index]


def log_uniform_int(generator: torch.Generator, low: int, high: int) -> int:
    """An integer log-uniform in [low, high], drawn from `generator`."""
    u = float(torch.rand((), generator=generator))
    return int(round(math.exp(math.log(low) + u * (math.log(high) - math.log(low)))))
