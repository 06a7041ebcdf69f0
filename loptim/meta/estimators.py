"""Meta-gradient estimators behind one interface; the outer trainer does not care which one it has.

Each takes a batch of inner runs in progress and one pre-drawn truncation per run, and returns the meta-gradient,
the inner runs advanced by the truncation, and statistics (meta-loss; for the Metz 2019 estimators, each
estimator's empirical variance and the weight the combination gave it). Internally an estimate is `sample` per
inner run (from that run's own noise seed) then `reduce` over the samples in order, so the runs can be split
across processes and the samples gathered (loptim.meta.distributed) with a bit-for-bit identical result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from loptim.meta.es import Params, antithetic_estimate, combine_moments, mean_and_variance, sample_perturbations
from loptim.meta.unroll import (
    L2L_OBJECTIVE,
    METZ_OBJECTIVE,
    MetaObjective,
    Truncation,
    UnrollState,
    draw_truncation,
    run_truncation,
)
from loptim.optimizers.core import LearnedOptimizerCore


@dataclass
class Estimate:
    grads: Params
    unrolls: list[UnrollState]
    stats: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)  # wall time of each local sample (load balancing)


def perturbed_leaves(meta_params: Params, shift: Params | None = None, sign: float = 1.0) -> Params:
    """Fresh autograd leaves at phi (+ sign * shift)."""
    return {
        k: (v.detach() + sign * shift[k] if shift is not None else v.detach()).requires_grad_(True)
        for k, v in meta_params.items()
    }


def backprop_truncation(
    lopt: LearnedOptimizerCore,
    leaves: Params,
    unroll: UnrollState,
    truncation: Truncation,
    objective: MetaObjective,
    second_order: bool,
) -> tuple[Tensor, Params, UnrollState]:
    """(meta-loss, its gradient in `leaves`, end state) of one truncation."""
    loss, end = run_truncation(lopt, leaves, unroll, truncation, objective, second_order, differentiable=True)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    grads = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}
    return loss.detach(), grads, end


def _finite(grads: Params) -> bool:
    return all(bool(torch.isfinite(g).all()) for g in grads.values())


def _weighted_mean(values: dict[str, float], meta_params: Params) -> float:
    """A per-tensor statistic averaged over all meta-parameter elements."""
    total = sum(v.numel() for v in meta_params.values())
    return sum(values[k] * meta_params[k].numel() for k in meta_params) / total


@dataclass
class Sample:
    """One inner run's contribution to a meta-gradient, without its inner state: what ranks exchange.

    `plus`/`minus`: meta-losses at phi + eps and phi - eps (TruncatedBackprop: `plus` at phi, `minus` equal);
    `grads`: its backprop gradients that are finite (none for ES, whose direction is regenerated from `seed`).
    """

    seed: int
    plus: float
    minus: float
    grads: list[Params] = field(default_factory=list)


def perturbation(meta_params: Params, sigma: float, seed: int, keys: tuple[str, ...] | None = None) -> Params:
    """The sample's eps ~ N(0, sigma^2 I), a pure function of its seed (so any rank can regenerate it); with `keys`
    only those meta-parameters are perturbed and the others' eps is exactly zero."""
    drawn = meta_params if keys is None else {k: meta_params[k] for k in keys}
    eps = sample_perturbations(drawn, sigma, 1, torch.Generator().manual_seed(seed))[0]
    return {k: eps[k] if k in eps else torch.zeros_like(v) for k, v in meta_params.items()}


def draw_seeds(generator: torch.Generator | None, count: int) -> list[int]:
    """Per-sample noise seeds from one generator (the single-process `estimate` API)."""
    if generator is None:
        return [0] * count
    return [int(torch.randint(0, 2**62, (), generator=generator)) for _ in range(count)]


def estimate_samples(
    estimator: Any,
    lopt: LearnedOptimizerCore,
    meta_params: Params,
    unrolls: list[UnrollState],
    truncations: list[Truncation],
    seeds: list[int],
    gather: Callable[[list[Sample]], list[Sample]] | None = None,
) -> Estimate:
    """The estimate from this process's inner runs: each becomes a `Sample` from its own seed, `gather` turns the
    local samples into the global list (in global sample order; identity when alone) and every process reduces
    that same list, so the result does not depend on how the samples were split across processes."""
    local, ends, seconds = [], [], []
    for unroll, truncation, seed in zip(unrolls, truncations, seeds):
        start = time.perf_counter()
        sample, end = estimator.sample(lopt, meta_params, unroll, truncation, seed)
        seconds.append(time.perf_counter() - start)
        local.append(sample)
        ends.append(end)
    samples = gather(local) if gather is not None else local
    grads, stats = estimator.reduce(meta_params, samples)
    return Estimate(grads, ends, stats, seconds)


class SampledEstimator:
    """The estimator interface: `sample` (one inner run, from its own seed) and `reduce` (all samples, in global
    order), `estimate` for a single process. An estimator may carry more than an `UnrollState` per inner run (PES:
    two trajectories); `start`, `position`, `draw` and `alive` say how, and `trajectories` how many inner steps a
    truncation step costs."""

    trajectories = 1

    def start(self, unroll: UnrollState, meta_params: Params) -> Any:
        """The estimator's run object for a fresh inner run."""
        return unroll

    def position(self, run: Any) -> UnrollState:
        """Where the run stands (step, total steps)."""
        return run

    def draw(self, run: Any, length: int, with_valid: bool) -> Truncation:
        """The run's next truncation (its batches, drawn before any perturbation)."""
        return draw_truncation(self.position(run), length, with_valid)

    def alive(self, run: Any) -> bool:
        """False once an inner run diverged: it restarts with a fresh task."""
        return all(bool(torch.isfinite(p).all()) for p in self.position(run).params.values())

    def estimate(
        self,
        lopt: LearnedOptimizerCore,
        meta_params: Params,
        unrolls: list[UnrollState],
        truncations: list[Truncation],
        generator: torch.Generator | None,
    ) -> Estimate:
        seeds = draw_seeds(generator, len(unrolls))
        return estimate_samples(self, lopt, meta_params, unrolls, truncations, seeds)


