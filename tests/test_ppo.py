"""PPO for LHOPT: GAE, the clipped loss and its statistics against hand-computed values, the recurrent policy's
sequence pass, and a short PPO run that improves the return on a control problem with a known best action."""

import math

import pytest
import torch

from loptim.meta.ppo import (
    PPOConfig,
    TrajectoryBatch,
    act,
    entropy,
    explained_variance,
    gae,
    log_prob,
    make_optimizer,
    ppo_loss,
    ppo_update,
)
from loptim.optimizers.lhopt.policy import ActorCritic, PolicyConfig, choose


def test_ppo_config_defaults_are_the_example_configs():
    config = PPOConfig()
    assert (config.clip, config.entropy_coef, config.lr) == (0.2, 1e-2, 2e-4)
    assert (config.max_grad_norm, config.value_coef) == (5.0, 0.5)
    assert (config.gamma, config.gae_lambda) == (1.0, 0.95)


def test_gae_matches_hand_computation_with_padding_and_bootstrap():
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 7.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    last = torch.tensor([0.0, 2.0], dtype=torch.float64)  # row 0 finished; row 1 cut after 2 steps, V = 2 after
    advantages, returns = gae(rewards, values, mask, last, gamma=0.9, lam=0.8)
    # row 0: d2 = 2 - 1.5 = 0.5; d1 = 0.9*1.5 - 1 = 0.35, A1 = 0.35 + 0.72*0.5 = 0.71; d0 = 1 + 0.9 - 0.5 = 1.4,
    # A0 = 1.4 + 0.72*0.71 = 1.9112. row 1: d1 = 0.9*2 - 1 = 0.8 = A1; A0 = 1.4 + 0.72*0.8 = 1.976; padding 0.
    expected = torch.tensor([[1.9112, 0.71, 0.5], [1.976, 0.8, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(advantages, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(returns, torch.tensor([[2.4112, 1.71, 2.0], [2.476, 1.8, 0.0]], dtype=torch.float64))
    # gamma = lambda = 1: the advantage is the reward-to-go minus the value
    advantages, _ = gae(rewards[:1], values[:1], mask[:1], last[:1], gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages[0], torch.tensor([3.0, 2.0, 2.0], dtype=torch.float64) - values[0])


def test_ppo_loss_and_stats_match_hand_computation():
    old = torch.zeros(4, dtype=torch.float64)
    new = torch.log(torch.tensor([1.5, 0.5, 1.0, 40.0], dtype=torch.float64))  # ratios; the last step is padding
    advantages = torch.tensor([1.0, -1.0, 2.0, 100.0], dtype=torch.float64)
    values = torch.tensor([1.0, 2.0, 3.0, 50.0], dtype=torch.float64)
    returns = torch.tensor([1.5, 2.0, 1.0, 0.0], dtype=torch.float64)
    entropies = torch.tensor([1.0, 2.0, 3.0, 9.0], dtype=torch.float64)
    mask = torch.tensor([True, True, True, False])
    loss, stats = ppo_loss(new, old, advantages, values, returns, entropies, mask, PPOConfig())
    # min(1.5*1, 1.2*1) = 1.2; min(0.5*-1, 0.8*-1) = -0.8; min(2, 2) = 2 -> policy loss -(2.4 / 3) = -0.8
    assert stats["policy_loss"] == pytest.approx(-0.8)
    assert stats["value_loss"] == pytest.approx(0.5 * (0.25 + 0.0 + 4.0) / 3)
    assert stats["entropy"] == pytest.approx(2.0)
    assert float(loss) == pytest.approx(-0.8 + 0.5 * 0.5 * 4.25 / 3 - 0.01 * 2.0)
    assert stats["clip_fraction"] == pytest.approx(2 / 3)
    assert stats["approx_kl"] == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 3)


def test_clipped_objective_has_no_gradient_beyond_the_clip():
    new = torch.log(torch.tensor([1.5, 0.5, 1.1], dtype=torch.float64)).requires_grad_()
    advantages = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    zeros, mask = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.bool)
    loss, _ = ppo_loss(new, zeros, advantages, zeros, zeros, zeros, mask, PPOConfig())
    (grad,) = torch.autograd.grad(loss, new)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, -1.1 / 3], dtype=torch.float64))


def test_heads_log_prob_entropy_and_explained_variance():
    sizes = (3, 2)
    logits = torch.tensor([[0.0, 0.0, 0.0, math.log(3.0), 0.0]])
    assert float(log_prob(logits, torch.tensor([[1, 0]]), sizes)) == pytest.approx(math.log(1 / 3) + math.log(0.75))
    assert float(entropy(logits, sizes)) == pytest.approx(math.log(3) - 0.75 * math.log(0.75) - 0.25 * math.log(0.25))
    returns, mask = torch.tensor([1.0, 2.0, 4.0]), torch.ones(3, dtype=torch.bool)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((3,), 7 / 3), returns, mask) == pytest.approx(0.0, abs=1e-6)


