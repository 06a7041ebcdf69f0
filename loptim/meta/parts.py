"""The swappable parts of `MetaTrainer` other than the core and the estimator: where inner runs' tasks come from,
how long each truncation is, how inner runs live across epochs, and how a checkpoint is scored.

A recipe (loptim.meta.recipes) is a frozen configuration that names its parts (`recipe.parts()`); a new
combination of parts is a new recipe, never a new trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from loptim.meta.unroll import evaluation_run, final_train_loss
from loptim.optimizers.core import LearnedOptimizerCore
from loptim.optimizers.mlp import MLPOptimizerNet, generalist_config
from loptim.tasks import get_family, get_task
from loptim.tasks.augment import MixtureFamily
from loptim.tasks.base import Task, TaskFamily, log_uniform_int
from loptim.tasks.partition import check_meta_trainable

EVAL_SEED_BASE = 10_000_000  # checkpoint selection uses these seeds; `loptim bench` uses 0, 1, 2, ...


# --- task sources ------------------------------------------------------------------------------------------------


class TaskSource(Protocol):
    """The task and the inner-run length of the run seeded `seed` (both pure functions of the seed)."""

    def task(self, seed: int) -> Task: ...

    def length(self, seed: int) -> int: ...


@dataclass
class OneTask:
    """One task, a fresh initialization and batch order per run (L2L trains one optimizer per problem, Sec. 3)."""

    name: str
    steps: int

    def __post_init__(self) -> None:
        self._task = check_meta_trainable(get_task(self.name))

    def task(self, seed: int) -> Task:
        return self._task

    def length(self, seed: int) -> int:
        return self.steps


@dataclass
class FamilyTasks:
    """A task sampled from a family per run, of a log-uniform length in `inner_steps` (Metz et al. 2019, Sec. 5);
    recently drawn tasks are kept (their data sets are shared)."""

    family: TaskFamily
    inner_steps: tuple[int, int]
    keep: int = 16
    _tasks: dict[int, Task] = field(default_factory=dict, repr=False)

    def task(self, seed: int) -> Task:
        if seed not in self._tasks:
            task = check_meta_trainable(self.family.sample(torch.Generator().manual_seed(seed)))
            self._tasks = {seed: task, **self._tasks}
            while len(self._tasks) > self.keep:
                self._tasks.pop(next(reversed(self._tasks)))
        return self._tasks[seed]

    def length(self, seed: int) -> int:
        return log_uniform_int(torch.Generator().manual_seed(seed + 1), *self.inner_steps)


def family_tasks(name: str, inner_steps: tuple[int, int], keep: int) -> FamilyTasks:
    return FamilyTasks(get_family(name), inner_steps, keep)


def mixture_tasks(
    families: tuple[tuple[str, float], ...],
    augment: float,
    log10_scales: tuple[float, float],
    inner_steps: tuple[int, int],
    name: str,
    keep: int,
) -> FamilyTasks:
    return FamilyTasks(MixtureFamily(families, augment, log10_scales, name=name), inner_steps, keep)


# --- truncation schedules ----------------------------------------------------------------------------------------


class TruncationSchedule(Protocol):
    """The truncation length of every run slot at outer step `epoch`, drawn from `generator`."""

    def lengths(self, epoch: int, generator: torch.Generator, slots: int) -> list[int]: ...


@dataclass(frozen=True)
class FixedTruncation:
    """Every truncation `length` steps (L2L: 20, Sec. 3)."""

    length: int

    def lengths(self, epoch: int, generator: torch.Generator, slots: int) -> list[int]:
        return [self.length] * slots


@dataclass(frozen=True)
class UniformTruncation:
    """One length per outer step, uniform in [low, high], shared by all slots."""

    low: int
    high: int

    def lengths(self, epoch: int, generator: torch.Generator, slots: int) -> list[int]:
        return [int(torch.randint(self.low, self.high + 1, (), generator=generator))] * slots


# --- how inner runs live -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreshRuns:
    """Every epoch starts `count` runs and takes them to their end, one outer update per truncation (L2L, Sec. 3:
    one optimizee per meta-iteration); a run whose meta-loss or meta-gradient is not finite ends the epoch."""

    count: int = 1


@dataclass(frozen=True)
class CarriedRuns:
    """`count` runs carried across epochs, one truncation and one outer update per epoch, each restarted with a
    fresh task when it ends or diverges (Metz et al. 2019, Sec. 5). `in_checkpoint`: the runs in flight are part
    of the checkpoint (exact resume); otherwise they restart on resume and the checkpoint is a few KB, written
    every epoch."""

    count: int
    in_checkpoint: bool = True


# --- checkpoint scores -------------------------------------------------------------------------------------------


class Score(Protocol):
    """A checkpoint's held-out score (lower is better) and its parts by name (for a campaign log); `label` names it
    in the weights' card."""

    label: ClassVar[str]

    def __call__(
        self, core: LearnedOptimizerCore, meta: dict[str, Tensor], tasks: TaskSource, map_samples: Any
    ) -> tuple[float, dict[str, float]]: ...


