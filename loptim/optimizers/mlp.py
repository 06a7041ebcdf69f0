"""The per-parameter MLP optimizer of Metz et al. 2019: functional core and torch.optim shell.

Per coordinate: 10 features (loptim.features) -> 32 -> 32 (ReLU) -> (d, m); update = -0.001 * d * exp(0.001 * m)
(Sec. 4 of the paper; two hidden layers of 32 as in learned_optimization's mlp_lopt). The 11 training-progress
features are the same for every coordinate, so they enter as a per-step bias of the first layer (docs/design.md,
Metz et al. 2019).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from loptim.features import (
    MOMENTUM_DECAYS,
    NORMALIZER_EPS,
    NUM_COORDINATE_FEATURES,
    RMS_DECAY,
    RSQRT_EPS,
    TIMESCALES,
    accumulate,
    coordinate_features,
    segment_ids,
    time_features,
)
from loptim.kernels import fused
from loptim.optimizers import mlp_generalist as generalist
from loptim.optimizers.core import State
from loptim.optimizers.flat import FlatOptimizer, add_flat, flatten
from loptim.optimizers.schedules import linear_warmup, schedule
from loptim.optimizers.step_inputs import loss_value, missing_loss
from loptim.pretrained import register_kind


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and output scaling; defaults from the paper (Sec. 4; docs/design.md)."""

    kind: ClassVar[str] = "mlp"  # the weights kind (loptim.pretrained)

    hidden: int = 32
    step_mult: float = 1e-3  # update = -step_mult * d * exp(exp_mult * m)
    exp_mult: float = 1e-3
    chunk: int = 8192  # unused since the fused kernel (loptim/kernels); kept so that older weight cards load
    design: str = "metz2019"  # "metz2019" (the paper) | "generalist" (loptim.optimizers.mlp_generalist)
    nominal_lr: float = 1e-3  # generalist: the Adam step the network corrects (Adam's default learning rate)
    ablation: str | None = None  # generalist: one of mlp_generalist.ABLATIONS (issue 16's ablation table), or None
    loss_features: bool = False  # generalist: loss-history features for the schedule (mlp_generalist.loss_features)
    correction: bool = True  # generalist: the network's additive correction d (False: scale-only, Adam's signs)
    schedule_prior: str | None = None  # generalist: a schedules.SCHEDULES name multiplying the nominal step over
    # step / total_steps when the run's length is known (None: constant); docs/generalist.md, Schedule prior
    warmup: float = 0.0  # generalist: the fraction of total_steps over which the nominal step rises linearly to
    # its prior's value (0: none); docs/generalist.md, Warm-up

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"MLPConfig.design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.ablation is not None and (self.design != "generalist" or self.ablation not in generalist.ABLATIONS):
            raise ValueError(f"MLPConfig.ablation applies to the generalist design: one of {generalist.ABLATIONS}")
        if self.loss_features and self.design != "generalist":
            raise ValueError("MLPConfig.loss_features applies to the generalist design")
        if not self.correction and self.design != "generalist":
            raise ValueError("MLPConfig.correction applies to the generalist design")
        if self.schedule_prior is not None:
            if self.design != "generalist":
                raise ValueError("MLPConfig.schedule_prior applies to the generalist design")
            schedule(self.schedule_prior)  # an unknown name fails here, listing the known ones
        if self.warmup != 0.0:
            if self.design != "generalist":
                raise ValueError("MLPConfig.warmup applies to the generalist design")
            if not 0.0 < self.warmup < 1.0:
                raise ValueError(f"MLPConfig.warmup is a fraction of the run in [0, 1), got {self.warmup}")

    def build(self, generator: torch.Generator | None = None) -> MLPOptimizerNet:
        """The core with this architecture (its initial meta-parameters drawn from `generator`)."""
        return MLPOptimizerNet(self, generator=generator)


DESIGNS = ("metz2019", "generalist")


def generalist_config(hidden: int = 8) -> MLPConfig:
    """The generalist design's defaults (tiny network, nominal Adam step; docs/generalist.md)."""
    return MLPConfig(hidden=hidden, design="generalist")


