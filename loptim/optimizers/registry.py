"""Learned optimizers by name: each entry makes a factory(params, *, total_steps) with its shipped defaults."""

from __future__ import annotations

from loptim.errors import UnknownNameError
from loptim.optimizers.baselines import BASELINES, OptimizerFactory
from loptim.registry import Registry

LEARNED: Registry[OptimizerFactory] = Registry("learned optimizer")


def is_baseline(name: str) -> bool:
    return name in BASELINES


def check_optimizer_name(name: str) -> None:
    if name not in BASELINES and name not in LEARNED:
        known = ", ".join([*BASELINES, *LEARNED.names()])
        raise UnknownNameError(f"no optimizer '{name}'; known: {known}")


def learned_factory(name: str, **options: str) -> OptimizerFactory:
    """The factory of learned optimizer `name`: shipped defaults (run untuned, as a user would) unless `options`
    name other weights."""
    return LEARNED.get(name, **options)
