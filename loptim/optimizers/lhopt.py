"""LHOPT (Almeida et al. 2021): a learned policy that steers an AdamW's hyperparameters a few times per run.

The inner optimizer is `lhopt_inner`, the action space and restart registers `lhopt_actions`, the features
`loptim.lhopt_features`, the policy and PPO `loptim.meta.ppo`. This module holds the controller that turns a
window of inner steps into the policy's observation and applies its decision (plain functions over a state dict,
shared with meta-training), and the torch.optim shell `LHOPT`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from loptim.errors import DivergedError, LoptimError, WeightsError
from loptim.lhopt_features import (
    INNER_FEATURE_NAMES,
    NUM_CDF,
    NUM_INNER_FEATURES,
    cdf_init,
    cdf_update,
    flags,
    identity_feature,
    log_ratio,
    safe_log,
    tanh_or_zero,
)
from loptim.meta.ppo import ActorCritic, PolicyConfig, choose
from loptim.optimizers.lhopt_actions import (
    ACTION_HEADS,
    DEFAULT_NOOP_BIAS,
    HEAD_SIZES,
    NOOP_ACTION,
    NUM_REGISTERS,
    RESTART_HEAD,
    action_one_hot,
    apply_action,
    apply_restart,
    empty_registers,
    hparam_features,
    randomize_hparams,
    register_features,
)
from loptim.optimizers.lhopt_inner import (
    PLAIN_ADAMW,
    PUBLISHED,
    InnerConfig,
    InnerHParams,
    clone_state,
    init_inner_state,
    inner_step,
)

Controller = dict[str, Any]

# Scalar streams with CDF features: the inner features, then these five.
STREAMS = (*INNER_FEATURE_NAMES, "loss_ratio", "update_ratio", "norm_ratio", "train_log_loss", "valid_log_loss")
_STREAM = {name: i for i, name in enumerate(STREAMS)}

# The policy's observation, in order (example config's pi_feature_definitions, DESIGN.md "Policy features").
OBSERVATION_LAYOUT = (
    ("progress", 1),  # step / total_steps
    ("inner_identity", NUM_INNER_FEATURES),  # per-parameter features, NaN -> 0, clamped to +-10
    ("inner_cdf", NUM_INNER_FEATURES * NUM_CDF),
    ("previous_action", sum(HEAD_SIZES)),  # one-hot per head
    ("loss_ratio", 2 + NUM_CDF),  # log(window mean loss / previous window's): is_nan, tanh, CDF
    ("update_ratio", 1 + NUM_CDF),  # log(||params moved this window|| / the previous window's): tanh, CDF
    ("norm_ratio", 1 + NUM_CDF),  # log(||params|| / ||params at the previous decision||): tanh, CDF
    ("train_loss", 2 + NUM_CDF),  # log of the window's training loss: is_nan, is_inf, CDF only
    ("valid_loss", 3 + NUM_CDF),  # latest validation loss: seen, is_nan, is_inf, CDF only
    ("registers", 3 * NUM_REGISTERS),  # filled, progress at save, tanh log(saved loss / loss now)
    ("hparams", len(ACTION_HEADS) - 1),  # relative to initial values: log(h / h0), logit shift of the clip ratio
)
OBS_DIM = sum(size for _, size in OBSERVATION_LAYOUT)


class MissingLossError(LoptimError, ValueError):
    """LHOPT's policy needs each step's training loss."""


def noop_bias(bonus: tuple[float, ...] = DEFAULT_NOOP_BIAS) -> Tensor:
    """Initial head biases: `bonus[i]` on head i's no-op, 0 elsewhere."""
    rows = [extra * torch.nn.functional.one_hot(torch.tensor(h.noop), h.size) for h, extra in zip(ACTION_HEADS, bonus)]
    return torch.cat(rows).float()


def default_policy(seed: int = 0) -> ActorCritic:
    """A freshly initialized policy with DEFAULT_NOOP_BIAS on each head's no-op, so that, acting greedily, it
    keeps the initial hyperparameters until trained."""
    return ActorCritic(PolicyConfig(OBS_DIM, HEAD_SIZES), torch.Generator().manual_seed(seed), noop_bias())