class MLPOptimizerNet(nn.Module):
    """The learned optimizer: its nn.Parameters are the default meta-parameters; `update` is pure in them."""

    def __init__(self, config: MLPConfig = MLPConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden

        def fan_in(*shape: int) -> nn.Parameter:  # LeCun normal, as haiku's default initializer
            return nn.Parameter(torch.randn(*shape, generator=generator) / math.sqrt(shape[-1]))

        if config.design == "generalist":  # the output layer and the schedule start at zero: exactly Adam
            for name, shape in generalist.meta_param_shapes(hidden, config.loss_features).items():
                zero = name in ("w3", "b3", "w_schedule") or len(shape) == 1
                setattr(self, name, nn.Parameter(torch.zeros(shape)) if zero else fan_in(*shape))
            return

        self.w1 = fan_in(hidden, NUM_COORDINATE_FEATURES)
        self.w1_time = fan_in(hidden, len(TIMESCALES))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2, self.b2 = fan_in(hidden, hidden), nn.Parameter(torch.zeros(hidden))
        self.w3, self.b3 = fan_in(2, hidden), nn.Parameter(torch.zeros(2))

    def meta_params(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())

    def init_state(self, params: dict[str, Tensor]) -> State:
        """The per-coordinate state, and the loss statistics (float64, host) for a design with loss features."""
        first = next(iter(params.values()))
        state = self.zero_state(sum(p.numel() for p in params.values()), dtype=first.dtype, device=first.device)
        if self.config.loss_features:
            state["loss_stats"] = torch.tensor(generalist.loss_statistics(None, None), dtype=torch.float64)
        return state

    def zero_state(
        self, num_coordinates: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> State:
        """Six momenta and the RMS accumulator: 28 bytes per fp32 parameter (coordinates on the last dimension)."""
        if self.config.design == "generalist":
            return generalist.zero_state(num_coordinates, dtype, device)
        return {
            "momenta": torch.zeros(len(MOMENTUM_DECAYS), num_coordinates, dtype=dtype, device=device),
            "rms": torch.zeros(num_coordinates, dtype=dtype, device=device),
        }

    def step_flat(
        self,
        meta_params: dict[str, Tensor],
        state: State,
        grad: Tensor,
        param: Tensor,
        sizes: list[int],
        step: int,
        total_steps: int = 0,
        loss: list[float] | None = None,
    ) -> tuple[Tensor, State]:
        """Flat gradient and parameters (N,) of tensors of `sizes` -> (flat update, new state); pure. `loss`: this
        step's loss features (mlp_generalist.loss_features), for a generalist with `loss_features`."""
        if self.config.design == "generalist":
            return generalist.update(meta_params, state, grad, param, sizes, step, total_steps,
                                     self.nominal_lr(step, total_steps), self.config.ablation, loss,
                                     self.config.correction)  # fmt: skip
        momenta, rms = accumulate(state["momenta"], state["rms"], grad)
        features = coordinate_features(grad, param, momenta, rms, segment_ids(sizes), sizes)
        bias1 = meta_params["b1"] + meta_params["w1_time"] @ time_features(step, grad.dtype, grad.device)
        hidden = torch.relu(torch.addmm(bias1.unsqueeze(1), meta_params["w1"], features))
        hidden = torch.relu(torch.addmm(meta_params["b2"].unsqueeze(1), meta_params["w2"], hidden))
        direction, magnitude = torch.addmm(meta_params["b3"].unsqueeze(1), meta_params["w3"], hidden)
        delta = -self.config.step_mult * direction * torch.exp(self.config.exp_mult * magnitude)
        return delta, {"momenta": momenta, "rms": rms}

    def nominal_lr(self, step: int, total_steps: int) -> float:
        """The generalist's nominal Adam learning rate at `step`: `nominal_lr`, times the schedule prior at
        step / total_steps when the design has one, times the linear warm-up (step + 1) / (warmup * total_steps)
        while that is below 1; both only when the run's length is known (unknown: they are off)."""
        config = self.config
        if total_steps <= 0:
            return config.nominal_lr
        lr = config.nominal_lr
        if config.schedule_prior is not None:
            lr *= schedule(config.schedule_prior)(min(step / total_steps, 1.0))
        return lr * linear_warmup(step, total_steps, config.warmup)

    @property
    def has_kernel(self) -> bool:
        """Whether the fused CPU kernel computes this configuration's update (a compiled width, no ablation)."""
        return self.config.hidden in fused.MLP_HIDDEN and self.config.ablation is None

    def kernel_weights(self, meta_params: dict[str, Tensor]) -> dict[str, Tensor]:
        """The meta-parameters as the fused kernel reads them, the same every step (shells keep them)."""
        if self.config.design == "generalist":
            return generalist.kernel_weights(meta_params, self.config.correction)
        return {k: v.detach().float().contiguous() for k, v in meta_params.items()}

    def kernel_inputs(
        self,
        meta_params: dict[str, Tensor],
        step: int,
        total_steps: int,
        loss: list[float] | None = None,
        weights: dict[str, Tensor] | None = None,
    ) -> tuple[list[Tensor | None], list[float]]:
        """The fused kernel's weights and constants for this step (loptim/kernels/cpu.cpp): the terms `step_flat`
        computes once per step (the progress bias of the first layer, bias corrections). `weights`:
        `kernel_weights(meta_params)`, when the caller kept them."""
        config = self.config
        p = self.kernel_weights(meta_params) if weights is None else weights
        if config.design == "generalist":
            nominal_lr = self.nominal_lr(step, total_steps)
            return generalist.kernel_inputs(meta_params, step, total_steps, nominal_lr, loss, config.correction, p)
        bias1 = p["b1"] + p["w1_time"] @ time_features(step)
        hyper = [*MOMENTUM_DECAYS, RMS_DECAY, RSQRT_EPS, config.step_mult, config.exp_mult]
        return [p["w1"], bias1, None, p["w2"], p["b2"], p["w3"], p["b3"]], hyper

    def update(
        self,
        meta_params: dict[str, Tensor],
        state: State,
        params: dict[str, Tensor],
        grads: dict[str, Tensor],
        *,
        step: int = 0,
        total_steps: int = 0,
        differentiable: bool = True,
        loss: Tensor | float | None = None,
    ) -> tuple[dict[str, Tensor], State]:
        """theta <- theta + the step of `step_flat` (Metz 2019: -0.001 d exp(0.001 m), (d, m) = MLP(features));
        pure and differentiable in meta_params. `loss`: the step's training loss (read by a design with loss
        features, whose statistics travel in the state as "loss_stats")."""
        sizes = [p.numel() for p in params.values()]
        features, stats = None, None
        if self.config.loss_features:
            stats = generalist.loss_statistics(state["loss_stats"].tolist(), None if loss is None else float(loss))
            features = generalist.loss_features(stats)
            state = {k: v for k, v in state.items() if k != "loss_stats"}
        delta, state = self.step_flat(meta_params, state, flatten(grads), flatten(params), sizes, step, total_steps,
                                      features)  # fmt: skip
        if stats is not None:
            state = {**state, "loss_stats": torch.tensor(stats, dtype=torch.float64)}
        return add_flat(params, delta), state


class MLPOptimizer(FlatOptimizer):
    """`loptim.MLPOptimizer(model.parameters())`: the Metz 2019 optimizer (or its generalist design, by the
    weights' config) as a torch.optim class; `total_steps` feeds the generalist's progress features.

    `weights`: a shipped name (default "mlp-generalist-fold", the generalist, whose step warms up and anneals
    over `total_steps` when given; "mlp-mnist" is the faithful Metz 2019 reproduction), a .safetensors path, or None
    for an untrained network drawn from a fixed seed (the global RNG is never touched). `lr` multiplies the
    learned step (dimensionless, default 1); the rest of the torch.optim semantics and the non-finite policy are
    `FlatOptimizer`'s. State: six momenta and an RMS accumulator per coordinate in float32 (float64 for float64
    parameters); the generalist keeps three momenta and the RMS.
    """

    name = "mlp"
    default_weights = "mlp-generalist-fold"
    _offsets: tuple[list[int], Tensor] | None = None  # tensor sizes and their start offsets, for the kernel
    _loss_stats: list[float] | None = None  # a design with loss features: mlp_generalist.loss_statistics
    _kernel_weights: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None  # meta_params, kernel_weights(them)

    _observed_loss: float | None = None  # observe_loss's value, for the next step

    @property
    def wants_loss(self) -> bool:
        """Whether the weights read the training loss (training loops then pass step(loss=...))."""
        return self.net.config.loss_features

    def observe_loss(self, loss: Tensor | float) -> None:
        """Hand over the training loss for the next bare `step()` (loops that do not pass it to step; see
        loptim.integrations). Only weights with loss features read it."""
        self._observed_loss = loss_value(loss)

    def _loss_for_core(self, loss: Tensor | float | None) -> float | None:
        """The step's loss (the argument, else what observe_loss handed over) for weights with loss features; a
        step without one leaves their loss statistics as they are, but the first step needs one."""
        if not self.wants_loss:
            return None
        value = loss_value(loss) if loss is not None else self._observed_loss
        self._observed_loss = None
        if value is None and self._loss_stats is None:
            raise missing_loss("MLPOptimizer with loss-feature weights")
        return value

    @classmethod
    def untrained(cls, generator: torch.Generator) -> MLPOptimizerNet:
        return MLPOptimizerNet(generator=generator)

    def _flat_update(self, flat_grad: Tensor, params: list[Tensor], loss: float | None = None) -> Tensor:
        flat_param = self._buffer("param", flat_grad.numel(), flat_grad.dtype, flat_grad.device)
        torch.cat([p.detach().reshape(-1) for p in params], out=flat_param)
        sizes = [p.numel() for p in params]
        state = self.flat_state
        self._loss_stats, features = self._loss_inputs(loss)
        if fused.available(self.net.has_kernel, flat_grad, *state.values()):  # the fused CPU kernel of step_flat
            out = self._buffer("delta", flat_grad.numel(), flat_grad.dtype, flat_grad.device)
            call = self._kernel_call(sizes, features)
            return fused.mlp_update(call, flat_grad, flat_param, state["momenta"], state["rms"], out=out)
        delta, new = self.net.step_flat(
            self.meta_params, state, flat_grad, flat_param, sizes, self.step_count, self.total_steps, features
        )
        for k, v in new.items():
            state[k].copy_(v)
        return delta

    def _direct_update(self, params: list[Tensor], loss: float | None) -> bool | None:
        """The fused kernel reading each `.grad` and stepping each parameter in place (loptim_mlp_direct): no flat
        copies of gradients and parameters and no separate pass to add the step. Float32 contiguous CPU tensors
        and no `maximize` only (a parameter without a gradient is skipped); the rest takes `_flat_update`."""
        state = self.flat_state
        if not fused.available(self.net.has_kernel, *state.values()):
            return None
        grads = [p.grad for p in params]
        for p, g in zip(params, grads):
            if p.dtype != torch.float32 or not p.is_contiguous():
                return None
            if g is not None and (g.dtype != torch.float32 or not g.is_contiguous()):
                return None
        lr, decay = [], []
        for group in self.param_groups:
            if group["maximize"]:
                return None
            rate, weight_decay = float(group["lr"]), float(group["weight_decay"])
            lr += [rate] * len(group["params"])
            decay += [1.0 - rate * weight_decay] * len(group["params"])
        stats, features = self._loss_inputs(loss)
        call = self._kernel_call([p.numel() for p in params], features)
        done = fused.mlp_update_direct(call, params, grads, lr, decay, state["momenta"], state["rms"])
        if done:
            self._loss_stats = stats
            stepped = [p for p, g in zip(params, grads) if g is not None]
            torch.autograd.graph.increment_version(stepped)  # as torch.optim's in-place ops do
        return done

    def _loss_inputs(self, loss: float | None) -> tuple[list[float] | None, list[float] | None]:
        """The loss statistics after this step's loss and the features the core reads from them (weights with
        loss features; None, None for the others). The caller keeps the statistics once the step is taken."""
        if not self.net.config.loss_features:
            return None, None
        stats = generalist.loss_statistics(self._loss_stats, loss)
        return stats, generalist.loss_features(stats)

    def _kernel_call(self, sizes: list[int], features: list[float] | None) -> fused.MLPKernelCall:
        """The kernel's arguments for this step; the offsets and the weights are kept between steps (rebuilt when
        the tensors or the meta-parameters change)."""
        if self._offsets is None or self._offsets[0] != sizes:
            self._offsets = (sizes, torch.tensor([0, *itertools.accumulate(sizes)], dtype=torch.int64))
        meta = self.meta_params
        if self._kernel_weights is None or self._kernel_weights[0] is not meta:  # new meta-parameters
            self._kernel_weights = (meta, self.net.kernel_weights(meta))
        weights, hyper = self.net.kernel_inputs(meta, self.step_count, self.total_steps, features,
                                                self._kernel_weights[1])  # fmt: skip
        config = self.net.config
        return fused.MLPKernelCall(config.design, config.hidden, self._offsets[1], weights, hyper, NORMALIZER_EPS,
                                   fused.threads_for(sum(sizes)))  # fmt: skip

    def _header_extra(self) -> dict[str, Any]:
        return {} if self._loss_stats is None else {"loss_stats": list(self._loss_stats)}

    def _load_header_extra(self, header: dict[str, Any]) -> None:
        stats = header.get("loss_stats")
        self._loss_stats = None if stats is None else [float(v) for v in stats]


def _from_card(config: dict) -> MLPOptimizerNet:
    return MLPOptimizerNet(MLPConfig(**config))


register_kind("mlp", _from_card)
