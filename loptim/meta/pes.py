"""Persistent evolution strategies (PES; Vicol, Metz and Sohl-Dickstein 2021, Sec. 3-4): unbiased meta-gradients
of whole inner runs from short truncations.

Each inner run is an antithetic pair of trajectories, one under phi + eps_j and one under phi - eps_j in its j-th
truncation; the perturbations are accumulated since the run began (xi = eps_1 + ... + eps_j), and the truncation's
estimate is (L+ - L-) xi / (2 sigma^2). Summed over the truncations of a run this is an unbiased estimate of the
gradient of the Gaussian-smoothed loss of the whole run (Eq. 7 of the paper), where truncated ES is biased toward
the short horizon. The trajectories carry over between truncations; a new run starts with xi = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from loptim.meta.es import Params, mean_and_variance
from loptim.meta.estimators import Sample, SampledEstimator, perturbation
from loptim.meta.unroll import MetaObjective, Truncation, UnrollState, run_truncation, seeded_batches
from loptim.optimizers.core import LearnedOptimizerCore

DIVERGED_LOG_RATIO = math.log(10.0)  # a truncation whose loss is not finite scores as 10x its run's initial loss


@dataclass
class PESRun:
    """An inner run under PES: its two trajectories, the accumulated perturbation, and the loss it started from."""

    plus: UnrollState
    minus: UnrollState
    accumulated: Params
    initial_loss: float

    @property
    def step(self) -> int:
        return self.plus.step

    @property
    def total_steps(self) -> int:
        return self.plus.total_steps

    @property
    def done(self) -> bool:
        return self.plus.done


def start_run(unroll: UnrollState, meta_params: Params, initial_loss: float) -> PESRun:
    """Both trajectories from the same start, nothing accumulated yet."""
    zero = {k: torch.zeros_like(v) for k, v in meta_params.items()}
    return PESRun(unroll, replace(unroll), zero, initial_loss)


def normalized(loss: float, initial: float) -> float:
    """log(loss / initial loss): comparable across tasks of different loss scales; diverged -> log 10."""
    if not math.isfinite(loss) or loss <= 0 or not math.isfinite(initial) or initial <= 0:
        return DIVERGED_LOG_RATIO if not math.isfinite(loss) else 0.0
    return min(math.log(loss / initial), DIVERGED_LOG_RATIO)


@dataclass(frozen=True)
class PES(SampledEstimator):
    """Antithetic PES on a meta-objective (a truncation's mean validation loss, as log ratio to the run's start)."""

    sigma: float = 0.01
    objective: MetaObjective = MetaObjective("valid", None, "mean")
    normalize: bool = True  # score log(loss / the run's initial loss); False: the raw meta-loss
    # The meta-parameters perturbed (None: all). The others' estimate is exactly zero, so they keep their values,
    # and the estimate of the perturbed ones carries no noise from the others (Celo's second phase trains the
    # step-size network alone: a low-dimensional problem with far less variance).
    perturbed: tuple[str, ...] | None = None
    # Each truncation's score weighted by the run's progress at its end, f^late (0: every truncation alike, the area
    # under the whole run's curve). A campaign judged by the final loss, with `late` > 0, pays more for the end of
    # a run than for its fast start (docs/generalist.md, Late-weighted objective).
    late: float = 0.0
    trajectories = 2

    def start(self, unroll: UnrollState, meta_params: Params) -> PESRun:
        """Both trajectories from `unroll`; the loss the run starts from, on a validation batch of its own."""
        with torch.no_grad():
            batch = next(seeded_batches(unroll, "valid", 3))
            initial = float(unroll.task.loss(unroll.params, batch))
        return start_run(unroll, meta_params, initial)

    def position(self, run: PESRun) -> UnrollState:
        return run.plus

    def alive(self, run: PESRun) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in (*run.plus.params.values(), *run.minus.params.values()))

    def sample(
        self, lopt: LearnedOptimizerCore, meta_params: Params, run: PESRun, truncation: Truncation, seed: int
    ) -> tuple[Sample, PESRun]:
        eps = perturbation(meta_params, self.sigma, seed, self.perturbed)
        accumulated = {k: run.accumulated[k] + eps[k] for k in meta_params}
        with torch.no_grad():
            plus, plus_end = run_truncation(lopt, shifted(meta_params, eps, 1.0), run.plus, truncation, self.objective)
            minus, minus_end = run_truncation(
                lopt, shifted(meta_params, eps, -1.0), run.minus, truncation, self.objective
            )
        plus_score, minus_score = float(plus), float(minus)
        if self.normalize:
            initial = run.initial_loss
            plus_score, minus_score = normalized(plus_score, initial), normalized(minus_score, initial)
        if self.late:
            weight = (min(plus_end.step, plus_end.total_steps) / plus_end.total_steps) ** self.late
            plus_score, minus_score = weight * plus_score, weight * minus_score
        scale = (plus_score - minus_score) / (2 * self.sigma**2)
        grads = [{k: scale * v for k, v in accumulated.items()}]
        return Sample(seed, plus_score, minus_score, grads), PESRun(plus_end, minus_end, accumulated, run.initial_loss)

    def reduce(self, meta_params: Params, samples: list[Sample]) -> tuple[Params, dict[str, float]]:
        """The mean of the samples' estimates, in their order, and the meta-loss (mean of the pair's scores)."""
        estimates = [s.grads[0] for s in samples]
        grads, variance = mean_and_variance(estimates) if len(estimates) > 1 else (estimates[0], None)
        stats = {"meta_loss": sum(0.5 * (s.plus + s.minus) for s in samples) / len(samples)}
        if variance is not None:  # per perturbed element
            keys = list(variance) if self.perturbed is None else self.perturbed
            total = sum(variance[k].numel() for k in keys)
            stats["pes_variance"] = float(sum(variance[k].sum() for k in keys) / total)
        return grads, stats


def shifted(meta_params: Params, eps: Params, sign: float) -> dict[str, Tensor]:
    return {k: v.detach() + sign * eps[k] for k, v in meta_params.items()}
