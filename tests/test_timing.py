"""Side-by-side timing and the tuning-inclusive cost, on constructed steps and curves with known answers.

Work is counted on an injected clock (each fake call advances it by its cost), so nothing reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
import torch

from loptim.evaluate.cost import cost_ratio, cost_to_target
from loptim.evaluate.harness import Curve
from loptim.evaluate.speedup import mean_curve, speedup
from loptim.evaluate.timing import SideBySideTimer, time_task, timing_block
from loptim.tasks.base import Params, Task


class CountingClock:
    """A clock that only moves when work is done: `work(units)` makes a call that costs `units` seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, costs: Iterable[float]):
        costs = iter(costs)

        def call() -> None:
            self.log.append(name)
            self.now += next(costs)

        return call


def constant(units: float) -> Iterator[float]:
    while True:
        yield units


def test_timer_recovers_known_relative_costs_and_interleaves():
    clock = CountingClock()
    timer = SideBySideTimer(rounds=3, block=2, warmup=1, clock=clock)
    times = timer.measure(
        clock.work("fb", constant(10.0)), {"a": clock.work("a", constant(1.0)), "b": clock.work("b", constant(5.0))}
    )
    assert times.forward_backward == 10.0 and times.step == {"a": 1.0, "b": 5.0}
    assert times.per_step("b") == 15.0 and times.optimizer_share("a") == pytest.approx(1 / 11)
    assert (times.rounds, times.block) == (3, 2)
    # One warm-up call each, then rounds of blocks in an order that rotates, so no item is always first.
    warmup, rounds = clock.log[:3], clock.log[3:]
    assert warmup == ["fb", "a", "b"] and len(rounds) == 3 * 3 * 2
    blocks = [rounds[i : i + 6 : 2] for i in range(0, 18, 6)]
    assert blocks == [["fb", "a", "b"], ["a", "b", "fb"], ["b", "fb", "a"]]


def test_timer_medians_ignore_one_slow_round():
    # Round 2 of optimizer b hit a loaded machine (100 s per call); its median is still its usual 5 s.
    clock = CountingClock()
    b_costs = iter([5.0] + [5.0] * 2 + [5.0] * 2 + [100.0] * 2 + [5.0] * 4)
    timer = SideBySideTimer(rounds=5, block=2, warmup=1, clock=clock)
    times = timer.measure(clock.work("fb", constant(2.0)), {"b": clock.work("b", b_costs)})
    assert times.step["b"] == 5.0 and times.forward_backward == 2.0


def test_timer_rejects_empty_settings():
    with pytest.raises(ValueError, match="rounds"):
        SideBySideTimer(rounds=0)
    with pytest.raises(ValueError, match="block"):
        SideBySideTimer(block=0)


def test_timing_block_covers_one_lhopt_decision_interval():
    assert timing_block(20) == 4 and timing_block(500) == 16 and timing_block(100_000) == 32


