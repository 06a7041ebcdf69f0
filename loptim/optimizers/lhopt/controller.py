"""LHOPT's controller (Almeida et al. 2021): it turns a window of inner steps into the policy's observation and
applies the policy's decision. `ControlLoop` runs one inner step, records it and, at decision points, asks a
policy callback for an action: the torch.optim shell `loptim.LHOPT` and meta-training episodes
(`loptim.meta.lhopt_rollout`) both run it, so the policy meets in use the observations it was trained on
(tests/test_lhopt_parity.py checks that). The state is plain data (a dict and the inner optimizer's state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from loptim.optimizers.lhopt.actions import (
    ACTION_HEADS,
    HEAD_SIZES,
    NOOP_ACTION,
    NUM_REGISTERS,
    RESTART_HEAD,
    action_one_hot,
    apply_action,
    apply_restart,
    empty_registers,
    hparam_features,
    register_features,
)
from loptim.optimizers.lhopt.features import (
    INNER_FEATURE_NAMES,
    NUM_CDF,
    NUM_INNER_FEATURES,
    cdf_init,
    cdf_update,
    feature_scratch,
    flags,
    identity_feature,
    log_ratio,
    safe_log,
    scratch_fits,
    tanh_or_zero,
)
from loptim.optimizers.lhopt.inner import InnerConfig, InnerHParams, State, init_inner_state, inner_step, runs_fused
from loptim.optimizers.step_inputs import diverged

Controller = dict[str, Any]

# Scalar streams with CDF features: the inner features, then these five.
STREAMS = (*INNER_FEATURE_NAMES, "loss_ratio", "update_ratio", "norm_ratio", "train_log_loss", "valid_log_loss")
_STREAM = {name: i for i, name in enumerate(STREAMS)}

# The policy's observation, in order (example config's pi_feature_definitions; docs/design.md, LHOPT).
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


# ------------------------------------------------------------------------------------------------ control loop

Policy = Callable[[Tensor], Sequence[int]]  # observation (OBS_DIM,) float64 -> one choice per head
NONFINITE_MODES = ("raise", "skip", "stop")


class ControlLoop:
    """One run under LHOPT's control: `total_steps` inner steps, the policy deciding every
    `interval = total_steps // decisions` of them (never after the last). Per inner step, `proceed` (what a
    non-finite loss or gradient does) and `step` (the inner update and its record), then, when `step` says a
    decision is due, `decision` (observe, ask the policy, apply its action). Used as is by `loptim.LHOPT.step` and
    by meta-training episodes.

    `nonfinite` is the one place their divergence handling differs, explicitly (docs/lhopt.md, "One controller
    loop"): "raise" (the shell's default: DivergedError before the model changes) and "skip" (the step is dropped
    and not counted) are the user's choice; "stop" (episodes) ends the run at a non-finite loss unless a restart
    register holds a state the policy could go back to, in which case the step goes on, as the policy was trained.
    """

    def __init__(
        self,
        params: list[Tensor],
        hparams: InnerHParams,
        config: InnerConfig,
        total_steps: int,
        decisions: int,
        nonfinite: str = "raise",
    ) -> None:
        if nonfinite not in NONFINITE_MODES:
            raise ValueError(f"nonfinite must be one of {', '.join(NONFINITE_MODES)}, got {nonfinite!r}")
        self.config = config
        self.total_steps, self.decisions = total_steps, decisions
        self.nonfinite = nonfinite
        self.inner_state: State = init_inner_state(params)
        self.controller: Controller = init_controller(params, hparams)
        self.step_count = 0
        self.skipped_steps = 0
        self.stopped = False
        self.scratch: tuple[list[Tensor], list[Tensor]] | None = None  # the features' work memory, not state

    @property
    def interval(self) -> int:
        return max(1, self.total_steps // self.decisions)

    @property
    def hparams(self) -> InnerHParams:
        return self.controller["hparams"]

    def proceed(self, loss: float, grad_norm: float | None = None, name: str = "LHOPT") -> bool:
        """Whether the step with this training loss (and gradient norm, when known) goes on, by `nonfinite`."""
        if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
            return True
        if self.nonfinite == "raise":
            raise diverged(name, self.step_count, "gradient or loss")
        if self.nonfinite == "skip":
            self.skipped_steps += 1
            return False
        if any(register is not None for register in self.controller["registers"]):
            return True
        self.stopped = True
        return False

    def step(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        loss: float,
        *,
        features: bool = True,
        active: list[int] | None = None,
        lr_scales: list[float] | None = None,
        weight_decays: list[float] | None = None,
        lr_factor: float = 1.0,
        grad_norm: float | None = None,
    ) -> bool:
        """One inner step on `params` (in place) and its record; True when the policy decides now.

        `grads` are those of `params[i] for i in active` (all when None); `lr_scales` and `weight_decays` are per
        active tensor (the shell's param groups); `lr_factor` multiplies the learning rate of this step (reference
        runs' schedules). `features`: compute the per-parameter features a policy reads (False for runs without
        one). `grad_norm`: the gradients' global norm when the caller has computed it (the clipping needs it)."""
        with_features = features and wants_features(self.controller, self.config)
        hparams = self.controller["hparams"]
        if lr_factor != 1.0:
            hparams = replace(hparams, lr=hparams.lr * lr_factor)
        scales = {"lr_scales": lr_scales, "weight_decays": weight_decays, "grad_norm": grad_norm}
        state = self.inner_state
        if active is None or len(active) == len(params):
            reference = with_features and not runs_fused(params, grads, state)  # the kernel needs no scratch
            if reference and not scratch_fits(self.scratch, params):
                self.scratch = feature_scratch(params)  # 8 bytes per fp32 parameter, reused every time
            scratch = self.scratch if reference else None
            clipped, step_features = inner_step(
                hparams, self.config, state, params, grads, with_features=with_features, scratch=scratch, **scales
            )
        else:
            subset = {
                **state,
                "exp_avg": [state["exp_avg"][i] for i in active],
                "exp_avg_sq": [state["exp_avg_sq"][i] for i in active],
                "update_norm_ema": state["update_norm_ema"][active],
            }
            chosen = [params[i] for i in active]
            clipped, step_features = inner_step(
                hparams, self.config, subset, chosen, grads, with_features=with_features, **scales
            )
            for key in ("bias_correction1", "bias_correction2", "rolling_max", "update_norm_correction", "steps"):
                state[key] = subset[key]
            state["update_norm_ema"][active] = subset["update_norm_ema"]
        record_step(self.controller, loss, clipped, step_features)
        self.step_count += 1
        return self.step_count % self.interval == 0 and self.step_count < self.total_steps

    def decision(self, params: list[Tensor], policy: Policy, valid_loss: float | None = None) -> list[int]:
        """The policy's decision at the end of a window: the observation (with `valid_loss` as the latest
        validation loss when given), the policy's action, the new hyperparameters and register operation."""
        progress = self.step_count / self.total_steps
        if valid_loss is not None:
            self.controller["valid_pending"] = float(valid_loss)
        observation, loss = observe(self.controller, params, progress, self.interval / self.total_steps)
        action = [int(choice) for choice in policy(observation)]
        self.inner_state = decide(self.controller, action, params, self.inner_state, loss=loss, progress=progress)
        return action
