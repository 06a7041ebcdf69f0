"""Hand-designed baselines (torch.optim underneath) with a learning-rate schedule, and their tuning grids."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from loptim.errors import UnknownNameError
from loptim.optimizers.schedules import schedule as get_schedule

OptimizerFactory = Callable[..., Any]  # factory(params, *, total_steps) -> an optimizer with step() / zero_grad()


@dataclass(frozen=True)
class BaselineSpec:
    """A torch.optim optimizer, its fixed hyperparameters and the log-spaced learning-rate range it is tuned over."""

    name: str
    optimizer: type[torch.optim.Optimizer]
    fixed: dict[str, Any] = field(default_factory=dict)
    lr_range: tuple[float, float] = (1e-4, 1.0)  # log10-spaced grid between these ends, inclusive

    def lr_grid(self, points: int = 7) -> list[float]:
        low, high = np.log10(self.lr_range[0]), np.log10(self.lr_range[1])
        return [float(f"{v:.3g}") for v in np.logspace(low, high, points)]


# Learning-rate ranges: 7 log-spaced values spanning 1e-4..1, wider (to 10) for plain SGD (docs/design.md,
# evaluation protocol).
BASELINES: dict[str, BaselineSpec] = {
    "sgd": BaselineSpec("sgd", torch.optim.SGD, {}, (1e-4, 10.0)),
    "momentum": BaselineSpec("momentum", torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": BaselineSpec("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "rmsprop": BaselineSpec("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "eps": 1e-8}),
    "adam": BaselineSpec("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
    "adamw": BaselineSpec("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}),
}


def baseline_spec(name: str) -> BaselineSpec:
    if name not in BASELINES:
        raise UnknownNameError(f"no baseline optimizer '{name}'; known: {', '.join(BASELINES)}")
    return BASELINES[name]


class ScheduledOptimizer:
    """A torch.optim optimizer whose learning rate follows base_lr * schedule(step / total_steps)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        schedule: Callable[[float], float],
        total_steps: int,
    ) -> None:
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.total_steps = max(int(total_steps), 1)
        self.step_count = 0

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        lr = self.lr * self.schedule(min(self.step_count / self.total_steps, 1.0))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.step_count += 1
        return self.optimizer.step(closure)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step_count"])


def make_baseline(name: str, lr: float, schedule: str = "constant") -> OptimizerFactory:
    """A factory(params, *, total_steps) for baseline `name` at base rate `lr` under `schedule`."""
    spec = baseline_spec(name)
    schedule_fn = get_schedule(schedule)

    def factory(params: Iterable[torch.Tensor], *, total_steps: int) -> ScheduledOptimizer:
        optimizer = spec.optimizer(list(params), lr=lr, **spec.fixed)
        return ScheduledOptimizer(optimizer, lr, schedule_fn, total_steps)

    return factory
