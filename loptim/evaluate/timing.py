"""Per-step seconds measured side by side: forward+backward and each optimizer's step() on the same model, in one
process, interleaved, so that machine load moves every figure alike (docs/design.md, performance facts: +-2x
between runs).

Runs record losses only; a bench or suite run measures these times itself and turns steps into seconds with them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from loptim.evaluate.harness import OptimizerFactory
from loptim.tasks.base import Task


@dataclass(frozen=True)
class StepTimes:
    """Seconds per training step: the model's forward+backward, and each optimizer's step() on that model."""

    forward_backward: float
    step: dict[str, float]
    rounds: int
    block: int

    def per_step(self, label: str) -> float:
        return self.forward_backward + self.step[label]

    def optimizer_share(self, label: str) -> float:
        return self.step[label] / max(self.per_step(label), 1e-12)

    def to_json(self, label: str) -> dict[str, float]:
        return {
            "forward_backward_ms": 1e3 * self.forward_backward,
            "step_ms": 1e3 * self.step[label],
            "per_step_ms": 1e3 * self.per_step(label),
            "optimizer_share": self.optimizer_share(label),
        }


class SideBySideTimer:
    """Round r times a block of forward+backward calls, then a block of each optimizer's steps, in an order that
    rotates with r (no position is always first); each figure is the median over rounds of its per-call mean.

    A block of consecutive calls (rather than one) amortizes work done every few steps, e.g. LHOPT's decisions.
    `clock` is injectable so that tests can count work instead of reading the wall clock.
    """

    def __init__(self, rounds: int = 5, block: int = 4, warmup: int = 1, clock: Callable[[], float] | None = None):
        if rounds < 1 or block < 1 or warmup < 0:
            raise ValueError(f"rounds and block must be >= 1 and warmup >= 0, got {rounds}, {block}, {warmup}")
        self.rounds, self.block, self.warmup = rounds, block, warmup
        self.clock = clock or time.perf_counter

    def _time_block(self, call: Callable[[], None]) -> float:
        start = self.clock()
        for _ in range(self.block):
            call()
        seconds = (self.clock() - start) / self.block
        reset = getattr(call, "reset", None)
        if reset is not None:  # untimed: the next block starts from the same state
            reset()
        return seconds

    def measure(self, forward_backward: Callable[[], None], steps: Mapping[str, Callable[[], None]]) -> StepTimes:
        items: list[tuple[str | None, Callable[[], None]]] = [(None, forward_backward), *steps.items()]
        for _, call in items:
            for _ in range(self.warmup):
                call()
        samples: dict[str | None, list[float]] = {label: [] for label, _ in items}
        for r in range(self.rounds):
            shift = r % len(items)
            for label, call in items[shift:] + items[:shift]:
                samples[label].append(self._time_block(call))
        medians = {label: statistics.median(values) for label, values in samples.items()}
        forward = medians.pop(None)
        return StepTimes(forward, {label: medians[label] for label in steps}, self.rounds, self.block)


def timing_block(steps: int) -> int:
    """Steps per timed block: about one LHOPT decision interval (32 decisions per run), at least 4, at most 32."""
    return min(32, max(4, -(-steps // 32)))


def _params(task: Task, seed: int) -> dict[str, torch.Tensor]:
    init = task.init(torch.Generator().manual_seed(seed))
    return {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}


def time_task(
    task: Task,
    factories: Mapping[str, OptimizerFactory],
    total_steps: int,
    rounds: int = 5,
    block: int | None = None,
    seed: int = 0,
    threads: int | None = 1,
    clock: Callable[[], float] | None = None,
) -> StepTimes:
    """Time `task`'s forward+backward and each optimizer's step() (built for a run of `total_steps`) side by side.

    Every optimizer steps its own copy of the same initialization, with the gradient of one real batch; the
    forward+backward draws fresh training batches. One thread by default, as every bench and suite run uses.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = _params(task, seed)
        batches = task.batches("train", torch.Generator().manual_seed(1_000_003 + seed))

        def forward_backward() -> None:
            for p in model.values():
                p.grad = None
            task.loss(model, next(batches)).backward()

        batch = next(batches)  # every optimizer steps with the gradient of this one batch at the same point
        steps = {label: _Stepper(task, f, total_steps, seed, batch) for label, f in factories.items()}
        timer = SideBySideTimer(rounds=rounds, block=block or timing_block(total_steps), clock=clock)
        return timer.measure(forward_backward, steps)
    finally:
        torch.set_num_threads(previous)


class _Stepper:
    """One optimizer stepping its own copy of the initialization with one fixed gradient. `reset` (called by the
    timer between blocks, untimed) rebuilds it and takes one warm-up step, so every timed block starts from the
    same early state: a fixed gradient repeated for hundreds of steps drives some optimizers to overflow
    (Prodigy's step-size estimate on movielens-gmf did), which would end the timing rather than measure it."""

    def __init__(self, task: Task, factory: OptimizerFactory, total_steps: int, seed: int, batch: Any) -> None:
        self.task, self.factory, self.total_steps, self.seed, self.batch = task, factory, total_steps, seed, batch
        self.reset(warm=False)

    def reset(self, warm: bool = True) -> None:
        params = _params(self.task, self.seed)
        optimizer = self.factory(list(params.values()), total_steps=self.total_steps)
        loss = self.task.loss(params, self.batch)
        loss.backward()
        loss = loss.detach()
        wants_loss = getattr(optimizer, "wants_loss", False)
        self._step = (lambda: optimizer.step(loss=loss)) if wants_loss else optimizer.step
        if warm:
            self._step()

    def __call__(self) -> None:
        self._step()