@dataclass(frozen=True)
class FinalTrainLoss:
    """Mean final training loss of `runs` fresh runs on held-out seeds (L2L's objective on unseen seeds)."""

    label: ClassVar[str] = "mean_final_train_loss_heldout_seeds"

    runs: int

    def __call__(self, core, meta, tasks, map_samples) -> tuple[float, dict[str, float]]:
        def score(i: int) -> float:
            seed = EVAL_SEED_BASE + 3 * i
            return final_train_loss(core, meta, tasks.task(seed), tasks.length(seed), seed)

        scores = map_samples(self.runs, score)
        return sum(scores) / len(scores), {}


@dataclass(frozen=True)
class FinalValidLoss:
    """Mean final validation loss (capped at `cap`) over `count` held-out task samples."""

    label: ClassVar[str] = "mean_final_valid_loss_heldout_family_samples"

    count: int
    cap: float = 10.0  # a diverged evaluation run scores as the meta-objective's clip value

    def __call__(self, core, meta, tasks, map_samples) -> tuple[float, dict[str, float]]:
        def score(i: int) -> float:
            seed = EVAL_SEED_BASE + 7 * i
            task = check_meta_trainable(tasks.family.sample(torch.Generator().manual_seed(seed)))
            loss, _ = evaluation_run(core, meta, task, tasks.length(seed), seed)
            return min(loss, self.cap) if math.isfinite(loss) else self.cap

        scores = map_samples(self.count, score)
        return sum(scores) / len(scores), {}


@dataclass(frozen=True)
class LogRatioToAdam:
    """Mean over named tasks of log(final valid loss / Adam-at-1e-3's) on a held-out seed; negative beats Adam. A
    diverged run scores 10x its initial validation loss."""

    label: ClassVar[str] = "mean_log_ratio_final_valid_loss_to_adam_1e-3"

    task_names: tuple[str, ...]

    def __call__(self, core, meta, tasks, map_samples) -> tuple[float, dict[str, float]]:
        scores = {}
        for name in self.task_names:
            task = get_task(name)
            learned = capped_valid_loss(core, meta, task, task.default_steps, EVAL_SEED_BASE)
            scores[name] = math.log(learned / adam_reference(name, EVAL_SEED_BASE))
        return sum(scores.values()) / len(scores), scores


def capped_valid_loss(core: LearnedOptimizerCore, meta: dict[str, Tensor], task: Task, steps: int, seed: int) -> float:
    """The final validation loss, or 10x the initial one if the run diverged."""
    loss, initial = evaluation_run(core, meta, task, steps, seed, with_initial=True)
    return loss if math.isfinite(loss) else 10.0 * initial


@cache
def adam_reference(name: str, seed: int) -> float:
    """Adam at lr 1e-3 on the same task, steps and seed (the generalist's initialization): the score's unit."""
    net = MLPOptimizerNet(generalist_config(), generator=torch.Generator().manual_seed(0))
    meta = {k: v.detach() for k, v in net.meta_params().items()}  # output layer and schedule at zero: Adam
    task = get_task(name)
    return capped_valid_loss(net, meta, task, task.default_steps, seed)


# --- the whole -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OuterOptimizer:
    """Adam on the meta-parameters, the meta-gradient clipped at norm `clip_norm`."""

    lr: float
    beta1: float = 0.9
    clip_norm: float = 1.0


@dataclass
class Parts:
    """Everything `MetaTrainer` composes. `core` is the learned optimizer's config (its `build` makes the core),
    `card` what the weights' card says about the optimizer and its meta-training."""

    core: Any
    tasks: TaskSource
    estimator: Any
    schedule: TruncationSchedule
    runs: FreshRuns | CarriedRuns
    score: Score
    outer: OuterOptimizer
    card: dict[str, Any]
    init_from: str | None = None  # shipped weights to start from (warm_start), instead of the seed's draw
