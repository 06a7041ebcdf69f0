"""Learning-rate schedules, the scheduled baseline wrapper, the tuning grids, and unknown-name errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from loptim.errors import UnknownNameError
from loptim.optimizers.baselines import BASELINES, ScheduledOptimizer, baseline_spec, make_baseline
from loptim.optimizers.registry import check_optimizer_name
from loptim.optimizers.schedules import SCHEDULES, parse_schedules, schedule

KNOWN_VALUES = {
    "constant": [(0.0, 1.0), (0.37, 1.0), (0.99, 1.0)],
    "multistep": [(0.0, 1.0), (0.4, 1.0), (0.5, 0.1), (0.6, 0.1), (0.75, 0.01), (0.8, 0.01)],
    "linear": [(0.0, 1.0), (0.25, 0.75), (0.9, 0.1), (1.0, 0.0)],
    "quadratic": [(0.0, 1.0), (0.5, 0.25), (0.9, 0.01), (1.0, 0.0)],
    "exponential": [(0.0, 1.0), (0.5, 0.1), (1.0, 0.01)],
    "cosine": [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)],
    "cosine-10": [(0.0, 1.0), (0.5, 0.55), (1.0, 0.1)],
}


def test_there_are_exactly_the_seven_protocol_schedules():
    assert set(SCHEDULES) == set(KNOWN_VALUES)
    assert parse_schedules("all") == list(SCHEDULES)
    assert parse_schedules("constant") == ["constant"]
    assert parse_schedules(" cosine, linear ,") == ["cosine", "linear"]


@pytest.mark.parametrize("name", list(KNOWN_VALUES))
def test_schedule_known_values(name):
    fn = schedule(name)
    for t, expected in KNOWN_VALUES[name]:
        assert fn(t) == pytest.approx(expected, abs=1e-12), (name, t)
    # Every schedule starts at the base rate and never increases.
    values = [fn(t) for t in np.linspace(0.0, 0.999, 200)]
    assert values[0] == 1.0 and all(b <= a + 1e-15 for a, b in zip(values, values[1:]))


def test_cosine_10_approaches_a_tenth_and_cosine_approaches_zero():
    assert schedule("cosine-10")(1.0 - 1e-9) == pytest.approx(0.1, abs=1e-9)
    assert schedule("cosine")(1.0 - 1e-9) == pytest.approx(0.0, abs=1e-9)
    assert schedule("exponential")(0.25) == pytest.approx(0.01**0.25)


def sum_problem(lr: float, name: str, total_steps: int, optimizer=torch.optim.SGD) -> tuple[torch.Tensor, object]:
    """A parameter whose loss is its sum: the gradient is 1, so a plain SGD step moves it by exactly -lr."""
    param = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    scheduled = ScheduledOptimizer(optimizer([param], lr=lr), lr, schedule(name), total_steps)
    return param, scheduled


@pytest.mark.parametrize("name", list(KNOWN_VALUES))
def test_scheduled_optimizer_sets_base_times_schedule_at_each_step(name):
    base, total = 0.5, 8
    param, optimizer = sum_problem(base, name, total)
    for step in range(total + 2):  # past the end, progress stays clamped at 1
        before = param.detach().clone()
        optimizer.zero_grad()
        param.sum().backward()
        optimizer.step()
        expected = base * SCHEDULES[name](min(step / total, 1.0))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-15), step
        torch.testing.assert_close(before - param.detach(), torch.full((3,), expected, dtype=torch.float64))
    assert optimizer.step_count == total + 2


def test_make_baseline_uses_the_fixed_hyperparameters_and_schedule():
    param = torch.zeros(2, requires_grad=True)
    optimizer = make_baseline("nesterov", 0.2, "linear")([param], total_steps=4)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer.optimizer, torch.optim.SGD)
    assert group["momentum"] == 0.9 and group["nesterov"] is True
    param.sum().backward()
    optimizer.step()
    optimizer.step()
    assert group["lr"] == pytest.approx(0.2 * 0.75)
    adamw = make_baseline("adamw", 1e-3)([torch.zeros(1, requires_grad=True)], total_steps=1)
    assert isinstance(adamw.optimizer, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 1e-2


def test_state_dict_round_trip_continues_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(5, generator=generator)
    grads = [torch.randn(5, generator=generator) for _ in range(8)]

    def make(param: torch.Tensor) -> ScheduledOptimizer:
        return make_baseline("adam", 0.1, "linear")([param], total_steps=8)

    def advance(param: torch.Tensor, optimizer: ScheduledOptimizer, steps: list[torch.Tensor]) -> None:
        for grad in steps:
            optimizer.zero_grad()
            ((param - target) ** 2).sum().backward()
            param.grad.add_(grad)
            optimizer.step()

    param = torch.zeros(5, requires_grad=True)
    optimizer = make(param)
    advance(param, optimizer, grads[:4])
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    restored_param = param.detach().clone().requires_grad_(True)
    restored = make(restored_param)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.step_count == optimizer.step_count == 4
    advance(param, optimizer, grads[4:])
    advance(restored_param, restored, grads[4:])
    assert torch.equal(param, restored_param)
    assert optimizer.param_groups[0]["lr"] == restored.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 7 / 8))

    fresh_param = torch.zeros(5, requires_grad=True)  # without the restore the run differs, so the test can fail
    fresh = make(fresh_param)
    advance(fresh_param, fresh, grads[4:])
    assert not torch.equal(fresh_param, param)


def test_baseline_learning_rate_grids():
    assert set(BASELINES) == {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"}
    for name, spec in BASELINES.items():
        grid = spec.lr_grid()
        assert len(grid) == 7 == len(set(grid)), name
        assert grid == sorted(grid) and grid[0] == 1e-4 and grid[-1] >= 1.0, name
        ratios = np.diff(np.log10(grid))
        assert np.allclose(ratios, ratios[0], atol=2e-3), (name, grid)  # log-spaced up to 3-digit rounding
    assert baseline_spec("adam").lr_grid() == [1e-4, 4.64e-4, 2.15e-3, 1e-2, 4.64e-2, 0.215, 1.0]
    assert baseline_spec("sgd").lr_grid()[-1] == 10.0
    assert baseline_spec("adam").lr_grid(3) == [1e-4, 1e-2, 1.0]


@pytest.mark.parametrize(
    "lookup, wrong, known",
    [
        (schedule, "cosin", list(SCHEDULES)),
        (parse_schedules, "constant,cosin", list(SCHEDULES)),
        (baseline_spec, "adma", list(BASELINES)),
        (lambda name: make_baseline("adam", 0.1, name), "cosin", list(SCHEDULES)),
        (check_optimizer_name, "sgdd", list(BASELINES)),
    ],
)
def test_unknown_names_raise_and_list_the_known_ones(lookup, wrong, known):
    with pytest.raises(UnknownNameError) as info:
        lookup(wrong)
    message = str(info.value)
    assert f"'{wrong.split(',')[-1]}'" in message
    assert "known" in message and all(name in message for name in known), message
    assert isinstance(info.value, KeyError)  # callers may still catch it as a failed lookup


def test_schedule_values_are_finite_over_the_run():
    for name, fn in SCHEDULES.items():
        assert all(math.isfinite(fn(t)) and fn(t) >= 0.0 for t in np.linspace(0.0, 1.0, 101)), name
