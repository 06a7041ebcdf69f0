"""`loptim.LHOPT`: the torch.optim shell over LHOPT's control loop (Almeida et al. 2021). The inner optimizer is
`inner`, actions and restart registers `actions`, features `features`, the policy network `policy`, the
controller and its loop `controller` (all in this package); the shell adds param groups, losses handed over by
training loops, devices and state_dicts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from loptim.errors import WeightsError
from loptim.optimizers.flat import meta_sha256
from loptim.optimizers.lhopt.actions import HEAD_SIZES, NOOP_ACTION
from loptim.optimizers.lhopt.controller import ControlLoop
from loptim.optimizers.lhopt.inner import PUBLISHED, InnerConfig, InnerHParams, clone_state
from loptim.optimizers.lhopt.policy import ActorCritic, choose, default_policy
from loptim.optimizers.step_inputs import (
    Loss,
    MissingLossError,
    check_dense,
    check_hyperparameters,
    check_one_device,
    loss_value,
    missing_loss,
    run_closure,
    split_step_args,
)
from loptim.optimizers.versions import (
    check_group_sizes,
    check_state_dict_header,
    packed_groups,
    restore_group_options,
    state_dict_header,
)

DEFAULT_COOLDOWN = 0.2  # LHOPT's default cooldown fraction (docs/lhopt.md, Cooldown)
DEFAULT_LR = 3e-3  # the learning rate a run starts at, 3x the policy's initial 1e-3 (docs/lhopt.md, Starting rate)


class LHOPT(torch.optim.Optimizer):
    """`loptim.LHOPT(model.parameters(), total_steps=N)`: the shipped policy ("lhopt-wider-e285") steering AdamW.

    The policy acts every total_steps // decisions steps (greedily unless `sample_actions`), on features of the
    inner steps since its last decision; it needs each step's training loss: `step(closure)`, `step(loss)`,
    `step(loss=loss)`, or `observe_loss(loss)` before a bare `step()` (Hugging Face, accelerate, GradScaler; see
    `loptim.integrations`). Without a loss at some step it reuses the latest one it saw (a lagged loss).
    `observe_validation(loss)` feeds it a validation loss when there is one.

    Param groups carry `lr` (default 3e-3, three times the published initial 1e-3 the policy starts from; with an
    explicit `hparams`, its lr) and `weight_decay` (default 1e-2), read at every step: the effective learning rate
    of a tensor is group["lr"] times the factor the policy has accumulated (hparams.lr / its initial value), so an
    LR scheduler scales what the policy chooses; weight decay likewise.
    `cooldown`: over the last fraction of total_steps the learning rate is also multiplied by a linear decay to 0
    (warmup-stable-decay's cooldown, not in the paper: docs/lhopt.md, Cooldown); 0 runs the policy alone.
    `freeze_in_cooldown`: the policy's choices in the cooldown are no-ops, so the decay starts from the rate it
    had reached and nothing moves it (the policy otherwise keeps acting and may raise its rate against the decay).
    Parameters whose `.grad` is None are skipped. The AdamW moments live on the parameters' device in their dtype
    (as torch.optim.AdamW's); the policy's features are float64 on the host (one synchronization per step, which
    the published rolling-max clipping needs anyway). A non-finite gradient or loss raises `loptim.DivergedError`
    before the model changes (`nonfinite="raise"`) or skips the step (`"skip"`).
    """

    name = "lhopt"
    wants_loss = True  # the harness passes step(loss=...)

    def __init__(
        self,
        params: Iterable[Tensor],
        weights: str | None = "lhopt-wider-e285",
        *,
        total_steps: int,
        lr: float | None = None,
        weight_decay: float | None = None,
        maximize: bool = False,
        decisions: int = 32,
        cooldown: float = DEFAULT_COOLDOWN,
        freeze_in_cooldown: bool = False,
        policy: ActorCritic | None = None,
        hparams: InnerHParams | None = None,
        inner_config: InnerConfig = PUBLISHED,
        sample_actions: bool = False,
        seed: int = 0,
        nonfinite: str = "raise",
    ) -> None:
        if not isinstance(total_steps, int) or total_steps < 1 or not isinstance(decisions, int) or decisions < 1:
            raise ValueError(f"LHOPT needs total_steps >= 1 and decisions >= 1, got {total_steps} and {decisions}")
        if lr is None:
            lr = DEFAULT_LR if hparams is None else hparams.lr
        hparams = InnerHParams() if hparams is None else hparams
        weight_decay = hparams.weight_decay if weight_decay is None else weight_decay
        check_hyperparameters("LHOPT", lr=lr, weight_decay=weight_decay, nonfinite=nonfinite)
        if not 0.0 <= cooldown < 1.0:
            raise ValueError(f"LHOPT's cooldown is a fraction of total_steps in [0, 1), got {cooldown}")
        self.cooldown = float(cooldown)
        self.freeze_in_cooldown = bool(freeze_in_cooldown)
        super().__init__(params, defaults={"lr": lr, "weight_decay": weight_decay, "maximize": maximize})
        if policy is None:
            with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG: keep the user's
                policy = load_policy(weights) if weights else default_policy()
        else:
            weights = None  # a policy object given directly: its weights travel in the state_dict
        self.policy = policy.eval()
        self.weights = weights
        self.sample_actions = sample_actions
        self.generator = torch.Generator().manual_seed(seed)
        self.loop = ControlLoop(self._all_params(), hparams, inner_config, total_steps, decisions, nonfinite)
        self.lstm_state = self.policy.initial_state(1)
        self.last_observation: Tensor | None = None
        self._observed: list[Tensor | float] = []
        self._last_loss: float | None = None
        self._bind_state()

    # The control loop's state, under the names the shell has always had.
    hparams = property(lambda self: self.loop.hparams, doc="The inner optimizer's current hyperparameters.")
    controller = property(lambda self: self.loop.controller, doc="The controller state (plain data).")
    inner_state = property(lambda self: self.loop.inner_state, doc="The inner optimizer's state.")
    step_count = property(lambda self: self.loop.step_count, doc="Inner steps taken (skipped ones excluded).")
    skipped_steps = property(lambda self: self.loop.skipped_steps, doc="Steps skipped (nonfinite='skip').")
    total_steps = property(lambda self: self.loop.total_steps)
    decisions = property(lambda self: self.loop.decisions)
    interval = property(lambda self: self.loop.interval, doc="Inner steps between the policy's decisions.")
    inner_config = property(lambda self: self.loop.config)
    nonfinite = property(lambda self: self.loop.nonfinite)

    @property
    def params(self) -> list[Tensor]:
        return self._all_params()

    def _all_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _bind_state(self) -> None:
        """`opt.state[p]`: the AdamW moments of p (the inner state's own tensors, updated in place)."""
        for p, m, v in zip(self._all_params(), self.inner_state["exp_avg"], self.inner_state["exp_avg_sq"]):
            self.state[p] = {"exp_avg": m, "exp_avg_sq": v}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch.optim's add_param_group; the new parameters start with zero moments and are trained from now on."""
        super().add_param_group(param_group)
        if not hasattr(self, "loop"):  # called by torch.optim's constructor
            return
        added = self.param_groups[-1]["params"]
        self.inner_state["exp_avg"] += [torch.zeros_like(p) for p in added]
        self.inner_state["exp_avg_sq"] += [torch.zeros_like(p) for p in added]
        ema = self.inner_state["update_norm_ema"]
        self.inner_state["update_norm_ema"] = torch.cat((ema, torch.zeros(len(added), dtype=ema.dtype)))
        self.controller["decision_params"] += [p.detach().clone() for p in added]
        self._bind_state()

    def observe_validation(self, loss: float) -> None:
        """Record a validation loss; the policy sees it (through is-nan/is-inf/CDF features) at its next decision."""
        self.controller["valid_pending"] = float(loss)

    def observe_loss(self, loss: Tensor | float) -> None:
        """Record a training loss for the next `step()` (for loops that call step() without one; several calls
        before one step, as with gradient accumulation, are averaged)."""
        self._observed.append(loss.detach() if isinstance(loss, Tensor) else float(loss))

    def _step_loss(self, loss: Loss) -> float:
        observed, self._observed = self._observed, []
        if loss is None and observed:
            loss = sum(loss_value(v) for v in observed) / len(observed)
        value = loss_value(loss) if loss is not None else self._last_loss
        if value is None:
            raise missing_loss("LHOPT")
        if math.isfinite(value):
            self._last_loss = value
        return value

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | Tensor | float | None = None, *, loss: Loss = None) -> Any:
        closure, loss = split_step_args(closure, loss)
        closure_loss = run_closure(closure)
        value = self._step_loss(closure_loss if loss is None else loss)
        params = self._all_params()
        check_dense("LHOPT", params)
        self._follow_device(params)
        active = [i for i, p in enumerate(params) if p.grad is not None]
        if not active:
            return closure_loss
        grads = [(-params[i].grad if self._group(i)["maximize"] else params[i].grad) for i in active]
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()))
        if not self.loop.proceed(value, norm):
            return closure_loss
        known = norm if all(g.dtype == torch.float32 for g in grads) else None  # as the clipping computes it
        if self.loop.step(params, grads, value, active=active, grad_norm=known, **self._group_scales(active)):
            self.loop.decision(params, self._act)
            self._bind_state()
        return closure_loss

    def _group(self, index: int) -> dict[str, Any]:
        for group in self.param_groups:
            if index < len(group["params"]):
                return group
            index -= len(group["params"])
        raise IndexError(index)

    def _lr_scale(self, group: dict[str, Any], decay: float) -> float:
        """A param group's factor on the policy's learning rate: its lr over the policy's initial one, times the
        cooldown's `decay`."""
        return float(group["lr"]) / self.controller["initial_hparams"].lr * decay

    def applied_lrs(self) -> list[float]:
        """The learning rate the next step applies in each param group: the policy's, times the group's factor and
        the cooldown (for logs and plots; `hparams.lr` is the policy's own)."""
        decay = cooldown_factor(self.step_count, self.total_steps, self.cooldown)
        return [self.loop.hparams.lr * self._lr_scale(g, decay) for g in self.param_groups]

    def _group_scales(self, active: list[int]) -> dict[str, list[float] | None]:
        """The active tensors' learning-rate scales and weight decays from their param groups (None: the defaults)."""
        hparams, initial = self.loop.hparams, self.controller["initial_hparams"]
        groups = [self._group(i) for i in active]
        decay = cooldown_factor(self.step_count, self.total_steps, self.cooldown)
        lr_scales = [self._lr_scale(g, decay) for g in groups]
        decay_factor = hparams.weight_decay / initial.weight_decay if initial.weight_decay > 0 else 1.0
        decays = [float(g["weight_decay"]) * decay_factor for g in groups]
        if all(s == 1.0 for s in lr_scales) and all(d == hparams.weight_decay for d in decays):
            return {"lr_scales": None, "weight_decays": None}
        return {"lr_scales": lr_scales, "weight_decays": decays}

    def _follow_device(self, params: list[Tensor]) -> None:
        """Move the moments (and the decision snapshot) when the model was moved after the optimizer was built."""
        device = check_one_device("LHOPT", params)
        if self.inner_state["exp_avg"] and self.inner_state["exp_avg"][0].device != device:
            for key in ("exp_avg", "exp_avg_sq"):
                self.inner_state[key] = [t.to(device) for t in self.inner_state[key]]
            self.controller["decision_params"] = [t.to(device) for t in self.controller["decision_params"]]
            self._bind_state()

    def _act(self, observation: Tensor) -> list[int]:
        """The policy's choice (greedy unless `sample_actions`) on `observation`; keeps its recurrent state."""
        self.last_observation = observation  # for logs and tests; not part of the state
        logits, _, self.lstm_state = self.policy.step(observation.float().unsqueeze(0), self.lstm_state)
        action = choose(logits, HEAD_SIZES, self.generator if self.sample_actions else None)[0].tolist()
        if self.freeze_in_cooldown and cooldown_factor(self.step_count, self.total_steps, self.cooldown) < 1.0:
            return list(NOOP_ACTION)
        return action

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout (`state`: each parameter's AdamW moments; `param_groups`) plus a `loptim` header
        with the controller, the policy's recurrent state, and the policy's weights name and SHA-256 (the weights
        themselves unless shipped)."""
        groups = packed_groups(self.param_groups)
        inner = clone_state(self.inner_state)
        state = {
            i: {"exp_avg": m, "exp_avg_sq": v}
            for i, (m, v) in enumerate(zip(inner.pop("exp_avg"), inner.pop("exp_avg_sq")))
        }
        policy = {k: v.clone() for k, v in self.policy.state_dict().items()}
        header = state_dict_header("lhopt", self.weights, policy, meta_sha256(policy))
        controller = {k: v for k, v in self.controller.items() if k not in ("hparams", "initial_hparams")}
        header.update(
            step_count=self.step_count,
            skipped_steps=self.skipped_steps,
            total_steps=self.total_steps,
            decisions=self.decisions,
            hparams=dataclasses.asdict(self.controller["hparams"]),
            initial_hparams=dataclasses.asdict(self.controller["initial_hparams"]),
            controller=copy.deepcopy(controller),
            inner_scalars=inner,
            lstm_state=[t.clone() for t in self.lstm_state],
            generator=self.generator.get_state(),
            last_loss=self._last_loss,
        )
        return {"state": state, "param_groups": groups, "loptim": header}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        header = check_state_dict_header(state_dict, "lhopt")
        params = self._all_params()
        saved_groups = state_dict["param_groups"]
        check_group_sizes(self.param_groups, saved_groups)
        for key, values in state_dict["state"].items():
            p = params[int(key)]
            shapes = {k: tuple(values[k].shape) for k in ("exp_avg", "exp_avg_sq")}
            if any(shape != tuple(p.shape) for shape in shapes.values()):
                raise ValueError(
                    f"state of parameter {key} has shapes {shapes}; parameter {key} of this optimizer has shape "
                    f"{tuple(p.shape)}: build the optimizer over the same model"
                )
        self._load_policy(header)
        inner = clone_state(header["inner_scalars"])
        moments = {int(k): v for k, v in state_dict["state"].items()}
        inner["exp_avg"] = [moments[i]["exp_avg"].to(p.device, p.dtype).clone() for i, p in enumerate(params)]
        inner["exp_avg_sq"] = [moments[i]["exp_avg_sq"].to(p.device, p.dtype).clone() for i, p in enumerate(params)]
        loop = self.loop
        loop.inner_state = inner
        loop.step_count = int(header["step_count"])
        loop.skipped_steps = int(header["skipped_steps"])
        loop.total_steps, loop.decisions = int(header["total_steps"]), int(header["decisions"])
        controller = copy.deepcopy(header["controller"])
        controller["hparams"] = InnerHParams(**header["hparams"])
        controller["initial_hparams"] = InnerHParams(**header["initial_hparams"])
        controller["registers"] = tuple(controller["registers"])
        loop.controller = controller
        self.lstm_state = tuple(t.clone() for t in header["lstm_state"])
        self.generator.set_state(header["generator"])
        self._last_loss = header.get("last_loss")
        self._observed = []
        restore_group_options(self.param_groups, saved_groups)
        self._bind_state()

    def _load_policy(self, header: dict[str, Any]) -> None:
        """The policy the state was made with: from the header, or the named shipped weights if their hash fits."""
        current = {k: v.clone() for k, v in self.policy.state_dict().items()}
        if "meta_params" in header:
            self.policy.load_state_dict(header["meta_params"])
        elif header["meta_sha256"] != meta_sha256(current):
            self.policy = load_policy(header["weights"]).eval()
            if meta_sha256(self.policy.state_dict()) != header["meta_sha256"]:
                raise WeightsError(
                    f"the state_dict was made with LHOPT weights '{header['weights']}' of another hash; build the "
                    "optimizer with those weights"
                )
        self.weights = header.get("weights")


def cooldown_factor(step: int, total_steps: int, cooldown: float) -> float:
    """The learning-rate multiplier at `step` (steps taken so far): 1, then linear from 1 to 0 over the last
    `cooldown` fraction of `total_steps` (Hagele et al. 2024's cooldown of warmup-stable-decay schedules)."""
    if cooldown <= 0.0:
        return 1.0
    left = 1.0 - step / total_steps
    return min(1.0, max(0.0, left / cooldown))


def load_policy(weights: str) -> ActorCritic:
    """Shipped or trained LHOPT weights through loptim.pretrained (kind "lhopt"); errors say what is wrong."""
    from loptim.pretrained import load_learned

    policy = load_learned("lhopt", weights)
    if not isinstance(policy, ActorCritic):
        raise WeightsError(f"weights '{weights}' did not build an LHOPT policy")
    return policy


__all__ = ["DEFAULT_COOLDOWN", "DEFAULT_LR", "LHOPT", "MissingLossError", "cooldown_factor", "load_policy"]
