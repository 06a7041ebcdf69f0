"""PPO for LHOPT's policy (Almeida et al. 2021; Schulman et al. 2017): an LSTM actor-critic with one categorical
head per controlled hyperparameter, GAE, the clipped objective with a value loss and an entropy bonus.

Hyperparameters are the example config's `ppo_hyperparams` (OpenAI's LHOPT repository; DESIGN.md, LHOPT). The
network is scaled down for this machine: MLP 64 -> layer-norm LSTM 64 -> heads (the config: 256 -> 256 -> 256).
Trajectories are padded to a common length with a mask; an update re-runs the LSTM over each whole trajectory
from its initial state, so the recurrent state is never stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

LSTMState = tuple[Tensor, Tensor]


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


@dataclass(frozen=True)
class PolicyConfig:
    """Actor-critic sizes; the example config uses 256 everywhere, loptim 64 (this machine)."""

    obs_dim: int
    head_sizes: tuple[int, ...]
    hidden: int = 64
    critic_extra_dim: int = 0  # privileged critic inputs (e.g. task identity, raw losses); the actor never sees them
    input_clip: float = 5.0  # normalized inputs are clamped to +-input_clip
    head_init_scale: float = 0.01  # small initial logits: a near-uniform policy (standard PPO initialization)
    # Per head, -1 (the policy chooses) or the index of the one choice it always takes (probability 1, log-prob
    # 0, entropy 0, no gradient): lets a recipe steer a subset of the hyperparameters. Empty: every head is free.
    fixed_choices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        fixed = self.fixed_choices
        if fixed and (
            len(fixed) != len(self.head_sizes) or any(not -1 <= c < n for c, n in zip(fixed, self.head_sizes))
        ):
            raise ValueError(f"fixed_choices {fixed} must hold, per head of sizes {self.head_sizes}, -1 or a choice")


class LayerNormLSTMCell(nn.Module):
    """An LSTM cell with layer norm on the input and recurrent gate pre-activations and on the cell state."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.input_map = nn.Linear(input_size, 4 * hidden, bias=False)
        self.hidden_map = nn.Linear(hidden, 4 * hidden)
        self.input_norm, self.hidden_norm = nn.LayerNorm(4 * hidden), nn.LayerNorm(4 * hidden)
        self.cell_norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, state: LSTMState) -> LSTMState:
        h, c = state
        gates = self.input_norm(self.input_map(x)) + self.hidden_norm(self.hidden_map(h))
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.cell_norm(c)), c


