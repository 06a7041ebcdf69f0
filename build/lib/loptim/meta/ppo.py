"""PPO for LHOPT's policy (Almeida et al. 2021; Schulman et al. 2017): GAE, the clipped objective with a value loss
and an entropy bonus, over the actor-critic of `loptim.optimizers.lhopt.policy` (one categorical head per
controlled hyperparameter).

Hyperparameters are the example config's `ppo_hyperparams` (OpenAI's LHOPT repository; docs/design.md, LHOPT).
Trajectories are padded to a common length with a mask; an update re-runs the LSTM over each whole trajectory
from its initial state, so the recurrent state is never stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from loptim.optimizers.lhopt.policy import ActorCritic, LSTMState, choose, split_heads


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; defaults from the example config's ppo_hyperparams."""

    clip: float = 0.2  # clip_param
    entropy_coef: float = 1e-2  # ent_coef
    value_coef: float = 0.5  # vf_coef
    lr: float = 2e-4  # learning_rate (Adam)
    adam_beta2: float = 0.999  # beta2
    max_grad_norm: float = 5.0  # max_grad_norm
    gamma: float = 1.0  # gamma
    gae_lambda: float = 0.95  # gae_lambda
    epochs: int = 4  # max_sample_reuse: each trajectory is used this many times
    minibatch_trajectories: int = 8  # trajectories per gradient step (loptim's choice; the config counts 128 steps)
    normalize_advantages: bool = True  # standard PPO practice (baselines ppo2); loptim's choice


# ------------------------------------------------------------------------------- categorical heads, per action


def log_prob(logits: Tensor, actions: Tensor, head_sizes: tuple[int, ...]) -> Tensor:
    """Sum over heads of log pi(choice): logits (..., sum(sizes)), actions (..., heads) -> (...)."""
    pieces = [
        torch.log_softmax(head, dim=-1).gather(-1, actions[..., i : i + 1].long()).squeeze(-1)
        for i, head in enumerate(split_heads(logits, head_sizes))
    ]
    return torch.stack(pieces, dim=-1).sum(-1)


def entropy(logits: Tensor, head_sizes: tuple[int, ...]) -> Tensor:
    """Sum over heads of the categorical entropies: (..., sum(sizes)) -> (...)."""
    total = 0.0
    for head in split_heads(logits, head_sizes):
        log_p = torch.log_softmax(head, dim=-1)
        total = total - (log_p.exp() * log_p).sum(-1)
    return total


# --------------------------------------------------------------------------------------- advantages and loss


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, last_values: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over padded trajectories (B, T); valid steps are a prefix of each row.

    A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma V_{t+1} - V_t, with V after the last valid step
    = last_values (0 for a finished episode). Returns (advantages, returns = advantages + values), 0 on padding.
    """
    advantages = torch.zeros_like(rewards)
    next_value, next_advantage = last_values.to(rewards.dtype), torch.zeros_like(last_values, dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        valid = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(valid, advantage, torch.zeros_like(advantage))
        next_value = torch.where(valid, values[:, t], next_value)
        next_advantage = advantages[:, t]
    return advantages, torch.where(mask, advantages + values, torch.zeros_like(values))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over valid steps (1: perfect critic, 0: no better than a constant)."""
    r, v = returns[mask].double(), values[mask].double()
    var = r.var(unbiased=False)
    return math.nan if float(var) == 0.0 else float(1.0 - (r - v).var(unbiased=False) / var)


