"""Meta-gradient estimators behind one interface; the outer trainer does not care which one it has.

Each takes a batch of inner runs in progress and one pre-drawn truncation per run, and returns the meta-gradient,
the inner runs advanced by the truncation, and statistics (meta-loss; for the Metz 2019 estimators, each
estimator's empirical variance and the weight the combination gave it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from loptim.meta.es import Params, inverse_variance_combine, mean_and_variance, sample_perturbations
from loptim.meta.unroll import L2L_OBJECTIVE, METZ_OBJECTIVE, MetaObjective, Truncation, UnrollState, run_truncation


@dataclass
class Estimate:
    grads: Params
    unrolls: list[UnrollState]
    stats: dict[str, float] = field(default_factory=dict)


class Estimator(Protocol):
    def estimate(
        self,
        lopt: Any,
        meta_params: Params,
        unrolls: list[UnrollState],
        truncations: list[Truncation],
        generator: torch.Generator,
    ) -> Estimate: ...


def perturbed_leaves(meta_params: Params, shift: Params | None = None, sign: float = 1.0) -> Params:
    """Fresh autograd leaves at phi (+ sign * shift)."""
    return {
        k: (v.detach() + sign * shift[k] if shift is not None else v.detach()).requires_grad_(True)
        for k, v in meta_params.items()
    }


def backprop_truncation(
    lopt: Any, leaves: Params, unroll: UnrollState, truncation: Truncation, objective: MetaObjective, second_order: bool
) -> tuple[Tensor, Params, UnrollState]:
    """(meta-loss, its gradient in `leaves`, end state) of one truncation."""
    loss, end = run_truncation(lopt, leaves, unroll, truncation, objective, second_order)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    grads = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}
    return loss.detach(), grads, end


def _finite(grads: Params) -> bool:
    return all(bool(torch.isfinite(g).all()) for g in grads.values())


def _weighted_mean(values: dict[str, float], meta_params: Params) -> float:
    """A per-tensor statistic averaged over all meta-parameter elements."""
    total = sum(v.numel() for v in meta_params.values())
    return sum(values[k] * meta_params[k].numel() for k in meta_params) / total


@dataclass(frozen=True)
class TruncatedBackprop:
    """L2L's estimator: backprop through each truncation at phi itself, averaged over the batch of inner runs."""

    objective: MetaObjective = L2L_OBJECTIVE
    second_order: bool = False

    def estimate(
        self,
        lopt: Any,
        meta_params: Params,
        unrolls: list[UnrollState],
        truncations: list[Truncation],
        generator: torch.Generator,
    ) -> Estimate:
        samples, losses, ends = [], [], []
        for unroll, truncation in zip(unrolls, truncations):
            loss, grads, end = backprop_truncation(
                lopt, perturbed_leaves(meta_params), unroll, truncation, self.objective, self.second_order
            )
            samples.append(grads)
            losses.append(float(loss))
            ends.append(end)
        mean = {k: torch.stack([s[k] for s in samples]).mean(0) for k in meta_params}
        return Estimate(mean, ends, {"meta_loss": sum(losses) / len(losses)})


@dataclass(frozen=True)
class SmoothedEstimator:
    """Gradient of the Gaussian-smoothed meta-loss E[L(phi + eps)], eps ~ N(0, sigma^2) (Metz et al. 2019, Sec. 3).

    mode "rp": reparameterization, backprop through the unroll at phi + eps and phi - eps (2 samples per run);
    "es": antithetic evolution strategies from the same two meta-losses without backprop (1 sample per run);
    "combined": both from the same two unrolls, merged per element by inverse empirical variance (Eq. 6).
    One perturbation per inner run; the run continues from its phi + eps trajectory (sigma is small).
    """

    mode: Literal["rp", "es", "combined"] = "combined"
    sigma: float = 0.01
    objective: MetaObjective = METZ_OBJECTIVE
    second_order: bool = True

    def estimate(
        self,
        lopt: Any,
        meta_params: Params,
        unrolls: list[UnrollState],
        truncations: list[Truncation],
        generator: torch.Generator,
    ) -> Estimate:
        es_samples, rp_samples, losses, ends = [], [], [], []
        for unroll, truncation in zip(unrolls, truncations):
            eps = sample_perturbations(meta_params, self.sigma, 1, generator)[0]
            if self.mode == "es":
                with torch.no_grad():
                    plus, end = run_truncation(
                        lopt, perturbed_leaves(meta_params, eps, 1.0), unroll, truncation, self.objective
                    )
                    minus, _ = run_truncation(
                        lopt, perturbed_leaves(meta_params, eps, -1.0), unroll, truncation, self.objective
                    )
            else:
                plus, g_plus, end = backprop_truncation(
                    lopt, perturbed_leaves(meta_params, eps, 1.0), unroll, truncation, self.objective, self.second_order
                )
                minus, g_minus, _ = backprop_truncation(
                    lopt,
                    perturbed_leaves(meta_params, eps, -1.0),
                    unroll,
                    truncation,
                    self.objective,
                    self.second_order,
                )
                rp_samples += [g for g in (g_plus, g_minus) if _finite(g)]
            difference = float(plus) - float(minus)
            if math.isfinite(difference):
                es_samples.append({k: difference * e / (2 * self.sigma**2) for k, e in eps.items()})
            losses.append(0.5 * (float(plus) + float(minus)))
            ends.append(end)
        stats = {"meta_loss": sum(losses) / len(losses)}
        zero = {k: torch.zeros_like(v) for k, v in meta_params.items()}
        es_mean = es_var = rp_mean = rp_var = None
        if len(es_samples) > 1:
            es_mean, es_var = mean_and_variance(es_samples)
            stats["es_variance"] = _weighted_mean({k: float(v.mean()) for k, v in es_var.items()}, meta_params)
        if len(rp_samples) > 1:
            rp_mean, rp_var = mean_and_variance(rp_samples)
            stats["rp_variance"] = _weighted_mean({k: float(v.mean()) for k, v in rp_var.items()}, meta_params)
        if self.mode == "es":
            grads = es_mean if es_mean is not None else zero
        elif self.mode == "rp":
            grads = rp_mean if rp_mean is not None else zero
        elif es_mean is None:
            grads = rp_mean if rp_mean is not None else zero
        else:
            combination = inverse_variance_combine(es_samples, rp_samples) if rp_samples else None
            grads = combination.grad if combination is not None else es_mean
            share = combination.es_weight if combination is not None else {k: 1.0 for k in meta_params}
            stats["es_weight"] = _weighted_mean(share, meta_params)
        stats["samples_dropped"] = float(
            len(unrolls) * (1 if self.mode == "es" else 2) - (len(es_samples) if self.mode == "es" else len(rp_samples))
        )
        return Estimate(grads, ends, stats)
