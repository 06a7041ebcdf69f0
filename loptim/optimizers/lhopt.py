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

from loptim.errors import LoptimError, WeightsError
from loptim.lhopt_features import (
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
from loptim.meta.ppo import ActorCritic, PolicyConfig, choose
from loptim.optimizers.flat import meta_sha256
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
from loptim.optimizers.step_inputs import (
    Loss,
    check_dense,
    check_hyperparameters,
    check_one_device,
    diverged,
    loss_value,
    run_closure,
    split_step_args,
)
from loptim.optimizers.versions import check_state_dict_header, state_dict_header

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
    """`loptim.LHOPT(model.parameters(), total_steps=N)`: the shipped policy ("lhopt-small") steering AdamW.

    The policy acts every total_steps // decisions steps (greedily unless `sample_actions`), on features of the
    inner steps since its last decision; it needs each step's training loss: `step(closure)`, `step(loss)`,
    `step(loss=loss)`, or `observe_loss(loss)` before a bare `step()` (Hugging Face, accelerate, GradScaler; see
    `loptim.integrations`). Without a loss at some step it reuses the latest one it saw (a lagged loss).
    `observe_validation(loss)` feeds it a validation loss when there is one.

    Param groups carry `lr` (default: the published initial 1e-3) and `weight_decay` (default 1e-2), read at every
    step: the effective learning rate of a tensor is group["lr"] times the factor the policy has accumulated
    (hparams.lr / its initial value), so an LR scheduler scales what the policy chooses; weight decay likewise.
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
        weights: str | None = "lhopt-small",
        *,
        total_steps: int,
        lr: float | None = None,
        weight_decay: float | None = None,
        maximize: bool = False,
        decisions: int = 32,
        policy: ActorCritic | None = None,
        hparams: InnerHParams = InnerHParams(),
        inner_config: InnerConfig = PUBLISHED,
        sample_actions: bool = False,
        seed: int = 0,
        nonfinite: str = "raise",
    ) -> None:
        if not isinstance(total_steps, int) or total_steps < 1 or not isinstance(decisions, int) or decisions < 1:
            raise ValueError(f"LHOPT needs total_steps >= 1 and decisions >= 1, got {total_steps} and {decisions}")
        lr = hparams.lr if lr is None else lr
        weight_decay = hparams.weight_decay if weight_decay is None else weight_decay
        check_hyperparameters("LHOPT", lr=lr, weight_decay=weight_decay, nonfinite=nonfinite)
        super().__init__(params, defaults={"lr": lr, "weight_decay": weight_decay, "maximize": maximize})
        if policy is None:
            with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG: keep the user's
                policy = load_policy(weights) if weights else default_policy()
        else:
            weights = None  # a policy object given directly: its weights travel in the state_dict
        self.policy = policy.eval()
        self.weights = weights
        self.nonfinite = nonfinite
        self.total_steps, self.decisions = total_steps, decisions
        self.interval = max(1, self.total_steps // self.decisions)
        self.inner_config = inner_config
        self.sample_actions = sample_actions
        self.generator = torch.Generator().manual_seed(seed)
        params = self._all_params()
        self.inner_state = init_inner_state(params)
        self.controller = init_controller(params, hparams)
        self.lstm_state = self.policy.initial_state(1)
        self.step_count = 0
        self.skipped_steps = 0
        self.last_observation: Tensor | None = None
        self._observed: list[Tensor | float] = []
        self._last_loss: float | None = None
        self._feature_scratch: tuple[list[Tensor], list[Tensor]] | None = None  # work memory, not state
        self._bind_state()

    @property
    def hparams(self) -> InnerHParams:
        return self.controller["hparams"]

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
        if not hasattr(self, "inner_state"):  # called by torch.optim's constructor
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
            raise MissingLossError(
                "LHOPT needs the training loss: call step(closure), step(loss), step(loss=loss), or "
                "opt.observe_loss(loss) before step() (loptim.integrations has Lightning and Hugging Face glue)"
            )
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
        if not (math.isfinite(value) and math.isfinite(norm)):
            if self.nonfinite == "raise":
                raise diverged("LHOPT", self.step_count, "gradient or loss")
            self.skipped_steps += 1
            return closure_loss
        with_features = wants_features(self.controller, self.inner_config)
        clipped, features = self._inner_step(params, active, grads, with_features)
        record_step(self.controller, value, clipped, features)
        self.step_count += 1
        if self.step_count % self.interval == 0 and self.step_count < self.total_steps:
            self._decide()
        return closure_loss

    def _group(self, index: int) -> dict[str, Any]:
        for group in self.param_groups:
            if index < len(group["params"]):
                return group
            index -= len(group["params"])
        raise IndexError(index)

    def _inner_step(
        self, params: list[Tensor], active: list[int], grads: list[Tensor], with_features: bool
    ) -> tuple[bool, Tensor | None]:
        """inner_step over the parameters that have gradients, at the param groups' learning rates and decays."""
        hparams, initial = self.controller["hparams"], self.controller["initial_hparams"]
        groups = [self._group(i) for i in active]
        lr_scales = [float(g["lr"]) / initial.lr for g in groups]
        decay_factor = hparams.weight_decay / initial.weight_decay if initial.weight_decay > 0 else 1.0
        decays = [float(g["weight_decay"]) * decay_factor for g in groups]
        defaults = all(s == 1.0 for s in lr_scales) and all(d == hparams.weight_decay for d in decays)
        scales = {} if defaults else {"lr_scales": lr_scales, "weight_decays": decays}
        state = self.inner_state
        if len(active) == len(params):
            if with_features and not scratch_fits(self._feature_scratch, params):
                self._feature_scratch = feature_scratch(params)  # 8 bytes per fp32 parameter, reused every time
            scratch = self._feature_scratch if with_features else None
            return inner_step(
                hparams, self.inner_config, state, params, grads, with_features=with_features, scratch=scratch, **scales
            )
        subset = {
            **state,
            "exp_avg": [state["exp_avg"][i] for i in active],
            "exp_avg_sq": [state["exp_avg_sq"][i] for i in active],
            "update_norm_ema": state["update_norm_ema"][active],
        }
        chosen = [params[i] for i in active]
        result = inner_step(hparams, self.inner_config, subset, chosen, grads, with_features=with_features, **scales)
        for key in ("bias_correction1", "bias_correction2", "rolling_max", "update_norm_correction", "steps"):
            state[key] = subset[key]
        state["update_norm_ema"][active] = subset["update_norm_ema"]
        return result

    def _follow_device(self, params: list[Tensor]) -> None:
        """Move the moments (and the decision snapshot) when the model was moved after the optimizer was built."""
        device = check_one_device("LHOPT", params)
        if self.inner_state["exp_avg"] and self.inner_state["exp_avg"][0].device != device:
            for key in ("exp_avg", "exp_avg_sq"):
                self.inner_state[key] = [t.to(device) for t in self.inner_state[key]]
            self.controller["decision_params"] = [t.to(device) for t in self.controller["decision_params"]]
            self._bind_state()

    def _decide(self) -> None:
        progress = self.step_count / self.total_steps
        params = self._all_params()
        observation, loss = observe(self.controller, params, progress, self.interval / self.total_steps)
        self.last_observation = observation  # for logs and tests; not part of the state
        logits, _, self.lstm_state = self.policy.step(observation.float().unsqueeze(0), self.lstm_state)
        action = choose(logits, HEAD_SIZES, self.generator if self.sample_actions else None)[0].tolist()
        self.inner_state = decide(self.controller, action, params, self.inner_state, loss=loss, progress=progress)
        self._bind_state()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout (`state`: each parameter's AdamW moments; `param_groups`) plus a `loptim` header
        with the controller, the policy's recurrent state, and the policy's weights name and SHA-256 (the weights
        themselves unless shipped)."""
        params = self._all_params()
        index = {id(p): i for i, p in enumerate(params)}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]  # fmt: skip
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
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"state_dict has param groups of sizes {[len(g['params']) for g in saved_groups]}; this optimizer "
                f"has {[len(g['params']) for g in self.param_groups]}: build it over the same parameters"
            )
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
        self.inner_state = inner
        self.step_count = int(header["step_count"])
        self.skipped_steps = int(header["skipped_steps"])
        self.total_steps, self.decisions = int(header["total_steps"]), int(header["decisions"])
        self.interval = max(1, self.total_steps // self.decisions)
        controller = copy.deepcopy(header["controller"])
        controller["hparams"] = InnerHParams(**header["hparams"])
        controller["initial_hparams"] = InnerHParams(**header["initial_hparams"])
        controller["registers"] = tuple(controller["registers"])
        self.controller = controller
        self.lstm_state = tuple(t.clone() for t in header["lstm_state"])
        self.generator.set_state(header["generator"])
        self._last_loss = header.get("last_loss")
        self._observed = []
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
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