# -------------------------------------------------------------------------------------------------- controller


def _empty_window() -> dict[str, Any]:
    return {
        "feature_sum": torch.zeros(NUM_INNER_FEATURES - 1, dtype=torch.float64),
        "feature_steps": 0,
        "clipped": 0,
        "steps": 0,
        "loss_sum": 0.0,
        "loss_count": 0,
        "loss_nan": False,
        "loss_inf": False,
    }


def _global_norm(tensors: list[Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))))


def init_controller(params: list[Tensor], hparams: InnerHParams) -> Controller:
    """Controller state at the start of a run whose initial hyperparameters are `hparams`."""
    return {
        "hparams": hparams,
        "initial_hparams": hparams,
        "previous_action": NOOP_ACTION,
        "cdf": cdf_init(len(STREAMS)),
        "window": _empty_window(),
        "previous_loss": None,
        "previous_update_norm": None,
        "decision_params": [p.detach().clone() for p in params],
        "valid_pending": None,
        "valid_features": torch.tensor([0.0, 0.0, 0.0] + [0.5] * NUM_CDF, dtype=torch.float64),
        "registers": empty_registers(),
    }


def wants_features(controller: Controller, config: InnerConfig) -> bool:
    """Per-parameter features on the first inner step of a window and every feature_every steps after."""
    return controller["window"]["steps"] % config.feature_every == 0


def record_step(controller: Controller, loss: float, clipped: bool, features: Tensor | None) -> None:
    """Add one inner step's training loss, clipping flag and (optional) per-parameter features to the window."""
    window = controller["window"]
    window["steps"] += 1
    window["clipped"] += int(clipped)
    if features is not None:
        window["feature_sum"] += features
        window["feature_steps"] += 1
    if math.isnan(loss):
        window["loss_nan"] = True
    elif math.isinf(loss):
        window["loss_inf"] = True
    else:
        window["loss_sum"] += loss
        window["loss_count"] += 1


def window_loss(window: dict[str, Any]) -> float:
    """Mean training loss over the window; NaN if any was NaN, else +inf if any was infinite."""
    if window["loss_nan"] or window["loss_count"] == 0:
        return math.nan
    return math.inf if window["loss_inf"] else window["loss_sum"] / window["loss_count"]


def observe(
    controller: Controller, params: list[Tensor], progress: float, progress_step: float
) -> tuple[Tensor, float]:
    """The policy's observation (OBSERVATION_LAYOUT) at the end of a window; folds the window into the CDF
    trackers and starts a new one. Returns (observation (OBS_DIM,), the window's mean training loss)."""
    window = controller["window"]
    clip_fraction = torch.tensor([window["clipped"] / max(window["steps"], 1)], dtype=torch.float64)
    inner = torch.cat((window["feature_sum"] / max(window["feature_steps"], 1), clip_fraction))
    loss = window_loss(window)
    with torch.no_grad():
        moved = _global_norm(torch._foreach_sub(params, controller["decision_params"]))
        norm_now, norm_before = _global_norm(params), _global_norm(controller["decision_params"])
    loss_ratio = log_ratio(loss, controller["previous_loss"])
    update_ratio = log_ratio(moved, controller["previous_update_norm"])
    norm_ratio = log_ratio(norm_now, norm_before)
    valid = controller["valid_pending"]
    valid_log = math.nan if valid is None else safe_log(valid)
    ratios = [loss_ratio, update_ratio, norm_ratio, safe_log(loss), valid_log]
    streams = torch.cat((inner, torch.tensor(ratios, dtype=torch.float64)))
    cdf, controller["cdf"] = cdf_update(controller["cdf"], streams, progress_step)
    if valid is not None:
        controller["valid_features"] = torch.cat(
            (torch.tensor([1.0, *flags(valid_log)], dtype=torch.float64), cdf[_STREAM["valid_log_loss"]])
        )
    stream_cdf = lambda name: cdf[_STREAM[name]].tolist()  # noqa: E731
    loss_features = [
        *[float(math.isnan(loss_ratio)), tanh_or_zero(loss_ratio), *stream_cdf("loss_ratio")],
        *[tanh_or_zero(update_ratio), *stream_cdf("update_ratio")],
        *[tanh_or_zero(norm_ratio), *stream_cdf("norm_ratio")],
        *[*flags(loss), *stream_cdf("train_log_loss")],
    ]
    observation = torch.cat(
        (
            torch.tensor([progress], dtype=torch.float64),
            identity_feature(inner),
            cdf[:NUM_INNER_FEATURES].reshape(-1),
            action_one_hot(controller["previous_action"]),
            torch.tensor(loss_features, dtype=torch.float64),
            controller["valid_features"],
            register_features(controller["registers"], loss),
            hparam_features(controller["hparams"], controller["initial_hparams"]),
        )
    )
    if math.isfinite(loss):
        controller["previous_loss"] = loss
    controller["previous_update_norm"] = moved
    controller["valid_pending"] = None
    controller["window"] = _empty_window()
    return observation, loss


