"""LHOPT's task-invariant features (Almeida et al. 2021), all unitless so one policy serves any task.

They follow OpenAI's published code (`inner_optimizer.py` for the per-parameter features, `example_config.jsonnet`
for the policy features and `cdf_features`; docs/design.md, LHOPT). Per-parameter features are computed every few
inner steps for each tensor, averaged over tensors and over the inner steps of one decision. The policy sees losses
only through log-ratios, is-nan/is-inf flags and CDF features, never raw values.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

LOG_FLOOR = 1e-8  # log(|u| + 1e-8) as in the published code; relative to the larger norm in log_norm_ratio
LOGIT_EPS = 1e-8  # logit(clip(p, eps, 1 - eps))
LOG_SHIFT = -math.log(LOG_FLOOR)  # makes log(|u| + 1e-8) non-negative
TINY = 1e-30
IDENTITY_CLIP = 10.0  # raw (identity) features are clamped to +-10 and NaN -> 0 before the policy sees them

# Per-parameter features (published inner_optimizer.py), in this order; did_grad_clip is per step, not per tensor.
INNER_FEATURE_NAMES = (
    "sqrt_v_hat_gt_epsilon",  # fraction of coordinates with sqrt(v_hat) > eps
    "mean_log_abs_update",  # mean over coordinates of log(|u| + 1e-8), u = pre-learning-rate update
    "log_two_regimes_scale",  # log||m_hat|| - log||g||  (log-ratios of norms: see log_norm_ratio)
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


def _cosines(
    a: list[Tensor], b: list[Tensor], norm_a: Tensor, norm_b: Tensor, scratch: tuple[list[Tensor], list[Tensor]]
) -> Tensor:
    """Per-tensor cos(a, b) = 1 - ||a/||a|| - b/||b||||^2 / 2 with _foreach ops only (normalizing first keeps it
    accurate to ~1e-7 even when the norms differ by orders of magnitude); 0 where either tensor vanishes. Works in
    the two `scratch` lists (shaped like `a`), in place."""
    unit_a, unit_b = scratch
    safe_a, safe_b = norm_a.clamp_min(TINY).to(a[0].dtype), norm_b.clamp_min(TINY).to(b[0].dtype)
    torch._foreach_copy_(unit_a, a)
    torch._foreach_div_(unit_a, safe_a.tolist())
    torch._foreach_copy_(unit_b, b)
    torch._foreach_div_(unit_b, safe_b.tolist())
    torch._foreach_sub_(unit_a, unit_b)
    distance = tensor_norms(unit_a)
    vanished = (norm_a < TINY) | (norm_b < TINY)
    return torch.where(vanished, torch.zeros_like(distance), 1.0 - 0.5 * distance * distance)


def feature_scratch(params: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Two work lists shaped like `params` for `tensor_stats` (8 bytes per fp32 parameter): reusing them
    avoids ~17 fresh full-size temporaries per call, whose page faults were most of the features' cost."""
    return [torch.empty_like(p) for p in params], [torch.empty_like(p) for p in params]


def scratch_fits(scratch: tuple[list[Tensor], list[Tensor]] | None, params: list[Tensor]) -> bool:
    """Whether `scratch` matches the shapes, dtypes and devices of `params`."""
    if scratch is None or len(scratch[0]) != len(params):
        return False
    return all(w.shape == p.shape and w.dtype == p.dtype and w.device == p.device for w, p in zip(scratch[0], params))


def tensor_norms(tensors: list[Tensor]) -> Tensor:
    """Per-tensor L2 norms as a float64 CPU vector (the features are a few numbers per step, kept on the host)."""
    return torch.stack(torch._foreach_norm(tensors)).double().cpu()


def log_norm_ratio(a: float, b: float) -> float:
    """log(a) - log(b) of two norms with a floor of 1e-8 times the larger one, so that the feature stays unitless
    when one norm vanishes (the published code adds an absolute 1e-8, which is not invariant to the loss scale,
    e.g. for ||m_hat - g|| = 0 at the first step); 0 when both vanish."""
    floor = LOG_FLOOR * max(a, b) + sys.float_info.min
    return math.log(a + floor) - math.log(b + floor)