class CountedTask(Task):
    """A task whose forward+backward costs 7 units on the clock, so time_task's attribution can be checked."""

    name = "counted"

    def __init__(self, clock: CountingClock) -> None:
        self.clock = clock

    def init(self, generator: torch.Generator) -> Params:
        return {"w": torch.randn(3, generator=generator)}

    def loss(self, params: Params, batch: torch.Tensor) -> torch.Tensor:
        self.clock.now += 7.0
        return (params["w"] * batch).sum() ** 2

    def batches(self, split: str, generator: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            yield torch.randn(3, generator=generator)

    def eval_batches(self, split: str) -> list:
        return []


class CountedOptimizer(torch.optim.SGD):
    """SGD whose step costs `units` on the clock; remembers the parameters it steps (its own copy)."""

    def __init__(self, params, clock: CountingClock, units: float, wants_loss: bool = False) -> None:
        super().__init__(params, lr=0.1)
        self.clock, self.units, self.wants_loss, self.losses = clock, units, wants_loss, []

    def step(self, closure=None, *, loss=None):
        self.clock.now += self.units
        self.losses.append(loss)
        return super().step(closure)


def test_time_task_attributes_forward_backward_and_each_step():
    clock = CountingClock()
    task = CountedTask(clock)
    made: dict[str, CountedOptimizer] = {}

    def factory(label: str, units: float, wants_loss: bool = False):
        def make(params, *, total_steps: int) -> CountedOptimizer:
            made[label] = CountedOptimizer(params, clock, units, wants_loss)
            return made[label]

        return make

    factories = {"cheap": factory("cheap", 1.0), "dear": factory("dear", 30.0, wants_loss=True)}
    times = time_task(task, factories, total_steps=100, rounds=3, block=2, threads=None, clock=clock)
    assert times.forward_backward == 7.0 and times.step == {"cheap": 1.0, "dear": 30.0}
    cheap, dear = made["cheap"], made["dear"]
    assert cheap.param_groups[0]["params"][0] is not dear.param_groups[0]["params"][0]  # each its own copy
    assert torch.equal(cheap.param_groups[0]["params"][0].grad, dear.param_groups[0]["params"][0].grad)  # same batch
    assert cheap.losses[0] is None and isinstance(dear.losses[0], torch.Tensor)  # step(loss=...) where wanted


class Overflowing(CountedOptimizer):
    """Fails on its 4th step, as Prodigy's estimate overflowed after many steps of one fixed gradient."""

    def step(self, closure=None, *, loss=None):
        if len(self.losses) >= 3:
            raise RuntimeError("value cannot be converted to type float without overflow")
        return super().step(closure, loss=loss)


def test_every_timed_block_starts_from_a_fresh_optimizer():
    clock = CountingClock()
    built = []

    def make(params, *, total_steps: int) -> Overflowing:
        built.append(Overflowing(params, clock, 2.0))
        return built[-1]

    times = time_task(CountedTask(clock), {"fragile": make}, total_steps=100, rounds=4, block=2, threads=None,
                      clock=clock)  # fmt: skip
    assert times.step == {"fragile": 2.0}  # the rebuilding and its warm-up step are not timed
    assert len(built) == 1 + 4 and all(len(o.losses) <= 3 for o in built)  # one per block, after the first


def valid_curve(valid_loss: list[float]) -> Curve:
    return Curve(seed=0, step=list(range(40)), train_loss=[1.0] * 40, valid_step=[0, 10, 20, 30, 40],
                 valid_loss=list(valid_loss))  # fmt: skip


def test_cost_to_target_counts_the_whole_grid_plus_the_winners_steps():
    winner = mean_curve([valid_curve([4.0, 3.0, 2.0, 1.5, 1.0])])
    # A tuned baseline: 14 grid runs of 40 steps, then the winner reaches 1.0 at step 40.
    tuned = cost_to_target(winner, target=1.0, run_steps=40, grid_runs=14, step_seconds=0.5)
    assert (tuned.runs, tuned.steps, tuned.seconds) == (15, 14 * 40 + 40, (14 * 40 + 40) * 0.5)
    # An untuned optimizer: one run, up to where it first reaches the target (1.25: halfway from step 30 to 40).
    untuned = cost_to_target(winner, target=1.25, run_steps=40, step_seconds=2.0)
    assert (untuned.runs, untuned.steps, untuned.seconds) == (1, 35.0, 70.0)
    never = cost_to_target(winner, target=0.5, run_steps=40, grid_runs=3, step_seconds=1.0)
    assert (never.runs, never.steps, never.seconds) == (4, None, None)
    assert cost_ratio(tuned, untuned) == pytest.approx(600 / 35) and cost_ratio(tuned, never) is None
    assert cost_to_target(winner, 1.0, 40).seconds is None  # no measured time, no seconds
    assert tuned.to_json() == {"runs": 15, "steps": 600.0, "seconds": 300.0}


def test_wallclock_speedup_uses_measured_seconds_per_step():
    reference = mean_curve([valid_curve([4.0, 3.0, 2.0, 1.5, 1.0])])
    candidate = mean_curve([valid_curve([4.0, 2.0, 1.0, 0.8, 0.5])])  # reaches 1.0 at step 20: 2x in steps
    assert reference.seconds.size == 0  # losses-only curves
    result = speedup(reference, candidate, reference_step_seconds=1.0, candidate_step_seconds=4.0)
    assert result.steps == pytest.approx(2.0) and result.wallclock == pytest.approx(0.5)
    assert speedup(reference, candidate).wallclock is None  # neither measured nor recorded seconds