def _policy(seed=0, obs_dim=3, head_sizes=(3, 2)):
    return ActorCritic(PolicyConfig(obs_dim, head_sizes, hidden=16), torch.Generator().manual_seed(seed))


def test_sequence_equals_step_by_step_and_normalizer_matches_batch_statistics():
    policy = _policy(1)
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(4, 5, 3, generator=g)
    policy.observe_inputs(obs[:2])
    policy.observe_inputs(obs[2:])
    torch.testing.assert_close(policy.input_mean, obs.reshape(-1, 3).mean(0))
    torch.testing.assert_close(policy.input_var, obs.reshape(-1, 3).var(0, unbiased=False))
    logits, values = policy.sequence(obs, policy.initial_state(4))
    state = policy.initial_state(4)
    for t in range(5):
        step_logits, value, state = policy.step(obs[:, t], state)
        torch.testing.assert_close(logits[:, t], step_logits)
        torch.testing.assert_close(values[:, t], value)


class ContextBandit:
    """Episodes of 5 steps; each step shows a random context in {0, 1} (one-hot) and the progress. Reward 1 when
    head 0 names the context (its third choice is never right), plus 0.5 when head 1 picks choice 1: the best
    return is 7.5, a uniform policy's expected return 5 * (1/3 + 1/4) = 2.92."""

    steps, obs_dim, head_sizes = 5, 3, (3, 2)

    def observations(self, contexts, t):
        one_hot = torch.nn.functional.one_hot(contexts, 2).float()
        return torch.cat((one_hot, torch.full((len(contexts), 1), t / self.steps)), dim=1)

    def rollout(self, policy, episodes, generator):
        contexts = torch.randint(2, (episodes, self.steps), generator=generator)
        state = policy.initial_state(episodes)
        record = {"obs": [], "actions": [], "log_probs": [], "values": [], "rewards": []}
        for t in range(self.steps):
            obs = self.observations(contexts[:, t], t)
            actions, log_probs, values, state = act(policy, obs, state, generator)
            reward = (actions[:, 0] == contexts[:, t]).float() + 0.5 * (actions[:, 1] == 1).float()
            for key, value in zip(record, (obs, actions, log_probs, values, reward)):
                record[key].append(value)
        stacked = {key: torch.stack(value, dim=1) for key, value in record.items()}
        return TrajectoryBatch(
            mask=torch.ones(episodes, self.steps, dtype=torch.bool), last_values=torch.zeros(episodes), **stacked
        )


def test_short_ppo_run_improves_the_return_on_a_toy_control_problem():
    env, generator = ContextBandit(), torch.Generator().manual_seed(3)
    policy = ActorCritic(PolicyConfig(env.obs_dim, env.head_sizes, hidden=16), torch.Generator().manual_seed(4))
    config = PPOConfig(lr=1e-2, minibatch_trajectories=16)  # a larger step than LHOPT's 2e-4: a tiny problem
    optimizer = make_optimizer(policy, config)
    returns, stats = [], {}
    for _ in range(10):
        batch = env.rollout(policy, 64, generator)
        returns.append(float(batch.rewards.sum(1).mean()))
        stats = ppo_update(policy, optimizer, batch, config, generator)
    final = float(env.rollout(policy, 256, generator).rewards.sum(1).mean())
    assert returns[0] < 3.5 and final > 6.0, (returns, final)
    assert 0.0 <= stats["clip_fraction"] <= 1.0 and stats["approx_kl"] >= 0.0
    assert math.isfinite(stats["explained_variance"]) and stats["grad_norm"] > 0.0


def test_a_fixed_head_always_takes_its_choice_with_no_gradient():
    config = PolicyConfig(obs_dim=3, head_sizes=(3, 4), hidden=8, fixed_choices=(-1, 2))
    policy = ActorCritic(config, torch.Generator().manual_seed(0))
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    logits, _, _ = policy.step(obs, policy.initial_state(5))
    actions = choose(logits, config.head_sizes, torch.Generator().manual_seed(2))
    assert (actions[:, 1] == 2).all() and actions[:, 0].unique().numel() > 1
    fixed_only = log_prob(logits[:, 3:], actions[:, 1:], (4,))
    assert torch.equal(fixed_only, torch.zeros(5)) and torch.equal(entropy(logits[:, 3:], (4,)), torch.zeros(5))
    log_prob(logits, actions, config.head_sizes).sum().backward()
    rows = policy.actor.weight.grad
    assert rows[3:].abs().max() == 0 and rows[:3].abs().max() > 0  # only the free head learns
    with pytest.raises(ValueError, match="fixed_choices"):
        PolicyConfig(obs_dim=3, head_sizes=(3, 4), fixed_choices=(-1, 4))
