"""Learned optimizers by name: each entry makes a factory(params, *, total_steps) with its shipped defaults."""

from __future__ import annotations

from loptim.errors import UnknownNameError
from loptim.optimizers.baselines import BASELINES, OptimizerFactory
from loptim.optimizers.competitors import COMPETITORS, is_competitor, make_competitor
from loptim.registry import Registry

LEARNED: Registry[OptimizerFactory] = Registry("learned optimizer")


def is_baseline(name: str) -> bool:
    return name in BASELINES


def check_optimizer_name(name: str) -> None:
    if name not in BASELINES and name not in LEARNED and name not in COMPETITORS:
        known = ", ".join([*BASELINES, *COMPETITORS, *LEARNED.names()])
        raise UnknownNameError(f"no optimizer '{name}'; known: {known}")


def check_optimizer_label(label: str) -> None:
    """Check a label of `--optimizers` before any run: a known name; named weights that load and fit (a learned
    optimizer's `name:weights`); an installed package (a competitor)."""
    name, _, weights = label.partition(":")
    check_optimizer_name(name)
    if weights and name not in LEARNED:
        raise UnknownNameError(f"'{label}': only learned optimizers ({', '.join(LEARNED.names())}) take weights")
    if is_competitor(name):
        make_competitor(name)
    elif weights:
        from loptim.pretrained import load_learned

        load_learned(name, weights)


def label_factory(label: str, hyperparameters: dict | None = None) -> OptimizerFactory:
    """The factory a label of `--optimizers` names: a baseline at `hyperparameters`, a competitor, or a learned
    optimizer with its shipped or named weights."""
    from loptim.optimizers.baselines import make_baseline

    name, _, weights = label.partition(":")
    if is_baseline(name):
        return make_baseline(name, **(hyperparameters or {}))
    if is_competitor(name):
        return make_competitor(name)
    return learned_factory(name, **({"weights": weights} if weights else {}))


def learned_factory(name: str, **options: str) -> OptimizerFactory:
    """The factory of learned optimizer `name`: shipped defaults (run untuned, as a user would) unless `options`
    name other weights."""
    return LEARNED.get(name, **options)
