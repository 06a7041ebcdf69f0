"""One LHOPT meta-training episode (Almeida et al. 2021): a whole inner training run of a sampled task, steered by
the policy a few times through the control loop `loptim.LHOPT` runs, and its reward against a reference run of the
same task and seed. An episode is a pure function of (recipe, policy, seed) (and, for a tuned reference, the swept
learning-rate table). The reward, its per-decision shaping and the critic's privileged input: docs/lhopt.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from loptim.inner import train_steps
from loptim.meta.lhopt_families import reference_family, sample_task
from loptim.meta.lhopt_reference import (
    REFERENCE_CONFIG,
    REFERENCE_HPARAMS,
    length_bucket,
    reference_key,
    warmup_cosine,
)
from loptim.meta.ppo import act
from loptim.optimizers.lhopt import ActorCritic, ControlLoop, InnerConfig, InnerHParams, randomize_hparams
from loptim.optimizers.lhopt.shell import cooldown_factor
from loptim.tasks.base import Task, log_uniform_int

if TYPE_CHECKING:
    from loptim.meta.recipes import LHOPTRecipe

BATCH_SALT, VALID_SALT, ACTION_SALT = 0x5DEECE66D, 0x2545F491, 0x9E3779B9  # episode seed -> stream seeds


@dataclass(frozen=True)
class EpisodeSpec:
    """What an episode's seed draws: the family, the task, its length, the decisions and initial hparams."""

    seed: int
    family: str
    task: Task
    steps: int
    decisions: int
    hparams: InnerHParams

    @property
    def interval(self) -> int:
        """Inner steps between decisions, as in the LHOPT shell."""
        return max(1, self.steps // self.decisions)


def draw_episode(
    families: tuple[tuple[str, float], ...],
    inner_steps: tuple[int, int],
    decisions: tuple[int, int],
    seed: int,
) -> EpisodeSpec:
    """The episode of `seed`: a family by weight, a task from it, a log-uniform length in `inner_steps`, a
    log-uniform number of decisions in `decisions` (the paper: 8 to 64; docs/design.md, LHOPT) capped at steps // 2
    so that every window holds at least two inner steps, and randomized initial hyperparameters (example config's
    noise_definition)."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([weight for _, weight in families], dtype=torch.float64)
    family = families[int(torch.multinomial(weights, 1, generator=generator))][0]
    task = sample_task(family, generator)
    steps = log_uniform_int(generator, *inner_steps)
    count = min(log_uniform_int(generator, *decisions), max(1, steps // 2))
    hparams = randomize_hparams(InnerHParams(), generator)
    return EpisodeSpec(seed, family, task, steps, count, hparams)


def relative_reward(reference_loss: float, final_loss: float, clip: float = 3.0) -> float:
    """clip(log(reference_loss / final_loss), -clip, clip); non-finite losses count as +inf, both inf (or both 0)
    give 0. Losses must be non-negative."""
    if reference_loss < 0 or final_loss < 0:
        raise ValueError(f"losses must be non-negative, got reference {reference_loss} and final {final_loss}")
    ref = reference_loss if math.isfinite(reference_loss) else math.inf
    final = final_loss if math.isfinite(final_loss) else math.inf
    if ref == final:
        return 0.0
    if ref == 0.0 or final == math.inf:
        return -clip
    if final == 0.0 or ref == math.inf:
        return clip
    return max(-clip, min(clip, math.log(ref / final)))


def valid_set(task: Task, seed: int, batches: int) -> list[Any]:
    """`batches` minibatches of the valid split, drawn once per episode from its seed: the reference and the
    policy's run are scored on the same examples (a task's full evaluation set can cost more than a whole short
    run: docs/lhopt.md)."""
    stream = task.batches("valid", torch.Generator().manual_seed(seed ^ VALID_SALT))
    return [next(stream) for _ in range(batches)]


@torch.no_grad()
def valid_loss(task: Task, params: dict[str, Tensor], batches: list[Any]) -> float:
    """Mean loss over `batches`; inf when not finite."""
    loss = sum(float(task.loss(params, batch)) for batch in batches) / len(batches)
    return loss if math.isfinite(loss) else math.inf


@dataclass
class Episode:
    """A finished episode: the policy's trajectory (one row per decision) and the outcome."""

    obs: Tensor  # (K, OBS_DIM) float32
    actions: Tensor  # (K, heads) long
    log_probs: Tensor  # (K,)
    values: Tensor  # (K,)
    critic_extra: Tensor  # (K, 1): the critic's privileged input phi_k (0 without a reference run)
    rewards: Tensor  # (K,) float64: the shaped per-decision rewards, summing to `reward`
    reward: float  # the return R = clip(log(L_ref / L_policy))
    final_loss: float
    reference_loss: float
    family: str
    steps: int
    decisions: int
    diverged: bool


@dataclass
class InnerResult:
    """What an inner run leaves: its final validation loss, the mean training loss of each decision window
    (inf once diverged), the policy's trajectory rows (empty for a reference run), the potential phi_k at each
    decision (0 without reference windows) and whether it diverged."""

    final_loss: float
    window_losses: list[float]
    rows: dict[str, list[Tensor]]
    potentials: list[float]
    diverged: bool


