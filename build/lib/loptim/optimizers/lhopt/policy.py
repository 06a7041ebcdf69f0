"""LHOPT's policy network (Almeida et al. 2021): an LSTM actor-critic with one categorical head per controlled
hyperparameter, and how it chooses. Deployment (`loptim.LHOPT`) needs only this; PPO, which trains it, is
`loptim.meta.ppo`.

The example config's network is MLP 256 -> LSTM 256 -> heads; loptim's default is 64 wide (docs/design.md, LHOPT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from loptim.optimizers.lhopt.actions import ACTION_HEADS, DEFAULT_NOOP_BIAS, HEAD_SIZES
from loptim.optimizers.lhopt.controller import OBS_DIM
from loptim.pretrained import register_kind

LSTMState = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class PolicyConfig:
    """Actor-critic sizes; the example config uses 256 everywhere, loptim 64 by default."""

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


def split_heads(logits: Tensor, head_sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
    return torch.split(logits, list(head_sizes), dim=-1)


def choose(logits: Tensor, head_sizes: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """One choice per head: sampled with `generator`, or the most likely one when `generator` is None."""
    choices = []
    for head in split_heads(logits, head_sizes):
        if generator is None:
            choices.append(head.argmax(-1))
        else:
            probs = torch.softmax(head.double(), dim=-1).reshape(-1, head.shape[-1])
            choices.append(torch.multinomial(probs, 1, generator=generator).reshape(head.shape[:-1]))
    return torch.stack(choices, dim=-1)


def noop_bias(bonus: tuple[float, ...] = DEFAULT_NOOP_BIAS) -> Tensor:
    """Initial head biases: `bonus[i]` on head i's no-op, 0 elsewhere."""
    rows = [extra * torch.nn.functional.one_hot(torch.tensor(h.noop), h.size) for h, extra in zip(ACTION_HEADS, bonus)]
    return torch.cat(rows).float()


def default_policy(seed: int = 0) -> ActorCritic:
    """A freshly initialized policy with DEFAULT_NOOP_BIAS on each head's no-op, so that, acting greedily, it
    keeps the initial hyperparameters until trained."""
    return ActorCritic(PolicyConfig(OBS_DIM, HEAD_SIZES), torch.Generator().manual_seed(seed), noop_bias())


def build_policy(config: dict[str, Any]) -> ActorCritic:
    """The policy a weights file of kind "lhopt" holds, from the PolicyConfig recorded in its metadata."""
    return ActorCritic(PolicyConfig(**{**config, "head_sizes": tuple(config.get("head_sizes", ()))}))


register_kind("lhopt", build_policy)
