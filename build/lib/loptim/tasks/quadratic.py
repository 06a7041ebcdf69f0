"""The 10-d quadratic of Andrychowicz et al. 2016 (Sec. 3.1): f(theta) = ||W theta - y||^2, W and y per task."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, TaskFamily, check_split
from loptim.tasks.registry import FAMILIES, TASKS


@dataclass(frozen=True)
class QuadraticConfig:
    """A batch of `num_functions` independent quadratics optimized together, as in the official L2L code."""

    dim: int = 10
    num_functions: int = 128
    function_seed: int = 0
    init_std: float = 0.01  # official code: theta ~ N(0, 0.01^2)
    noise_std: float = 0.0  # > 0 makes a noisy quadratic (LHOPT's meta-training tasks): y is jittered per batch
    steps: int = 100


class QuadraticTask(Task):
    """f(theta) = mean over functions of ||W theta - y||^2; W, y ~ N(0, 1) as in the paper (the code used U[0, 1)).

    The problem (W, y) is fixed by `function_seed`; run seeds draw theta. Every split sees the same functions, so
    train, valid and test losses agree unless `noise_std` > 0 jitters the training targets.
    """

    data_source = "synthetic"  # Andrychowicz et al. 2016

    def __init__(self, config: QuadraticConfig = QuadraticConfig(), name: str = "quadratic") -> None:
        self.config = config
        self.name = name
        self.default_steps = config.steps
        self.batch_size = config.num_functions
        g = torch.Generator().manual_seed(config.function_seed)
        self.weights = torch.randn(config.num_functions, config.dim, config.dim, generator=g)
        self.targets = torch.randn(config.num_functions, config.dim, generator=g)

    def init(self, generator: torch.Generator) -> Params:
        c = self.config
        return {"theta": torch.randn(c.num_functions, c.dim, generator=generator) * c.init_std}

    def loss(self, params: Params, batch: Batch) -> Tensor:
        weights, targets = batch
        theta = params["theta"]
        residual = torch.einsum("fij,fj->fi", weights.to(theta.dtype), theta) - targets.to(theta.dtype)
        return residual.pow(2).sum(-1).mean()

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        check_split(split)
        noise = self.config.noise_std if split == "train" else 0.0
        while True:
            if noise > 0:
                yield self.weights, self.targets + noise * torch.randn(self.targets.shape, generator=generator)
            else:
                yield self.weights, self.targets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        return [((self.weights, self.targets), 1.0)]


class QuadraticFamily(TaskFamily):
    """Quadratics with fresh W, y per sample; optionally noisy, for meta-training."""

    name = "quadratic"

    def __init__(self, noise_std: float = 0.0, steps: int = 100) -> None:
        self.noise_std = noise_std
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        seed = int(torch.randint(2**62, (1,), generator=generator))
        config = QuadraticConfig(function_seed=seed, noise_std=self.noise_std, steps=self.steps)
        return QuadraticTask(config, name=f"quadratic-{seed}")


TASKS.add("quadratic", QuadraticTask)
# The same distribution with functions no recipe meta-trains on (lstm-quadratic trains on function_seed 0): the
# L2L reproduction scores its quadratic row here, on fresh W and y, as the paper's test functions are fresh.
TASKS.add("quadratic-heldout", lambda: QuadraticTask(QuadraticConfig(function_seed=1), name="quadratic-heldout"))
FAMILIES.add("quadratic", QuadraticFamily)
FAMILIES.add("noisy-quadratic", lambda: QuadraticFamily(noise_std=1.0))
