"""LHOPT's inner optimizer (Almeida et al. 2021): an AdamW whose hyperparameters a policy changes mid-run.

Facts from OpenAI's published `inner_optimizer.py` and `example_config.jsonnet` (docs/design.md, LHOPT): betas kept
as 1 - beta, bias correction as a running value c <- beta c + (1 - beta) (right even when beta changes), optional
AdaMax denominator v <- max(beta2 v, |g|), optional LAMB trust ratio against an EMA of the update norm (skipped
for tensors of dim <= 1), optional clipping of the global gradient norm at clip_ratio * a rolling max. The
"plain" configuration is textbook AdamW. Like torch.optim's functional API, `inner_step` takes its state
explicitly and updates tensors in place, with one `torch._foreach_*` call per operation over all tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from loptim.kernels import fused
from loptim.optimizers.lhopt.features import (
    INNER_FEATURE_NAMES,
    features_from_stats,
    stats_from_sums,
    tensor_norms,
    tensor_stats,
)

State = dict[str, object]  # lists of tensors (one per parameter tensor) and float scalars
NORM_FLOOR = 1e-8  # trust ratio only where both norms reach it (published code)
CLIP_EPS = 1e-6  # clip coefficient = threshold / (||g|| + CLIP_EPS) (published code)


@dataclass(frozen=True)
class InnerHParams:
    """The controlled hyperparameters; defaults are the initial values of the example config."""

    lr: float = 1e-3
    one_minus_beta1: float = 0.1
    one_minus_beta2: float = 1e-2
    eps: float = 1e-6
    weight_decay: float = 1e-2
    clip_ratio: float = 0.8  # gradient clipped at clip_ratio * rolling max of its norm
    # Held fixed by loptim (the example config also lets the policy scale these two; the paper's action list,
    # docs/design.md LHOPT, does not): decay of the clipping rolling max, and of the EMA of update norms in the
    # trust ratio.
    clip_one_minus_beta: float = 1e-2
    trust_one_minus_beta: float = 0.05


@dataclass(frozen=True)
class InnerConfig:
    """Which of the published variations are on; the default is the example config's optimizer."""

    adamax_denominator: bool = True  # denominator_norm: 'inf'
    trust_ratio: bool = True  # lamb_power 1, lamb_ignore_vectors true
    min_trust: float = 1e-3  # lamb_min_trust
    rolling_max_clip: bool = True  # group_clip_grad_norm 0.8, scale_grad_norm_by_rolling_max true
    weight_decay_in_update: bool = True  # adam_update_include_weight_decay true (else decoupled p *= 1 - lr wd)
    feature_every: int = 4  # inner_feature_frequency: per-parameter features every 4 inner steps


PUBLISHED = InnerConfig()
PLAIN_ADAMW = InnerConfig(
    adamax_denominator=False, trust_ratio=False, rolling_max_clip=False, weight_decay_in_update=False
)


def init_inner_state(params: list[Tensor]) -> State:
    """Zero moments, zero running bias corrections, no rolling max yet, zero update-norm EMAs."""
    return {
        "exp_avg": [torch.zeros_like(p) for p in params],
        "exp_avg_sq": [torch.zeros_like(p) for p in params],
        "bias_correction1": 0.0,
        "bias_correction2": 0.0,
        "rolling_max": 0.0,
        "update_norm_ema": torch.zeros(len(params), dtype=torch.float64),
        "update_norm_correction": 0.0,
        "steps": 0,
    }


def clone_state(state: State) -> State:
    """A deep copy (tensors cloned), e.g. for a restart register or a state_dict."""
    copies = {}
    for key, value in state.items():
        if isinstance(value, list):
            value = [t.clone() for t in value]
        copies[key] = value.clone() if isinstance(value, Tensor) else value
    return copies


def _clip_coefficient(
    hparams: InnerHParams, config: InnerConfig, state: State, grads: list[Tensor], norm: float | None
) -> float:
    """The factor (at most 1) that brings the gradients' global norm to at most clip_ratio * its rolling max
    (published clipping); advances the rolling max. `norm`: the gradients' global norm when the caller has it."""
    if not config.rolling_max_clip:
        return 1.0
    if norm is None:
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
    rolling_max = max(norm, state["rolling_max"] * (1.0 - hparams.clip_one_minus_beta))
    state["rolling_max"] = rolling_max
    return min(1.0, hparams.clip_ratio * rolling_max / (norm + CLIP_EPS))