class ActorCritic(nn.Module):
    """Inputs (normalized by running statistics) -> MLP -> LSTM -> concatenated head logits and a value."""

    def __init__(
        self, config: PolicyConfig, generator: torch.Generator | None = None, head_bias: Tensor | None = None
    ) -> None:
        super().__init__()
        self.config = config
        hidden, total = config.hidden, sum(config.head_sizes)
        self.encoder = nn.Linear(config.obs_dim, hidden)
        self.lstm = LayerNormLSTMCell(hidden, hidden)
        self.actor = nn.Linear(hidden, total)
        self.critic_hidden = nn.Linear(hidden + config.critic_extra_dim, hidden)
        self.critic = nn.Linear(hidden, 1)
        self.register_buffer("input_mean", torch.zeros(config.obs_dim))
        self.register_buffer("input_var", torch.ones(config.obs_dim))
        self.register_buffer("input_count", torch.zeros(()))
        self.register_buffer("choice_mask", choice_mask(config), persistent=False)
        self._initialize(generator or torch.Generator().manual_seed(0), head_bias)

    @torch.no_grad()
    def _initialize(self, generator: torch.Generator, head_bias: Tensor | None) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fan_in = module.weight.shape[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.zero_()
        self.actor.weight.mul_(self.config.head_init_scale)
        if head_bias is not None:
            self.actor.bias.copy_(head_bias)

    def initial_state(self, batch: int) -> LSTMState:
        zeros = torch.zeros(batch, self.config.hidden)
        return zeros, zeros.clone()

    @torch.no_grad()
    def observe_inputs(self, obs: Tensor) -> None:
        """Fold a batch of observations (..., obs_dim) into the running mean and variance (Chan et al. merge)."""
        x = obs.reshape(-1, self.config.obs_dim).to(self.input_mean.dtype)
        n, total = x.shape[0], self.input_count + x.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        delta = batch_mean - self.input_mean
        m2 = self.input_var * self.input_count + batch_var * n + delta**2 * self.input_count * n / total
        self.input_mean += delta * n / total
        self.input_var.copy_(m2 / total)
        self.input_count.copy_(total)

    def _normalize(self, obs: Tensor) -> Tensor:
        z = (obs.to(self.input_mean.dtype) - self.input_mean) * torch.rsqrt(self.input_var + 1e-8)
        return z.clamp(-self.config.input_clip, self.config.input_clip)

    def step(
        self, obs: Tensor, state: LSTMState, critic_extra: Tensor | None = None
    ) -> tuple[Tensor, Tensor, LSTMState]:
        """One time step for a batch: obs (B, obs_dim) -> logits (B, sum(head_sizes)), value (B,), new state."""
        h, c = self.lstm(torch.relu(self.encoder(self._normalize(obs))), state)
        if critic_extra is None and self.config.critic_extra_dim:  # deployment: the actor alone matters
            critic_extra = torch.zeros(h.shape[0], self.config.critic_extra_dim)
        critic_in = h if critic_extra is None else torch.cat((h, critic_extra.to(h.dtype)), dim=-1)
        value = self.critic(torch.tanh(self.critic_hidden(critic_in))).squeeze(-1)
        return self.actor(h) + self.choice_mask, value, (h, c)

    def sequence(self, obs: Tensor, state: LSTMState, critic_extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Whole trajectories: obs (B, T, obs_dim) from `state` -> logits (B, T, sum(head_sizes)), values (B, T)."""
        logits, values = [], []
        for t in range(obs.shape[1]):
            extra = None if critic_extra is None else critic_extra[:, t]
            step_logits, value, state = self.step(obs[:, t], state, extra)
            logits.append(step_logits)
            values.append(value)
        return torch.stack(logits, dim=1), torch.stack(values, dim=1)


# ------------------------------------------------------------------------------- categorical heads, per action

FIXED_LOGIT = -1e9  # added to the excluded choices of a fixed head: exp underflows to exactly 0


def choice_mask(config: PolicyConfig) -> Tensor:
    """Additive logit mask: 0 everywhere except FIXED_LOGIT on the choices a fixed head never takes."""
    pieces = []
    for size, fixed in zip(config.head_sizes, config.fixed_choices or (-1,) * len(config.head_sizes)):
        piece = torch.zeros(size)
        if fixed >= 0:
            piece.fill_(FIXED_LOGIT)
            piece[fixed] = 0.0
        pieces.append(piece)
    return torch.cat(pieces) if pieces else torch.zeros(0)


def _split(logits: Tensor, head_sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
    return torch.split(logits, list(head_sizes), dim=-1)


def log_prob(logits: Tensor, actions: Tensor, head_sizes: tuple[int, ...]) -> Tensor:
    """Sum over heads of log pi(choice): logits (..., sum(sizes)), actions (..., heads) -> (...)."""
    pieces = [
        torch.log_softmax(head, dim=-1).gather(-1, actions[..., i : i + 1].long()).squeeze(-1)
        for i, head in enumerate(_split(logits, head_sizes))
    ]
    return torch.stack(pieces, dim=-1).sum(-1)


def entropy(logits: Tensor, head_sizes: tuple[int, ...]) -> Tensor:
    """Sum over heads of the categorical entropies: (..., sum(sizes)) -> (...)."""
    total = 0.0
    for head in _split(logits, head_sizes):
        log_p = torch.log_softmax(head, dim=-1)
        total = total - (log_p.exp() * log_p).sum(-1)
    return total


def choose(logits: Tensor, head_sizes: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """One choice per head: sampled with `generator`, or the most likely one when `generator` is None."""
    choices = []
    for head in _split(logits, head_sizes):
        if generator is None:
            choices.append(head.argmax(-1))
        else:
            probs = torch.softmax(head.double(), dim=-1).reshape(-1, head.shape[-1])
            choices.append(torch.multinomial(probs, 1, generator=generator).reshape(head.shape[:-1]))
    return torch.stack(choices, dim=-1)


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