@dataclass(frozen=True)
class TruncatedBackprop(SampledEstimator):
    """L2L's estimator: backprop through each truncation at phi itself, averaged over the batch of inner runs."""

    objective: MetaObjective = L2L_OBJECTIVE
    second_order: bool = False

    def sample(
        self, lopt: LearnedOptimizerCore, meta_params: Params, unroll: UnrollState, truncation: Truncation, seed: int
    ) -> tuple[Sample, UnrollState]:
        loss, grads, end = backprop_truncation(
            lopt, perturbed_leaves(meta_params), unroll, truncation, self.objective, self.second_order
        )
        return Sample(seed, float(loss), float(loss), [grads]), end

    def reduce(self, meta_params: Params, samples: list[Sample]) -> tuple[Params, dict[str, float]]:
        """The mean gradient over the samples, in their order."""
        mean = {k: torch.stack([s.grads[0][k] for s in samples]).mean(0) for k in meta_params}
        return mean, {"meta_loss": sum(s.plus for s in samples) / len(samples)}


@dataclass(frozen=True)
class SmoothedEstimator(SampledEstimator):
    """Gradient of the Gaussian-smoothed meta-loss E[L(phi + eps)], eps ~ N(0, sigma^2) (Metz et al. 2019, Sec. 3).

    mode "rp": reparameterization, backprop through the unroll at phi + eps and phi - eps (2 samples per run);
    "es": antithetic evolution strategies from the same two meta-losses without backprop (1 sample per run);
    "combined": both from the same two unrolls, merged per element by inverse empirical variance (Eq. 6).
    One perturbation per inner run, drawn from that run's seed; the run continues from its phi + eps trajectory
    (sigma is small).
    """

    mode: Literal["rp", "es", "combined"] = "combined"
    sigma: float = 0.01
    objective: MetaObjective = METZ_OBJECTIVE
    second_order: bool = True

    def sample(
        self, lopt: LearnedOptimizerCore, meta_params: Params, unroll: UnrollState, truncation: Truncation, seed: int
    ) -> tuple[Sample, UnrollState]:
        """The antithetic pair of one inner run; ES keeps only the two meta-losses (eps is regenerated from seed)."""
        eps = perturbation(meta_params, self.sigma, seed)
        if self.mode == "es":
            with torch.no_grad():
                plus, end = run_truncation(
                    lopt, perturbed_leaves(meta_params, eps, 1.0), unroll, truncation, self.objective
                )
                minus, _ = run_truncation(
                    lopt, perturbed_leaves(meta_params, eps, -1.0), unroll, truncation, self.objective
                )
            return Sample(seed, float(plus), float(minus)), end
        plus, g_plus, end = backprop_truncation(
            lopt, perturbed_leaves(meta_params, eps, 1.0), unroll, truncation, self.objective, self.second_order
        )
        minus, g_minus, _ = backprop_truncation(
            lopt, perturbed_leaves(meta_params, eps, -1.0), unroll, truncation, self.objective, self.second_order
        )
        return Sample(seed, float(plus), float(minus), [g for g in (g_plus, g_minus) if _finite(g)]), end

    def reduce(self, meta_params: Params, samples: list[Sample]) -> tuple[Params, dict[str, float]]:
        """The estimator's gradient and statistics from all samples, in their order."""
        es_samples, rp_samples = [], []
        for sample in samples:
            difference = sample.plus - sample.minus
            if math.isfinite(difference):
                eps = perturbation(meta_params, self.sigma, sample.seed)
                es_samples.append(antithetic_estimate(difference, eps, self.sigma))
            rp_samples += sample.grads
        stats = {"meta_loss": sum(0.5 * (s.plus + s.minus) for s in samples) / len(samples)}
        es = mean_and_variance(es_samples) if len(es_samples) > 1 else None  # a variance needs 2 samples
        rp = mean_and_variance(rp_samples) if len(rp_samples) > 1 else None
        for name, moments in (("es_variance", es), ("rp_variance", rp)):
            if moments is not None:
                stats[name] = _weighted_mean({k: float(v.mean()) for k, v in moments[1].items()}, meta_params)
        if self.mode == "combined" and es is not None:
            if rp is not None:
                combination = combine_moments(*es, *rp)
                grads, share = combination.grad, combination.es_weight
            else:  # no usable backprop samples: ES alone
                grads, share = es[0], dict.fromkeys(meta_params, 1.0)
            stats["es_weight"] = _weighted_mean(share, meta_params)
        else:
            chosen = es if self.mode == "es" else rp  # combined without ES samples falls back to backprop
            grads = chosen[0] if chosen is not None else {k: torch.zeros_like(v) for k, v in meta_params.items()}
        stats["samples_dropped"] = float(
            len(samples) * (1 if self.mode == "es" else 2) - (len(es_samples) if self.mode == "es" else len(rp_samples))
        )
        return grads, stats