def ppo_loss(
    new_log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    new_values: Tensor,
    returns: Tensor,
    entropies: Tensor,
    mask: Tensor,
    config: PPOConfig,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate + value_coef * 0.5 (V - R)^2 - entropy_coef * entropy, means over valid steps.

    Stats: approx_kl is the mean of (r - 1) - log r (non-negative, r = pi_new / pi_old), clip_fraction the share
    of steps with |r - 1| > clip.
    """
    log_ratio = new_log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - config.clip, 1.0 + config.clip)
    policy_loss = -masked_mean(torch.minimum(ratio * advantages, clipped * advantages), mask)
    value_loss = 0.5 * masked_mean((new_values - returns) ** 2, mask)
    mean_entropy = masked_mean(entropies, mask)
    loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * mean_entropy
    with torch.no_grad():
        stats = {
            "loss": float(loss),
            "policy_loss": float(policy_loss),
            "value_loss": float(value_loss),
            "entropy": float(mean_entropy),
            "approx_kl": float(masked_mean((ratio - 1.0) - log_ratio, mask)),
            "clip_fraction": float(masked_mean(((ratio - 1.0).abs() > config.clip).to(ratio.dtype), mask)),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------------- update


@dataclass
class TrajectoryBatch:
    """Recorded trajectories padded to (B, T): observations, the actions taken, their log-probabilities and
    values at collection time, rewards, a validity mask, and the value after the last step (0 if finished)."""

    obs: Tensor  # (B, T, obs_dim)
    actions: Tensor  # (B, T, heads), long
    log_probs: Tensor  # (B, T)
    values: Tensor  # (B, T)
    rewards: Tensor  # (B, T)
    mask: Tensor  # (B, T), bool
    last_values: Tensor  # (B,)
    critic_extra: Tensor | None = None  # (B, T, critic_extra_dim)
    initial_state: LSTMState | None = None  # (B, hidden) each; zeros when None
    info: dict = field(default_factory=dict)


def make_optimizer(policy: ActorCritic, config: PPOConfig) -> torch.optim.Adam:
    return torch.optim.Adam(policy.parameters(), lr=config.lr, betas=(0.9, config.adam_beta2))


def _rows(state: LSTMState | None, index: Tensor, policy: ActorCritic) -> LSTMState:
    if state is None:
        return policy.initial_state(len(index))
    return state[0][index], state[1][index]


def ppo_update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: TrajectoryBatch,
    config: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """config.epochs passes over the trajectories in random minibatches; returns the stats averaged over steps."""
    sizes = policy.config.head_sizes
    with torch.no_grad():
        advantages, returns = gae(
            batch.rewards, batch.values, batch.mask, batch.last_values, config.gamma, config.gae_lambda
        )
        if config.normalize_advantages:
            mean = masked_mean(advantages, batch.mask)
            std = torch.sqrt(masked_mean((advantages - mean) ** 2, batch.mask))
            advantages = torch.where(batch.mask, (advantages - mean) / (std + 1e-8), torch.zeros_like(advantages))
    totals: dict[str, float] = {}
    updates = 0
    count = batch.obs.shape[0]
    for _ in range(config.epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, config.minibatch_trajectories):
            index = order[start : start + config.minibatch_trajectories]
            extra = None if batch.critic_extra is None else batch.critic_extra[index]
            logits, values = policy.sequence(batch.obs[index], _rows(batch.initial_state, index, policy), extra)
            loss, stats = ppo_loss(
                log_prob(logits, batch.actions[index], sizes),
                batch.log_probs[index],
                advantages[index],
                values,
                returns[index],
                entropy(logits, sizes),
                batch.mask[index],
                config,
            )
            optimizer.zero_grad()
            loss.backward()
            stats["grad_norm"] = float(nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm))
            optimizer.step()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            updates += 1
    result = {key: value / max(updates, 1) for key, value in totals.items()}
    result["explained_variance"] = explained_variance(batch.values, returns, batch.mask)
    return result


@torch.no_grad()
def act(
    policy: ActorCritic,
    obs: Tensor,
    state: LSTMState,
    generator: torch.Generator | None,
    critic_extra: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, LSTMState]:
    """One rollout step: (actions (B, heads), their log-probabilities, values, new LSTM state); greedy if no
    generator is given."""
    logits, value, state = policy.step(obs, state, critic_extra)
    actions = choose(logits, policy.config.head_sizes, generator)
    return actions, log_prob(logits, actions, policy.config.head_sizes), value, state