def _learning_rates(
    hparams: InnerHParams,
    config: InnerConfig,
    state: State,
    params: list[Tensor],
    update_norms: list[float] | None,
    param_norms: list[float] | None,
    lr_scales: list[float] | None,
) -> list[float]:
    """Per-tensor learning rate: lr (times the tensor's lr_scale), times the trust ratio ||p|| / EMA(||u||)
    (>= min_trust) on matrices, from the tensors' update and parameter norms (unused without the trust ratio).
    In Python floats: the same float64 arithmetic as on tensors, without ~10 us per tensor operation."""
    lrs = [hparams.lr] * len(params) if lr_scales is None else [hparams.lr * scale for scale in lr_scales]
    if not config.trust_ratio:
        return lrs
    beta = 1.0 - hparams.trust_one_minus_beta
    ema = [beta * e + (1.0 - beta) * u for e, u in zip(state["update_norm_ema"].tolist(), update_norms)]
    state["update_norm_ema"] = torch.tensor(ema, dtype=torch.float64)
    correction = state["update_norm_correction"] = beta * state["update_norm_correction"] + (1.0 - beta)
    rates = []
    for lr, p, e, p_norm in zip(lrs, params, ema, param_norms):
        u_hat = e / correction
        if p.dim() > 1 and p_norm >= NORM_FLOOR and u_hat >= NORM_FLOOR:
            lr = lr * max(p_norm / u_hat, config.min_trust)
        rates.append(lr)
    return rates


def runs_fused(params: list[Tensor], grads: list[Tensor], state: State) -> bool:
    """Whether `inner_step` runs the fused CPU kernel on these tensors (float32, contiguous, CPU, built kernel);
    otherwise its _foreach reference runs, the only path that uses the features' scratch memory."""
    return fused.available(True, *params, *grads, *state["exp_avg"], *state["exp_avg_sq"])


@torch.no_grad()
def inner_step(
    hparams: InnerHParams,
    config: InnerConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    *,
    with_features: bool = False,
    lr_scales: list[float] | None = None,
    weight_decays: list[float] | None = None,
    scratch: tuple[list[Tensor], list[Tensor]] | None = None,
    grad_norm: float | None = None,
) -> tuple[bool, Tensor | None]:
    """One step on `params` (in place) from `grads` (left untouched); updates `state` in place.

    `lr_scales` multiply hparams.lr per tensor and `weight_decays` replace hparams.weight_decay per tensor (the
    torch.optim shell's param groups); None keeps the hyperparameters as they are. `scratch` (optional,
    features.feature_scratch) is the features' reusable work memory; `grad_norm` the gradients' global norm when
    the caller has computed it. On float32 CPU tensors the fused kernel (loptim/kernels/cpu.cpp) runs the same
    step; this function's _foreach path is its reference (tests/test_kernels.py).

    Returns whether the gradient was clipped and, if `with_features`, the per-parameter features of this step
    averaged over tensors (features.INNER_FEATURE_NAMES, did_grad_clip excluded).
    """
    beta1, beta2 = 1.0 - hparams.one_minus_beta1, 1.0 - hparams.one_minus_beta2
    coefficient = _clip_coefficient(hparams, config, state, grads, grad_norm)
    state["bias_correction1"] = state["bias_correction1"] * beta1 + hparams.one_minus_beta1
    state["bias_correction2"] = state["bias_correction2"] * beta2 + hparams.one_minus_beta2
    decays = [hparams.weight_decay] * len(params) if weight_decays is None else list(weight_decays)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    if runs_fused(params, grads, state):
        features = _fused_step(hparams, config, state, params, grads, coefficient, decays, lr_scales, with_features)
        state["steps"] += 1
        return coefficient < 1.0, features
    if coefficient < 1.0:
        grads = torch._foreach_mul(grads, coefficient)
    torch._foreach_mul_(exp_avg, beta1)
    torch._foreach_add_(exp_avg, grads, alpha=hparams.one_minus_beta1)
    torch._foreach_mul_(exp_avg_sq, beta2)
    if config.adamax_denominator:  # AdaMax: no bias correction of the denominator (published code)
        torch._foreach_maximum_(exp_avg_sq, torch._foreach_abs(grads))
        sqrt_v_hat = exp_avg_sq
    else:
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=hparams.one_minus_beta2)
        sqrt_v_hat = torch._foreach_div(torch._foreach_sqrt(exp_avg_sq), math.sqrt(state["bias_correction2"]))
    denominator = torch._foreach_add(sqrt_v_hat, hparams.eps)
    torch._foreach_mul_(denominator, state["bias_correction1"])
    updates = torch._foreach_div(exp_avg, denominator)  # m_hat / (sqrt(v_hat) + eps)
    if config.weight_decay_in_update:
        if weight_decays is None:
            torch._foreach_add_(updates, params, alpha=hparams.weight_decay)
        else:
            torch._foreach_add_(updates, torch._foreach_mul(params, decays))
    norms = (tensor_norms(updates).tolist(), tensor_norms(params).tolist()) if config.trust_ratio else (None, None)
    lr_list = _learning_rates(hparams, config, state, params, *norms, lr_scales)
    features = None
    if with_features:
        stats = tensor_stats(grads, exp_avg, state["bias_correction1"], sqrt_v_hat, updates, params, hparams.eps,
                             scratch)  # fmt: skip
        features = features_from_stats(stats, _sizes(params), torch.tensor(lr_list, dtype=torch.float64))
    if not config.weight_decay_in_update:
        torch._foreach_mul_(params, [1.0 - lr * decay for lr, decay in zip(lr_list, decays)])
    torch._foreach_mul_(updates, [-lr for lr in lr_list])
    torch._foreach_add_(params, updates)
    state["steps"] += 1
    return coefficient < 1.0, features