def decision_steps(spec: EpisodeSpec) -> list[int]:
    """The inner steps (counted from 1) after which the policy decides: every `interval`, never at the end."""
    return list(range(spec.interval, spec.steps, spec.interval))


def potential(reference_window: float, policy_window: float, clip: float = 3.0) -> float:
    """phi_k: the clipped log ratio of the paired window training losses (docs/lhopt.md); a diverged policy's
    window is inf (phi = -clip)."""
    return relative_reward(reference_window, policy_window, clip)


def shaped_rewards(potentials: list[float], reward: float) -> list[float]:
    """Per-decision rewards phi_{k+1} - phi_k, the last R - phi_{K-1}; they sum to R - phi_0. With all
    potentials 0 (no reference run) the whole return sits at the last decision."""
    if not potentials:
        return []
    return [potentials[k + 1] - potentials[k] for k in range(len(potentials) - 1)] + [reward - potentials[-1]]


def inner_run(
    spec: EpisodeSpec,
    config: InnerConfig,
    valid_batches: int,
    observe_valid_batches: int,
    policy: ActorCritic | None = None,
    generator: torch.Generator | None = None,
    reference_windows: list[float] | None = None,
    reward_clip: float = 3.0,
    lr_schedule: Callable[[int], float] | None = None,
) -> InnerResult:
    """Train `spec.task` from `spec.hparams` for `spec.steps` inner steps (loptim.inner.train_steps) under LHOPT's
    control loop; the policy (if any) decides every `spec.interval` steps, sampling with `generator` (greedy if
    None), after seeing the validation loss on the first `observe_valid_batches` of the episode's `valid_batches`
    validation minibatches (all score the end; 0: the policy sees none, as a shell nobody feeds validation losses).
    With `reference_windows`, the critic also sees the current potential phi_k (docs/lhopt.md), else 0.
    `lr_schedule` (reference runs' warm-up and cosine, policy runs' cooldown) multiplies the learning rate of inner
    step `step` (0-based) by lr_schedule(step).

    The loop's nonfinite mode is "stop": a run stops early, diverged, when its loss is not finite and no restart
    register holds a state to go back to; its remaining decision windows count as inf."""
    task = spec.task
    initial = task.init(torch.Generator().manual_seed(spec.seed))
    params = {name: value.detach().clone().requires_grad_(True) for name, value in initial.items()}
    tensors = list(params.values())  # the same tensors, updated in place
    batches = task.batches("train", torch.Generator().manual_seed(spec.seed ^ BATCH_SALT))
    validation = valid_set(task, spec.seed, valid_batches)
    loop = ControlLoop(tensors, spec.hparams, config, spec.steps, spec.decisions, nonfinite="stop")
    lstm_state = policy.initial_state(1) if policy is not None else None
    rows: dict[str, list[Tensor]] = {"obs": [], "actions": [], "log_probs": [], "values": [], "critic_extra": []}
    windows: list[float] = []
    potentials: list[float] = []
    window_sum = 0.0

    def choose_action(observation: Tensor) -> list[int]:
        nonlocal lstm_state
        obs = observation.float().unsqueeze(0)
        phi = (
            0.0
            if reference_windows is None
            else potential(reference_windows[len(windows) - 1], windows[-1], reward_clip)
        )
        potentials.append(phi)
        extra = torch.tensor([[phi]])
        actions, log_probs, values, lstm_state = act(policy, obs, lstm_state, generator, extra)
        for key, value in zip(rows, (obs[0], actions[0], log_probs[0], values[0], extra[0])):
            rows[key].append(value)
        return actions[0].tolist()

    def update(step: int, current: dict[str, Tensor], grads: dict[str, Tensor], loss: Tensor) -> dict[str, Tensor]:
        nonlocal window_sum
        loss_value = float(loss.detach())
        window_sum += loss_value
        if not loop.proceed(loss_value):
            return current
        factor = 1.0 if lr_schedule is None else lr_schedule(step)
        due = loop.step(tensors, list(grads.values()), loss_value, features=policy is not None, lr_factor=factor)
        if not due:
            return current
        window = window_sum / spec.interval
        windows.append(window if math.isfinite(window) else math.inf)
        window_sum = 0.0
        if policy is not None:
            observed = valid_loss(task, current, validation[:observe_valid_batches]) if observe_valid_batches else None
            loop.decision(tensors, choose_action, observed)
        return current

    for _ in train_steps(task, params, itertools.islice(batches, spec.steps), update):
        if loop.stopped:
            break
    diverged = loop.stopped
    final = math.inf if diverged else valid_loss(task, params, validation)
    windows += [math.inf] * (len(decision_steps(spec)) - len(windows))
    return InnerResult(final, windows, rows, potentials, diverged or not math.isfinite(final))


