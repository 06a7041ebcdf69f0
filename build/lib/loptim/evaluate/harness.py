"""Train any optimizer on a task over seeds, recording train loss every step and validation loss on a schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import torch

from loptim.inner import train_steps
from loptim.tasks.base import Task

OptimizerFactory = Callable[..., Any]


@dataclass
class Curve:
    """One run: train loss per step, validation loss at `valid_step`, test loss and metrics at the end.

    A run whose loss turns NaN/inf is stopped and its remaining records are `inf` (`diverged` is True). Runs record
    losses only: seconds come from `evaluate/timing.py`, measured side by side in the run that reports them.
    `seconds` and `optimizer_seconds` are kept only to read schema-1 results, which recorded them per run.
    """

    seed: int
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_step: list[int] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_loss: float = math.nan
    metrics: dict[str, float] = field(default_factory=dict)
    optimizer_seconds: float = 0.0
    diverged: bool = False

    def final_train_loss(self) -> float:
        """Mean minibatch training loss over the last 10% of steps (docs/design.md, evaluation protocol)."""
        tail = self.train_loss[-max(1, len(self.train_loss) // 10) :]
        return sum(tail) / len(tail) if tail else math.nan

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def losses_json(self) -> dict[str, Any]:
        """The curve without any seconds: what the run cache and schema-2 results keep."""
        return {k: v for k, v in asdict(self).items() if k not in ("seconds", "optimizer_seconds")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Curve:
        return cls(**data)


def validation_steps(steps: int, points: int = 20) -> list[int]:
    """Every step for runs of <= 100 steps, else `points` + 1 evenly spaced steps including 0 and the end
    (docs/design.md, evaluation protocol; each validation is a pass over the validation split)."""
    if steps <= 100:
        return list(range(steps + 1))
    return sorted({round(i * steps / points) for i in range(points + 1)})


def _leaf_params(task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().requires_grad_(True) for k, v in task.init(generator).items()}


def run_one(
    factory: OptimizerFactory,
    task: Task,
    steps: int,
    seed: int,
    observer: Callable[[int, Any], None] | None = None,
) -> Curve:
    """Train a fresh initialization of `task` with `factory(params, total_steps=steps)` for `steps` steps;
    `observer(steps_done, optimizer)`, if given, sees the optimizer after every step (e.g. LHOPT's schedule)."""
    init_gen = torch.Generator().manual_seed(seed)
    batch_gen = torch.Generator().manual_seed(1_000_003 + seed)
    params = _leaf_params(task, init_gen)
    optimizer = factory(list(params.values()), total_steps=steps)
    wants_loss = getattr(optimizer, "wants_loss", False)
    observes_validation = hasattr(optimizer, "observe_validation")
    # Schedule-free optimizers validate at their averaged point: eval() before every evaluation, train() after.
    switches_mode = callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))
    curve = Curve(seed=seed)
    valid_at = set(validation_steps(steps))
    batches = task.batches("train", batch_gen)

    def validate(step: int) -> None:
        if switches_mode:
            optimizer.eval()
        loss = task.evaluate(params, "valid", metrics=False)["loss"] if not curve.diverged else math.inf
        if switches_mode:
            optimizer.train()
        loss = loss if math.isfinite(loss) else math.inf
        curve.valid_step.append(step)
        curve.valid_loss.append(loss)
        if observes_validation and math.isfinite(loss):
            optimizer.observe_validation(loss)

    def update(step: int, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], loss: torch.Tensor):
        optimizer.zero_grad()
        for k, p in params.items():
            p.grad = grads[k]
        if wants_loss:
            optimizer.step(loss=loss.detach())
        else:
            optimizer.step()
        return params

    validate(0)
    for step, loss, _ in train_steps(task, params, islice(batches, steps), update, stop_at_nonfinite=True):
        if not torch.isfinite(loss):
            curve.diverged = True
            break
        curve.step.append(step)
        curve.train_loss.append(float(loss.detach()))
        if observer is not None:
            observer(step + 1, optimizer)
        if step + 1 in valid_at:
            validate(step + 1)
    for step in range(len(curve.step), steps):  # a diverged run: its remaining records are inf
        curve.step.append(step)
        curve.train_loss.append(math.inf)
        if step + 1 in valid_at:
            validate(step + 1)
    if switches_mode:
        optimizer.eval()  # the model a schedule-free run delivers is its averaged point
    if curve.diverged:
        curve.test_loss = math.inf
    else:
        test = task.evaluate(params, "test")
        curve.test_loss = test.pop("loss")
        curve.metrics = test
        if not math.isfinite(curve.test_loss):
            curve.diverged, curve.test_loss = True, math.inf
    return curve
