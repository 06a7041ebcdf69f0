"""Gradient estimators of a Gaussian-smoothed objective E[L(phi + eps)], eps ~ N(0, sigma^2 I) (Metz et al. 2019,
Sec. 3): antithetic evolution strategies, reparameterization (backprop at phi + eps), and their per-element
combination weighted by inverse empirical variance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Params = dict[str, Tensor]


def sample_perturbations(meta_params: Params, sigma: float, pairs: int, generator: torch.Generator) -> list[Params]:
    """`pairs` draws of eps ~ N(0, sigma^2 I) shaped like the meta-parameters (each is used as +eps and -eps)."""
    return [
        {k: torch.randn(v.shape, generator=generator, dtype=v.dtype) * sigma for k, v in meta_params.items()}
        for _ in range(pairs)
    ]


def antithetic_estimate(difference: float | Tensor, eps: Params, sigma: float) -> Params:
    """(L(phi + eps) - L(phi - eps)) eps / (2 sigma^2): an unbiased estimate of the smoothed gradient from one pair."""
    return {k: difference * e / (2 * sigma**2) for k, e in eps.items()}


def mean_and_variance(samples: list[Params]) -> tuple[Params, Params]:
    """Per element: the sample mean and the variance of that mean (sample variance / n)."""
    n = len(samples)
    mean = {k: torch.stack([s[k] for s in samples]).mean(0) for k in samples[0]}
    var = {k: torch.stack([s[k] for s in samples]).var(0, unbiased=True) / n for k in samples[0]} if n > 1 else \
        {k: torch.full_like(v, float("inf")) for k, v in mean.items()}  # fmt: skip
    return mean, var


@dataclass(frozen=True)
class Combination:
    """The combined gradient and, per tensor, the mean weight given to ES and each estimator's variance."""

    grad: Params
    es_weight: dict[str, float]
    es_variance: dict[str, float]
    rp_variance: dict[str, float]


def combine_moments(
    es_mean: Params, es_var: Params, rp_mean: Params, rp_var: Params, eps: float = 1e-30
) -> Combination:
    """g = (g_es / var_es + g_rp / var_rp) / (1 / var_es + 1 / var_rp), per element (Metz et al. 2019, Eq. 6).

    A non-finite reparameterization sample (an exploding unroll) gets weight 0: the ES estimate is used alone.
    """
    grad, es_weight = {}, {}
    for k in es_mean:
        w_es = 1.0 / (es_var[k] + eps)
        w_rp = torch.where(torch.isfinite(rp_var[k]) & torch.isfinite(rp_mean[k]), 1.0 / (rp_var[k] + eps), 0.0)
        share = w_es / (w_es + w_rp)
        grad[k] = share * es_mean[k] + (1 - share) * torch.nan_to_num(rp_mean[k], nan=0.0, posinf=0.0, neginf=0.0)
        es_weight[k] = float(share.mean())
    return Combination(
        grad=grad,
        es_weight=es_weight,
        es_variance={k: float(v.mean()) for k, v in es_var.items()},
        rp_variance={k: float(v.mean()) for k, v in rp_var.items()},
    )
