"""Learned optimizers by name: each entry makes a factory(params, *, total_steps) with its shipped defaults."""

from __future__ import annotations

import inspect
from typing import Any

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


def learned_options(name: str) -> dict[str, Any]:
    """Learned optimizer `name`'s factory options (weights among them) and their defaults: what a label may set."""
    return {k: p.default for k, p in inspect.signature(LEARNED.factory(name)).parameters.items()}


def parse_label(label: str) -> tuple[str, dict[str, str | float]]:
    """A label of `--optimizers`, `name[:weights][:option=value...]`, as (name, the learned optimizer factory's
    keyword arguments): `lhopt:lhopt-small:cooldown=0` is LHOPT with weights lhopt-small and no cooldown."""
    name, *rest = label.split(":")
    options: dict[str, str | float] = {}
    for i, part in enumerate(rest):
        key, eq, value = part.partition("=")
        if i == 0 and not (eq and key.isidentifier()):  # weights (a path may hold '=': runs/lr=0.1/best.safetensors)
            if part:
                options["weights"] = part
            continue
        if not eq or not key:
            raise UnknownNameError(
                f"'{label}': write name[:weights][:option=value...], e.g. lhopt:lhopt-small:cooldown=0"
            )
        try:
            options[key] = float(value)
        except ValueError:
            options[key] = value
    return name, options


def check_optimizer_label(label: str) -> None:
    """Check a label of `--optimizers` before any run: a known name; named weights that load and fit and options the
    factory takes (a learned optimizer's `name:weights:option=value`); an installed package (a competitor)."""
    name, options = parse_label(label)
    check_optimizer_name(name)
    if options and name not in LEARNED:
        raise UnknownNameError(
            f"'{label}': only learned optimizers ({', '.join(LEARNED.names())}) take weights or options"
        )
    if options:
        known = learned_options(name)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise UnknownNameError(
                f"'{label}': {name} takes no option {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
            )
    weights = options.get("weights")
    if is_competitor(name):
        make_competitor(name)
    elif weights:
        from loptim.pretrained import load_learned

        load_learned(name, weights)
    if set(options) - {"weights"}:  # build it once on a dummy parameter: a bad value fails now, not hours later
        import torch

        try:
            learned_factory(name, **options)([torch.zeros(2, requires_grad=True)], total_steps=10)
        except (TypeError, ValueError) as error:
            raise UnknownNameError(f"'{label}': {error}") from error


def label_factory(label: str, hyperparameters: dict | None = None) -> OptimizerFactory:
    """The factory a label of `--optimizers` names: a baseline at `hyperparameters`, a competitor, or a learned
    optimizer with its shipped or named weights."""
    from loptim.optimizers.baselines import make_baseline

    name, options = parse_label(label)
    if is_baseline(name):
        return make_baseline(name, **(hyperparameters or {}))
    if is_competitor(name):
        return make_competitor(name)
    return learned_factory(name, **options)


def learned_factory(name: str, **options: str | float) -> OptimizerFactory:
    """The factory of learned optimizer `name`: shipped defaults (run untuned, as a user would) unless `options`
    name other weights."""
    return LEARNED.get(name, **options)
