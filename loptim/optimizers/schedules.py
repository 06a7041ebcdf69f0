"""The seven learning-rate schedules of the LHOPT tuning protocol, as multipliers of the base rate."""

from __future__ import annotations

import math
from collections.abc import Callable

from loptim.errors import UnknownNameError


def _multistep(t: float) -> float:
    return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)  # x0.1 at 50% and again at 75%


# Each maps training progress t = step / total_steps in [0, 1) to a multiplier of the base learning rate.
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "multistep": _multistep,
    "linear": lambda t: 1.0 - t,
    "quadratic": lambda t: (1.0 - t) ** 2,
    "exponential": lambda t: 0.01**t,  # decays to 1% at the end
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
    "cosine-10": lambda t: 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)),  # cosine to 10% of the base rate
}


def linear_warmup(step: int, total_steps: int, fraction: float) -> float:
    """The multiplier of step `step` (from 0) under a linear warm-up over `fraction` of `total_steps`:
    (step + 1) / (fraction * total_steps), capped at 1; 1 when `fraction` is 0."""
    return min(1.0, (step + 1) / (fraction * total_steps)) if fraction > 0.0 else 1.0


def schedule(name: str) -> Callable[[float], float]:
    if name not in SCHEDULES:
        raise UnknownNameError(f"no schedule '{name}'; known: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def parse_schedules(spec: str) -> list[str]:
    """'all' -> every schedule; 'constant' or a comma list -> those (validated)."""
    names = list(SCHEDULES) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        schedule(name)
    return names