def decide(
    controller: Controller,
    action: list[int],
    params: list[Tensor],
    inner_state: dict[str, Any],
    *,
    loss: float,
    progress: float,
) -> dict[str, Any]:
    """Apply `action`: new hyperparameters and a restart-register operation. Loads a register into `params`
    (in place) when asked; returns the inner state to continue with."""
    controller["hparams"] = apply_action(controller["hparams"], action)
    controller["previous_action"] = tuple(int(a) for a in action)
    restart = int(action[RESTART_HEAD])
    if restart != 0:
        current = {"params": params, "state": inner_state, "loss": loss, "progress": progress}
        controller["registers"], loaded = apply_restart(controller["registers"], restart, current)
        if loaded is not None:
            with torch.no_grad():
                torch._foreach_copy_(params, loaded["params"])
            inner_state = loaded["state"]
    controller["decision_params"] = [p.detach().clone() for p in params]
    return inner_state


# ---------------------------------------------------------------------------------------------- torch.optim


class LHOPT(torch.optim.Optimizer):
    """`loptim.LHOPT(model.parameters(), weights=..., total_steps=N)`; call `step(loss=loss)` after backward.

    The policy acts every total_steps // decisions steps (greedily unless `sample_actions`), on features of the
    inner steps since its last decision; `observe_validation(loss)` feeds it a validation loss when there is one.
    """

    wants_loss = True  # the harness passes step(loss=...)

    def __init__(
        self,
        params: Iterable[Tensor],
        weights: str | None = None,
        *,
        total_steps: int,
        decisions: int = 32,
        policy: ActorCritic | None = None,
        hparams: InnerHParams = InnerHParams(),
        inner_config: InnerConfig = PUBLISHED,
        sample_actions: bool = False,
        seed: int = 0,
        allow_nonfinite_loss: bool = False,
    ) -> None:
        if int(total_steps) < 1 or int(decisions) < 1:
            raise ValueError(f"LHOPT needs total_steps >= 1 and decisions >= 1, got {total_steps} and {decisions}")
        if weights is not None and policy is not None:
            raise ValueError("pass either weights (a shipped name or file) or a policy, not both")
        super().__init__(params, defaults={})
        self.params = [p for group in self.param_groups for p in group["params"]]
        if policy is None:
            policy = load_policy(weights) if weights is not None else default_policy()
        self.policy = policy.eval()
        self.weights = weights
        self.total_steps, self.decisions = int(total_steps), int(decisions)
        self.interval = max(1, self.total_steps // self.decisions)
        self.inner_config = inner_config
        self.sample_actions = sample_actions
        self.generator = torch.Generator().manual_seed(seed)
        self.allow_nonfinite_loss = allow_nonfinite_loss
        self.inner_state = init_inner_state(self.params)
        self.controller = init_controller(self.params, hparams)
        self.lstm_state = self.policy.initial_state(1)
        self.step_count = 0
        self.last_observation: Tensor | None = None

    @property
    def hparams(self) -> InnerHParams:
        return self.controller["hparams"]

    def observe_validation(self, loss: float) -> None:
        """Record a validation loss; the policy sees it (through is-nan/is-inf/CDF features) at its next decision."""
        self.controller["valid_pending"] = float(loss)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Tensor | float | None = None) -> Any:
        closure_loss = None
        if closure is not None:
            with torch.enable_grad():
                closure_loss = closure()
            loss = closure_loss if loss is None else loss
        if loss is None:
            raise MissingLossError("LHOPT needs the training loss of each step: call step(loss=loss) or step(closure)")
        loss_value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(loss_value) and not self.allow_nonfinite_loss:
            raise DivergedError(
                f"LHOPT.step got a non-finite loss ({loss_value}) at step {self.step_count}; restart from a "
                "checkpoint with a lower learning rate, or pass allow_nonfinite_loss=True to let the policy see it"
            )
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        with_features = wants_features(self.controller, self.inner_config)
        clipped, features = inner_step(
            self.hparams, self.inner_config, self.inner_state, self.params, grads, with_features=with_features
        )
        record_step(self.controller, loss_value, clipped, features)
        self.step_count += 1
        if self.step_count % self.interval == 0 and self.step_count < self.total_steps:
            self._decide()
        return closure_loss

    def _decide(self) -> None:
        progress = self.step_count / self.total_steps
        observation, loss = observe(self.controller, self.params, progress, self.interval / self.total_steps)
        self.last_observation = observation  # for logs and tests; not part of the state
        logits, _, self.lstm_state = self.policy.step(observation.float().unsqueeze(0), self.lstm_state)
        action = choose(logits, HEAD_SIZES, self.generator if self.sample_actions else None)[0].tolist()
        self.inner_state = decide(self.controller, action, self.params, self.inner_state, loss=loss, progress=progress)

    def state_dict(self) -> dict[str, Any]:
        controller = {k: v for k, v in self.controller.items() if k not in ("hparams", "initial_hparams")}
        return {
            "name": "lhopt",
            "weights": self.weights,
            "shapes": [tuple(p.shape) for p in self.params],
            "step_count": self.step_count,
            "total_steps": self.total_steps,
            "decisions": self.decisions,
            "hparams": dataclasses.asdict(self.controller["hparams"]),
            "initial_hparams": dataclasses.asdict(self.controller["initial_hparams"]),
            "controller": copy.deepcopy(controller),
            "inner_state": clone_state(self.inner_state),
            "lstm_state": tuple(t.clone() for t in self.lstm_state),
            "policy": {k: v.clone() for k, v in self.policy.state_dict().items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        shapes = [tuple(p.shape) for p in self.params]
        if state_dict.get("name") != "lhopt" or [tuple(s) for s in state_dict.get("shapes", [])] != shapes:
            raise ValueError(
                f"state_dict is for a '{state_dict.get('name')}' optimizer over tensors {state_dict.get('shapes')}; "
                f"this is an 'lhopt' optimizer over {shapes}"
            )
        self.step_count = int(state_dict["step_count"])
        self.total_steps, self.decisions = int(state_dict["total_steps"]), int(state_dict["decisions"])
        self.interval = max(1, self.total_steps // self.decisions)
        controller = copy.deepcopy(state_dict["controller"])
        controller["hparams"] = InnerHParams(**state_dict["hparams"])
        controller["initial_hparams"] = InnerHParams(**state_dict["initial_hparams"])
        controller["registers"] = tuple(controller["registers"])
        self.controller = controller
        self.inner_state = clone_state(state_dict["inner_state"])
        self.lstm_state = tuple(t.clone() for t in state_dict["lstm_state"])
        self.policy.load_state_dict(state_dict["policy"])
        self.generator.set_state(state_dict["generator"])


def load_policy(weights: str) -> ActorCritic:
    """Shipped or trained LHOPT weights through loptim.pretrained (kind "lhopt"); errors say what is wrong."""
    from loptim.pretrained import load_learned

    policy = load_learned("lhopt", weights)
    if not isinstance(policy, ActorCritic):
        raise WeightsError(f"weights '{weights}' did not build an LHOPT policy")
    return policy


__all__ = [
    "ACTION_HEADS",
    "LHOPT",
    "OBS_DIM",
    "PLAIN_ADAMW",
    "PUBLISHED",
    "InnerConfig",
    "InnerHParams",
    "MissingLossError",
    "apply_action",
    "decide",
    "default_policy",
    "init_controller",
    "observe",
    "randomize_hparams",
    "record_step",
]
