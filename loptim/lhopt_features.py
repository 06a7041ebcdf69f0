"""LHOPT's task-invariant features (Almeida et al. 2021), all unitless so one policy serves any task.

References are OpenAI's `inner_optimizer.py` (per-parameter features) and `example_config.jsonnet` (policy
features, `cdf_features`); see DESIGN.md, LHOPT. Per-parameter features are computed every few inner steps for
each tensor, averaged over tensors and over the inner steps of one decision. The policy sees losses only through
log-ratios, is-nan/is-inf flags and CDF features, never raw values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_FLOOR = 1e-8  # log(x + 1e-8) for norms, as in the published code
LOGIT_EPS = 1e-8  # logit(clip(p, eps, 1 - eps))
IDENTITY_CLIP = 10.0  # raw (identity) features are clamped to +-10 and NaN -> 0 before the policy sees them

# Per-parameter features (published inner_optimizer.py), in this order; did_grad_clip is per step, not per tensor.
INNER_FEATURE_NAMES = (
    "sqrt_v_hat_gt_epsilon",  # fraction of coordinates with sqrt(v_hat) > eps
    "mean_log_abs_update",  # mean over coordinates of log(|u| + 1e-8), u = pre-learning-rate update
    "log_two_regimes_scale",  # log||m_hat|| - log||g||
    "log_update_over_param",  # log(lr_eff ||u||) - log||p||
    "log_noise_scale",  # log||m_hat|| - log||m_hat - g||
    "cos_grad_momentum",  # cos(g, m_hat)
    "cos_grad_param",  # cos(g, p)
    "log_lamb",  # log||p|| - log||u||
    "cos_grad_update",  # cos(g, u)
    "logit_cdf_cos_grad_momentum",  # logit(Phi(cos(g, m_hat) sqrt(dim)))
    "logit_cdf_cos_grad_update",  # logit(Phi(cos(g, u) sqrt(dim)))
    "cdf_cos_grad_param",  # Phi(cos(g, p) sqrt(dim))
    "did_grad_clip",  # fraction of inner steps whose gradient was clipped (an average of booleans)
)
NUM_INNER_FEATURES = len(INNER_FEATURE_NAMES)

# CDF features: EMAs of mean and variance whose decay is set in units of training progress (example config:
# `integral_cdf` with end_weight in [1.25, 2.5, 5, 10, 20]). loptim reads end_weight w as: one unit of progress
# shrinks an observation's weight by the factor w, i.e. decay per observation = w ** -(progress step).
CDF_END_WEIGHTS = (1.25, 2.5, 5.0, 10.0, 20.0)
NUM_CDF = len(CDF_END_WEIGHTS)
CDF_VAR_EPS = 1e-12


def _signed_sums(tensors: list[Tensor]) -> Tensor:
    """Per-tensor sums of signed values with _foreach ops only (powsum takes |x|, so positives minus negatives)."""
    positive = torch._foreach_powsum(torch._foreach_clamp_min(tensors, 0.0), 1)
    negative = torch._foreach_powsum(torch._foreach_clamp_max(tensors, 0.0), 1)
    return torch.stack(positive).double() - torch.stack(negative).double()


def _norms(tensors: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(tensors)).double()


def _cosine(dot: Tensor, norm_a: Tensor, norm_b: Tensor) -> Tensor:
    return dot / (norm_a * norm_b).clamp_min(LOG_FLOOR)


def logit(p: Tensor, eps: float = LOGIT_EPS) -> Tensor:
    p = p.clamp(eps, 1.0 - eps)
    return torch.log(p / (1.0 - p))


def per_tensor_features(
    grads: list[Tensor],
    m_hat: list[Tensor],
    sqrt_v_hat: list[Tensor],
    updates: list[Tensor],
    params: list[Tensor],
    eps: float,
    lrs: Tensor,
) -> Tensor:
    """The 12 per-tensor features of INNER_FEATURE_NAMES (all but did_grad_clip), averaged over tensors."""
    sizes = torch.tensor([g.numel() for g in grads], dtype=torch.float64)
    grad_norm, m_norm, u_norm, p_norm = _norms(grads), _norms(m_hat), _norms(updates), _norms(params)
    noise_norm = _norms(torch._foreach_sub(m_hat, grads))
    above_eps = torch._foreach_clamp_min(torch._foreach_sub(sqrt_v_hat, eps), 0.0)
    fraction_above = torch.stack(torch._foreach_norm(above_eps, 0)).double() / sizes
    log_abs_u = torch._foreach_log(torch._foreach_add(torch._foreach_abs(updates), LOG_FLOOR))
    mean_log_abs_u = _signed_sums(log_abs_u) / sizes
    cos_gm = _cosine(_signed_sums(torch._foreach_mul(grads, m_hat)), grad_norm, m_norm)
    cos_gp = _cosine(_signed_sums(torch._foreach_mul(grads, params)), grad_norm, p_norm)
    cos_gu = _cosine(_signed_sums(torch._foreach_mul(grads, updates)), grad_norm, u_norm)
    log = lambda x: torch.log(x + LOG_FLOOR)  # noqa: E731
    root_dim = sizes.sqrt()
    per_tensor = torch.stack(
        (
            fraction_above,
            mean_log_abs_u,
            log(m_norm) - log(grad_norm),
            log(lrs * u_norm) - log(p_norm),
            log(m_norm) - log(noise_norm),
            cos_gm,
            cos_gp,
            log(p_norm) - log(u_norm),
            cos_gu,
            logit(torch.special.ndtr(cos_gm * root_dim)),
            logit(torch.special.ndtr(cos_gu * root_dim)),
            torch.special.ndtr(cos_gp * root_dim),
        )
    )
    return per_tensor.mean(dim=1)


def identity_feature(values: Tensor) -> Tensor:
    """A raw feature made safe for the policy: NaN -> 0, clamped to +-IDENTITY_CLIP."""
    return torch.nan_to_num(values, nan=0.0).clamp(-IDENTITY_CLIP, IDENTITY_CLIP)


# ----------------------------------------------------------------------------------------------- CDF features


def cdf_init(num_quantities: int) -> dict[str, Tensor]:
    """Tracker state for `num_quantities` scalar streams at each of the CDF_END_WEIGHTS time scales."""
    zeros = torch.zeros(num_quantities, NUM_CDF, dtype=torch.float64)
    return {"mean": zeros.clone(), "var": zeros.clone(), "correction": zeros.clone()}


def cdf_update(state: dict[str, Tensor], values: Tensor, progress_step: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Fold `values` (Q,) observed `progress_step` after the previous ones into the EMAs; return Phi(z) (Q, 5).

    z = (x - mean) / std with bias-corrected EMA mean and variance (the variance update uses the new mean, as
    the published `update_ema_emvar`). NaN values leave their stream untouched and read 0.5; +-inf read 1 or 0.
    """
    values = values.to(torch.float64).unsqueeze(1).expand(-1, NUM_CDF)
    finite = torch.isfinite(values)
    weights = torch.tensor(CDF_END_WEIGHTS, dtype=torch.float64)
    beta = torch.where(finite, weights.pow(-max(float(progress_step), 0.0)), torch.ones_like(values))
    x = torch.where(finite, values, torch.zeros_like(values))
    mean = beta * state["mean"] + (1.0 - beta) * x
    correction = beta * state["correction"] + (1.0 - beta)
    mean_hat = mean / correction.clamp_min(1e-300)
    diff = x - mean_hat
    var = beta * state["var"] + (1.0 - beta) * diff * diff
    var_hat = var / correction.clamp_min(1e-300)
    seen = correction > 0
    z = torch.where(seen, diff / torch.sqrt(var_hat + CDF_VAR_EPS), torch.zeros_like(diff))
    cdf = torch.special.ndtr(z)
    cdf = torch.where(torch.isnan(values), torch.full_like(cdf, 0.5), cdf)
    cdf = torch.where(torch.isinf(values), (values > 0).to(cdf.dtype), cdf)
    return cdf, {"mean": mean, "var": var, "correction": correction}


# ------------------------------------------------------------------------------------- loss and ratio features


def safe_log(value: float) -> float:
    """log of a positive quantity; NaN stays NaN, +inf stays +inf, values <= 0 read as the log of 1e-30."""
    if math.isnan(value) or value == math.inf:
        return value
    return math.log(max(value, 1e-30))


def log_ratio(now: float, before: float | None) -> float:
    """log(now / before) of two positive quantities; 0 when there is no `before` yet; NaN if either is NaN."""
    if before is None:
        return 0.0
    a, b = safe_log(now), safe_log(before)
    if math.isnan(a) or math.isnan(b) or (math.isinf(a) and math.isinf(b)):
        return math.nan
    return a - b


def flags(value: float) -> list[float]:
    """[is_nan, is_inf] of a scalar."""
    return [float(math.isnan(value)), float(math.isinf(value))]


def tanh_or_zero(value: float) -> float:
    """tanh of a log-ratio; NaN (flagged separately) reads 0."""
    return 0.0 if math.isnan(value) else math.tanh(value)