def _sizes(params: list[Tensor]) -> Tensor:
    return torch.tensor([p.numel() for p in params], dtype=torch.float64)


def _fused_step(
    hparams: InnerHParams,
    config: InnerConfig,
    state: State,
    params: list[Tensor],
    grads: list[Tensor],
    coefficient: float,
    decays: list[float],
    lr_scales: list[float] | None,
    with_features: bool,
) -> Tensor | None:
    """`inner_step` by the fused CPU kernel (bias corrections and clip coefficient already advanced): one pass
    over the coordinates when the learning rates are known in advance, two with the trust ratio (whose norms
    pass 1 sums)."""
    constants = [
        coefficient,
        1.0 - hparams.one_minus_beta1,
        hparams.one_minus_beta1,
        1.0 - hparams.one_minus_beta2,
        hparams.one_minus_beta2,
        math.sqrt(state["bias_correction2"]),
        hparams.eps,
        state["bias_correction1"],
    ]
    in_update = decays if config.weight_decay_in_update else [0.0] * len(params)
    chosen: list[list[float]] = []  # the learning rates pass 2 used, for the features

    def learning_rates(sums: Tensor | None) -> tuple[list[float], list[float]]:
        norms = (None, None)
        if sums is not None:
            squares = sums[:, 1:3].tolist()
            norms = ([math.sqrt(u) for u, _ in squares], [math.sqrt(p) for _, p in squares])
        lr_list = _learning_rates(hparams, config, state, params, *norms, lr_scales)
        chosen.append(lr_list)
        if config.weight_decay_in_update:
            return lr_list, [1.0] * len(params)
        return lr_list, [1.0 - lr * decay for lr, decay in zip(lr_list, decays)]

    schedule = learning_rates if config.trust_ratio else learning_rates(None)
    sums = fused.lhopt_step(params, grads, state["exp_avg"], state["exp_avg_sq"], constants,
                            config.adamax_denominator, with_features, in_update, schedule,
                            fused.threads_for(sum(p.numel() for p in params)))  # fmt: skip
    if not with_features:
        return None
    sizes = _sizes(params)
    lrs = torch.tensor(chosen[0], dtype=torch.float64)
    return features_from_stats(stats_from_sums(sums, sizes, state["bias_correction1"]), sizes, lrs)


__all__ = [
    "INNER_FEATURE_NAMES",
    "InnerConfig",
    "InnerHParams",
    "PLAIN_ADAMW",
    "PUBLISHED",
    "clone_state",
    "init_inner_state",
    "inner_step",
]