def reference_run(recipe: LHOPTRecipe, spec: EpisodeSpec, reference_lrs: dict[str, float] | None) -> InnerResult:
    """The reference run of an episode: with recipe.reference "fixed", the episode's initial hyperparameters held
    fixed; with "tuned", plain AdamW with warm-up and cosine decay at the family's swept learning rate for the
    episode's length bucket (loptim.meta.lhopt_reference)."""
    valid = (recipe.valid_batches, recipe.observe_valid_batches)
    if recipe.reference == "fixed":
        return inner_run(spec, recipe.inner, *valid)
    key = reference_key(reference_family(spec.family), length_bucket(spec.steps, recipe.length_buckets))
    if reference_lrs is None or key not in reference_lrs:
        raise KeyError(f"no swept reference learning rate for '{key}': run `loptim lhopt-reference --recipe "
                       f"{recipe.name}` (or let the trainer compute it) and pass its table")  # fmt: skip
    hparams = replace(REFERENCE_HPARAMS, lr=reference_lrs[key])
    steps = spec.steps
    schedule = lambda step: warmup_cosine(step, steps, recipe.warmup_fraction)  # noqa: E731
    return inner_run(replace(spec, hparams=hparams), REFERENCE_CONFIG, *valid, lr_schedule=schedule)


def cooldown_schedule(steps: int, cooldown: float) -> Callable[[int], float] | None:
    """The learning-rate multiplier `loptim.LHOPT(cooldown=...)` applies at each inner step of a `steps`-step run
    (shell.cooldown_factor; None for no cooldown), for policy runs trained as deployed (LHOPTRecipe.cooldown)."""
    if cooldown <= 0.0:
        return None
    return lambda step: cooldown_factor(step, steps, cooldown)


def meta_valid_spec(recipe: LHOPTRecipe, index: int, seed: int) -> EpisodeSpec:
    """Meta-validation episode `index` (checkpoint selection): entry index mod len(recipe.valid_families) of
    META_VALID_FAMILIES (variants no training entry draws), task drawn from `seed` (an evaluation seed no training
    epoch draws), length recipe.valid_steps[(index // families) mod len], recipe.valid_decisions decisions, and the
    deployment's initial hyperparameters (the published defaults, as `loptim.LHOPT` starts)."""
    families = recipe.valid_families
    family = families[index % len(families)]
    steps = recipe.valid_steps[(index // len(families)) % len(recipe.valid_steps)]
    task = sample_task(family, torch.Generator().manual_seed(seed))
    return EpisodeSpec(seed, family, task, steps, min(recipe.valid_decisions, max(1, steps // 2)), InnerHParams())


def run_episode(
    recipe: LHOPTRecipe,
    policy: ActorCritic,
    seed: int,
    *,
    greedy: bool = False,
    reference_loss: float | None = None,
    reference_lrs: dict[str, float] | None = None,
    spec: EpisodeSpec | None = None,
) -> Episode:
    """The episode of `seed` under `recipe` (or of `spec`, e.g. a meta-validation episode): the reference run, the
    policy's run, and the shaped rewards. `reference_lrs` is the swept table a "tuned" reference needs.

    With `reference_loss` given (cached evaluation episodes) the reference run is skipped and the whole return
    sits at the last decision: evaluation only reads the return."""
    spec = spec or draw_episode(recipe.families, recipe.inner_steps, recipe.decisions, seed)
    valid = (recipe.valid_batches, recipe.observe_valid_batches)
    reference_windows = None
    if reference_loss is None:
        reference = reference_run(recipe, spec, reference_lrs)
        reference_loss, reference_windows = reference.final_loss, reference.window_losses
    generator = None if greedy else torch.Generator().manual_seed(spec.seed ^ ACTION_SALT)
    schedule = cooldown_schedule(spec.steps, recipe.cooldown)
    result = inner_run(spec, recipe.inner, *valid, policy, generator, reference_windows, recipe.reward_clip, schedule)
    rows, final, diverged = result.rows, result.final_loss, result.diverged
    reward = relative_reward(reference_loss, final, recipe.reward_clip)
    per_decision = shaped_rewards(result.potentials, reward)
    heads = len(policy.config.head_sizes)
    stacked = {
        "obs": torch.stack(rows["obs"]) if rows["obs"] else torch.zeros(0, policy.config.obs_dim),
        "actions": torch.stack(rows["actions"]) if rows["actions"] else torch.zeros(0, heads, dtype=torch.long),
        "log_probs": torch.stack(rows["log_probs"]) if rows["log_probs"] else torch.zeros(0),
        "values": torch.stack(rows["values"]) if rows["values"] else torch.zeros(0),
        "critic_extra": torch.stack(rows["critic_extra"]) if rows["critic_extra"] else torch.zeros(0, 1),
    }
    return Episode(
        **stacked,
        rewards=torch.tensor(per_decision, dtype=torch.float64),
        reward=reward,
        final_loss=final,
        reference_loss=reference_loss,
        family=spec.family,
        steps=spec.steps,
        decisions=len(rows["obs"]),
        diverged=diverged,
    )
