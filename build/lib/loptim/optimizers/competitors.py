"""Untuned competitors a user would pick instead of tuning: each from its PyPI package, with its authors' settings.

They run once per seed with the settings below (docs/competitors.md gives each setting's source); they are never
tuned. The packages are the `competitors` extra: `pip install "loptim[competitors]"`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from loptim.errors import LoptimError, UnknownNameError
from loptim.optimizers.baselines import OptimizerFactory, ScheduledOptimizer
from loptim.optimizers.schedules import schedule as get_schedule

WARMUP_FRACTION = 0.05  # schedule-free: its README recommends warmup without a length; 5% of the run is ours


class MissingPackageError(LoptimError, ImportError):
    """A competitor whose PyPI package is not installed; the message gives the pip command."""


@dataclass(frozen=True)
class CompetitorSpec:
    """A competitor: the package (and pinned version) it comes from and how it is built for a run of N steps."""

    name: str
    package: str  # the distribution name on PyPI, '' for torch itself
    version: str
    module: str
    settings: str  # one line for tables and docs
    build: Callable[[Any, list[torch.Tensor], int], Any]  # (module, params, total_steps) -> optimizer

    def pip_command(self) -> str:
        return f'pip install "{self.package}=={self.version}"  (or: pip install "loptim[competitors]")'

    def load(self) -> Any:
        try:
            return importlib.import_module(self.module)
        except ImportError:
            raise MissingPackageError(
                f"competitor '{self.name}' needs the package {self.package}: {self.pip_command()}"
            ) from None

    def installed_version(self) -> str:
        """The version actually installed (part of a cached run's key: another version may train differently)."""
        if not self.package:
            return torch.__version__
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingPackageError(
                f"competitor '{self.name}' needs the package {self.package}: {self.pip_command()}"
            ) from None


def _schedulefree(module: Any, params: list[torch.Tensor], total_steps: int) -> Any:
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    optimizer = module.AdamWScheduleFree(params, lr=0.0025, betas=(0.9, 0.999), warmup_steps=warmup)
    optimizer.train()  # schedule-free refuses to step in eval mode; the harness switches it around validations
    return optimizer


def _prodigy(module: Any, params: list[torch.Tensor], total_steps: int) -> Any:
    # lr 1 with cosine annealing to 0 over the run (CosineAnnealingLR(T_max=total_steps), as its README advises).
    return ScheduledOptimizer(module.Prodigy(params, lr=1.0), 1.0, get_schedule("cosine"), total_steps)


def _dadapt(module: Any, params: list[torch.Tensor], total_steps: int) -> Any:
    return module.DAdaptAdam(params, lr=1.0)


def _adam_default(module: Any, params: list[torch.Tensor], total_steps: int) -> Any:
    return module.Adam(params, lr=1e-3)


COMPETITORS: dict[str, CompetitorSpec] = {
    "adam-default": CompetitorSpec(
        "adam-default", "", torch.__version__, "torch.optim", "torch.optim.Adam, lr 1e-3, constant", _adam_default
    ),
    "schedulefree": CompetitorSpec(
        "schedulefree",
        "schedulefree",
        "1.4.1",
        "schedulefree",
        f"AdamWScheduleFree, lr 0.0025, betas (0.9, 0.999), no weight decay, warmup {WARMUP_FRACTION:.0%} of steps",
        _schedulefree,
    ),
    "prodigy": CompetitorSpec(
        "prodigy", "prodigyopt", "1.1.2", "prodigyopt", "Prodigy, lr 1, cosine annealing to 0 over the run", _prodigy
    ),
    "dadapt": CompetitorSpec(
        "dadapt", "dadaptation", "3.2", "dadaptation", "DAdaptAdam, lr 1, constant, defaults otherwise", _dadapt
    ),
}


def is_competitor(name: str) -> bool:
    return name in COMPETITORS


def competitor_spec(name: str) -> CompetitorSpec:
    if name not in COMPETITORS:
        raise UnknownNameError(f"no competitor '{name}'; known: {', '.join(COMPETITORS)}")
    return COMPETITORS[name]


def make_competitor(name: str) -> OptimizerFactory:
    """A factory(params, *, total_steps) for competitor `name`; fails at once, naming the pip command, if its
    package is missing."""
    spec = competitor_spec(name)
    module = spec.load()

    def factory(params: Iterable[torch.Tensor], *, total_steps: int) -> Any:
        return spec.build(module, list(params), max(int(total_steps), 1))

    return factory