def logit(p: float, eps: float = LOGIT_EPS) -> float:
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def ndtr(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


# Per-tensor statistics the features are made of, the columns of `tensor_stats` and `stats_from_sums`.
STAT_NAMES = ("grad_norm", "update_norm", "param_norm", "m_hat_norm", "noise_norm", "fraction_above",
              "mean_log_abs_update", "cos_grad_momentum", "cos_grad_param", "cos_grad_update")  # fmt: skip


def tensor_stats(
    grads: list[Tensor],
    exp_avg: list[Tensor],
    bias_correction1: float,
    sqrt_v_hat: list[Tensor],
    updates: list[Tensor],
    params: list[Tensor],
    eps: float,
    scratch: tuple[list[Tensor], list[Tensor]] | None = None,
) -> Tensor:
    """The per-tensor statistics of STAT_NAMES, (T, 10) float64, with _foreach ops (the reference; the fused CPU
    kernel's come from `stats_from_sums`). Works in `scratch` (`feature_scratch(params)`; allocated per call when
    absent or mismatched), leaving the inputs intact.

    m_hat = exp_avg / c1; ||m_hat - g|| is computed as ||exp_avg - c1 g|| / c1, which is exactly 0 at the first
    step (m_hat - g would be rounding noise there, and the noise scale would depend on the loss's scale)."""
    if not scratch_fits(scratch, params):
        scratch = feature_scratch(params)
    work, other = scratch
    sizes = torch.tensor([g.numel() for g in grads], dtype=torch.float64)
    grad_norm, u_norm, p_norm = tensor_norms(grads), tensor_norms(updates), tensor_norms(params)
    m_norm = tensor_norms(exp_avg) / bias_correction1
    torch._foreach_copy_(work, grads)
    torch._foreach_mul_(work, bias_correction1)
    torch._foreach_copy_(other, exp_avg)
    torch._foreach_sub_(other, work)
    noise_norm = tensor_norms(other) / bias_correction1
    torch._foreach_copy_(work, sqrt_v_hat)
    torch._foreach_sub_(work, eps)
    torch._foreach_clamp_min_(work, 0.0)
    fraction_above = torch.stack(torch._foreach_norm(work, 0)).double().cpu() / sizes
    # log(|u| + 1e-8) + LOG_SHIFT >= 0, so its sum is an L1 norm (a fast _foreach op)
    torch._foreach_copy_(work, updates)
    torch._foreach_abs_(work)
    torch._foreach_add_(work, LOG_FLOOR)
    torch._foreach_log_(work)
    torch._foreach_add_(work, LOG_SHIFT)
    mean_log_abs_u = torch.stack(torch._foreach_norm(work, 1)).double().cpu() / sizes - LOG_SHIFT
    cos_gm = _cosines(grads, exp_avg, grad_norm, m_norm * bias_correction1, scratch)
    cos_gp = _cosines(grads, params, grad_norm, p_norm, scratch)
    cos_gu = _cosines(grads, updates, grad_norm, u_norm, scratch)
    return torch.stack(
        (grad_norm, u_norm, p_norm, m_norm, noise_norm, fraction_above, mean_log_abs_u, cos_gm, cos_gp, cos_gu), dim=1
    )


def stats_from_sums(sums: Tensor, sizes: Tensor, bias_correction1: float) -> Tensor:
    """STAT_NAMES from the fused kernel's per-tensor sums (T, 10) float64: g.g, u.u, p.p, m.m, |m - c1 g|^2,
    #(sqrt(v_hat) > eps), sum log(|u| + 1e-8), g.m, g.p, g.u (loptim/kernels/cpu.cpp, loptim_lhopt_moments).
    Cosines are dot products over norms here (the sums are accumulated in float64), 0 where a tensor vanishes.
    Python floats, as in `features_from_stats`."""

    def cosine(dot: float, a: float, b: float) -> float:
        return 0.0 if a < TINY or b < TINY else min(max(dot / (a * b), -1.0), 1.0)

    rows = []
    for row, size in zip(sums.tolist(), sizes.tolist()):
        g, u, p, m, noise = (math.sqrt(max(x, 0.0)) for x in row[:5])
        cosines = (cosine(row[7], g, m), cosine(row[8], g, p), cosine(row[9], g, u))
        rows.append((g, u, p, m / bias_correction1, noise / bias_correction1, row[5] / size, row[6] / size, *cosines))
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(STAT_NAMES))


def features_from_stats(stats: Tensor, sizes: Tensor, lrs: Tensor) -> Tensor:
    """The 12 per-tensor features of INNER_FEATURE_NAMES (all but did_grad_clip) from the statistics of
    STAT_NAMES and the tensors' effective learning rates, averaged over tensors. In Python floats: a few
    operations per tensor, where float64 tensor operations cost ~10 us each whatever their size."""
    total = [0.0] * (NUM_INNER_FEATURES - 1)
    for row, size, lr in zip(stats.tolist(), sizes.tolist(), lrs.tolist()):
        grad_norm, u_norm, p_norm, m_norm, noise_norm, fraction_above, mean_log_abs_u, cos_gm, cos_gp, cos_gu = row
        root_dim = math.sqrt(size)
        features = (
            fraction_above,
            mean_log_abs_u,
            log_norm_ratio(m_norm, grad_norm),
            log_norm_ratio(lr * u_norm, p_norm),
            log_norm_ratio(m_norm, noise_norm),
            cos_gm,
            cos_gp,
            log_norm_ratio(p_norm, u_norm),
            cos_gu,
            logit(ndtr(cos_gm * root_dim)),
            logit(ndtr(cos_gu * root_dim)),
            ndtr(cos_gp * root_dim),
        )
        total = [t + f for t, f in zip(total, features)]
    count = max(len(stats), 1)
    return torch.tensor([t / count for t in total], dtype=torch.float64)


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
