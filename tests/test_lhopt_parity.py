"""One controller loop: on the same run (task, seed, initial hyperparameters, actions), the policy of the
torch.optim shell `loptim.LHOPT` and the policy of a meta-training episode (`lhopt_rollout.inner_run`) receive
identical observations and end on the same validation loss; and the loop's explicit nonfinite modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from loptim import LHOPT
from loptim.errors import DivergedError
from loptim.meta.lhopt_families import sample_task
from loptim.meta.lhopt_rollout import BATCH_SALT, EpisodeSpec, cooldown_schedule, inner_run, valid_loss, valid_set
from loptim.optimizers.lhopt import (
    ACTION_HEADS,
    HEAD_SIZES,
    OBS_DIM,
    PUBLISHED,
    ActorCritic,
    ControlLoop,
    InnerHParams,
    PolicyConfig,
)

HEAD = {head.name: i for i, head in enumerate(ACTION_HEADS)}
NOOP = [head.noop for head in ACTION_HEADS]


def _action(lr: int | None = None, weight_decay: int | None = None, restart: int = 0) -> list[int]:
    action = list(NOOP)
    if lr is not None:
        action[HEAD["lr"]] = lr
    if weight_decay is not None:
        action[HEAD["weight_decay"]] = weight_decay
    action[HEAD["restart"]] = restart
    return action


# lr x2 and save register 0; lr x0.5 and weight decay x2; load register 0; swap register 1; lr x1.414; ...
SCRIPT = [_action(6, restart=1), _action(0, 2), _action(restart=2), _action(restart=6), _action(5), _action(1, 0)]


class ScriptedPolicy(ActorCritic):
    """Takes the scripted actions in turn (greedy logits of one-hot rows) and records what it is shown."""

    def __init__(self) -> None:
        super().__init__(PolicyConfig(OBS_DIM, HEAD_SIZES))
        self.seen: list[Tensor] = []

    def step(self, obs: Tensor, state, critic_extra: Tensor | None = None):
        self.seen.append(obs.detach().clone())
        action = SCRIPT[(len(self.seen) - 1) % len(SCRIPT)]
        pieces = [torch.nn.functional.one_hot(torch.tensor(a), n).float() * 50.0 for a, n in zip(action, HEAD_SIZES)]
        return torch.cat(pieces).unsqueeze(0), torch.zeros(1), state


def _spec(seed: int = 5, steps: int = 50, decisions: int = 8) -> EpisodeSpec:
    task = sample_task("noisy-quadratic", torch.Generator().manual_seed(seed))
    return EpisodeSpec(seed, "noisy-quadratic", task, steps, decisions, InnerHParams(lr=0.02, weight_decay=1e-3))


def _shell_run(spec: EpisodeSpec, policy: ScriptedPolicy, cooldown: float = 0.0) -> tuple[dict[str, Tensor], LHOPT]:
    initial = spec.task.init(torch.Generator().manual_seed(spec.seed))
    params = {name: value.detach().clone().requires_grad_(True) for name, value in initial.items()}
    opt = LHOPT(
        list(params.values()),
        total_steps=spec.steps,
        decisions=spec.decisions,
        policy=policy,
        hparams=spec.hparams,
        inner_config=PUBLISHED,
        cooldown=cooldown,  # 0: the shell as episodes without LHOPTRecipe.cooldown run it (docs/lhopt.md)
    )
    batches = spec.task.batches("train", torch.Generator().manual_seed(spec.seed ^ BATCH_SALT))
    for _ in range(spec.steps):
        loss = spec.task.loss(params, next(batches))
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
    return params, opt


def test_the_shell_and_an_episode_show_the_policy_identical_observations():
    spec = _spec()
    shell_policy, episode_policy = ScriptedPolicy(), ScriptedPolicy()
    params, opt = _shell_run(spec, shell_policy)
    result = inner_run(spec, PUBLISHED, valid_batches=2, observe_valid_batches=0, policy=episode_policy)
    assert len(shell_policy.seen) == len(episode_policy.seen) == len(range(spec.interval, spec.steps, spec.interval))
    for step, (shown_by_shell, shown_in_episode) in enumerate(zip(shell_policy.seen, episode_policy.seen)):
        assert shown_by_shell.shape == (1, OBS_DIM)
        assert torch.equal(shown_by_shell, shown_in_episode), step
    # the script changed the run (hyperparameters, a register load), and both runs followed it alike
    assert opt.hparams != spec.hparams and any(r is not None for r in opt.controller["registers"])
    assert not result.diverged
    assert valid_loss(spec.task, params, valid_set(spec.task, spec.seed, 2)) == result.final_loss
    episode_actions = torch.stack(result.rows["actions"]).tolist()
    assert episode_actions == [SCRIPT[k % len(SCRIPT)] for k in range(len(episode_actions))]


def test_an_episode_trained_as_deployed_follows_the_shells_cooldown():
    # LHOPTRecipe.cooldown: the policy run of an episode applies the shell's cooldown multiplier at every step, so
    # the policy sees the same observations and the run ends where the shell's does; without it, it does not.
    spec = _spec(steps=60)
    shell_policy, episode_policy, plain_policy = ScriptedPolicy(), ScriptedPolicy(), ScriptedPolicy()
    params, _ = _shell_run(spec, shell_policy, cooldown=0.3)
    schedule = cooldown_schedule(spec.steps, 0.3)
    assert schedule is not None and cooldown_schedule(spec.steps, 0.0) is None
    assert [schedule(s) for s in (0, 41, 42, 51, 59)] == pytest.approx([1.0, 1.0, 1.0, 0.5, 1 / 18])
    result = inner_run(spec, PUBLISHED, 2, 0, policy=episode_policy, lr_schedule=schedule)
    plain = inner_run(spec, PUBLISHED, 2, 0, policy=plain_policy)
    for shown_by_shell, shown_in_episode in zip(shell_policy.seen, episode_policy.seen, strict=True):
        torch.testing.assert_close(shown_by_shell, shown_in_episode)
    shell_loss = valid_loss(spec.task, params, valid_set(spec.task, spec.seed, 2))
    assert result.final_loss == pytest.approx(shell_loss, rel=1e-5)
    assert abs(plain.final_loss - shell_loss) > 1e-3 * shell_loss


def test_an_episode_that_observes_validation_losses_shows_other_observations():
    # The one documented difference (docs/lhopt.md): episodes feed the validation loss at every decision, the shell
    # only the ones its user gives it. It shows in the observations, so the parity test above can fail.
    spec = _spec()
    shell_policy, episode_policy = ScriptedPolicy(), ScriptedPolicy()
    _shell_run(spec, shell_policy)
    inner_run(spec, PUBLISHED, valid_batches=2, observe_valid_batches=1, policy=episode_policy)
    assert torch.equal(shell_policy.seen[0][:, :20], episode_policy.seen[0][:, :20])
    assert not torch.equal(shell_policy.seen[0], episode_policy.seen[0])


def test_the_loops_nonfinite_modes():
    params = [torch.randn(3, 2, generator=torch.Generator().manual_seed(0))]
    grads = [torch.ones(3, 2)]
    make = lambda mode: ControlLoop(params, InnerHParams(), PUBLISHED, 10, 2, nonfinite=mode)  # noqa: E731
    with pytest.raises(DivergedError):
        make("raise").proceed(math.nan)
    skipping = make("skip")
    assert skipping.proceed(1.0, 2.0) and not skipping.proceed(1.0, math.inf) and skipping.skipped_steps == 1
    stopping = make("stop")
    assert not stopping.proceed(math.inf) and stopping.stopped  # nothing to go back to: the episode ends
    rescued = make("stop")
    for _ in range(rescued.interval):
        due = rescued.step(params, grads, 1.0)
    assert due
    rescued.decision(params, lambda observation: _action(restart=1))  # save register 0
    assert rescued.proceed(math.nan) and not rescued.stopped  # the policy may still load it
    with pytest.raises(ValueError, match="nonfinite"):
        make("ignore")
