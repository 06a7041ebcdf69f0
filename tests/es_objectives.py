"""ES and reparameterization samples of a plain objective L(phi) (no inner run): what the estimator tests feed the
library's antithetic estimate and inverse-variance combination with."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from loptim.meta.es import Combination, Params, antithetic_estimate, combine_moments, mean_and_variance

Objective = Callable[[Params], Tensor]


def _shift(meta_params: Params, eps: Params, sign: float) -> Params:
    return {k: v + sign * eps[k] for k, v in meta_params.items()}


def antithetic_samples(
    objective: Objective, meta_params: Params, perturbations: list[Params], sigma: float
) -> list[Params]:
    """Per pair eps: the library's antithetic estimate from L(phi + eps) - L(phi - eps)."""
    with torch.no_grad():
        return [
            antithetic_estimate(
                objective(_shift(meta_params, eps, 1.0)) - objective(_shift(meta_params, eps, -1.0)), eps, sigma
            )  # fmt: skip
            for eps in perturbations
        ]


def reparameterization_samples(objective: Objective, meta_params: Params, perturbations: list[Params]) -> list[Params]:
    """Backprop gradients of L at phi + eps and at phi - eps: two samples per pair."""
    samples = []
    for eps in perturbations:
        for sign in (1.0, -1.0):
            point = {k: v.detach().clone().requires_grad_(True) for k, v in _shift(meta_params, eps, sign).items()}
            grads = torch.autograd.grad(objective(point), list(point.values()), allow_unused=True)
            samples.append({k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(point.items(), grads)})
    return samples


def inverse_variance_combine(es: list[Params], rp: list[Params], eps: float = 1e-30) -> Combination:
    """The library's per-element combination (combine_moments) of two sample lists."""
    return combine_moments(*mean_and_variance(es), *mean_and_variance(rp), eps=eps)
