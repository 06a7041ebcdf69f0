"""The per-parameter MLP optimizer of Metz et al. 2019: functional core and torch.optim shell.

Per coordinate: 10 features (loptim.features) -> 32 -> 32 (ReLU) -> (d, m); update = -0.001 * d * exp(0.001 * m)
(Sec. 4 of the paper; two hidden layers of 32 as in learned_optimization's mlp_lopt). The 11 training-progress
features are the same for every coordinate, so they enter as a per-step bias of the first layer (DESIGN.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from loptim.features import (
    MOMENTUM_DECAYS,
    NUM_COORDINATE_FEATURES,
    TIMESCALES,
    accumulate,
    coordinate_features,
    segment_ids,
    time_features,
)
from loptim.optimizers.flat import FlatOptimizer, add_flat, flatten

State = dict[str, Tensor]


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and output scaling; defaults from the paper and DESIGN.md."""

    hidden: int = 32
    step_mult: float = 1e-3  # update = -step_mult * d * exp(exp_mult * m)
    exp_mult: float = 1e-3


class MLPOptimizerNet(nn.Module):
    """The learned optimizer: its nn.Parameters are the default meta-parameters; `update` is pure in them."""

    def __init__(self, config: MLPConfig = MLPConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden

        def fan_in(*shape: int) -> nn.Parameter:  # LeCun normal, as haiku's default initializer
            return nn.Parameter(torch.randn(*shape, generator=generator) / math.sqrt(shape[-1]))

        self.w1 = fan_in(hidden, NUM_COORDINATE_FEATURES)
        self.w1_time = fan_in(hidden, len(TIMESCALES))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2, self.b2 = fan_in(hidden, hidden), nn.Parameter(torch.zeros(hidden))
        self.w3, self.b3 = fan_in(2, hidden), nn.Parameter(torch.zeros(2))

    def meta_params(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())

    def init_state(self, params: dict[str, Tensor]) -> State:
        first = next(iter(params.values()))
        return self.zero_state(sum(p.numel() for p in params.values()), dtype=first.dtype)

    def zero_state(self, num_coordinates: int, dtype: torch.dtype = torch.float32) -> State:
        """Six momenta and the RMS accumulator: 28 bytes per fp32 parameter."""
        return {
            "momenta": torch.zeros(len(MOMENTUM_DECAYS), num_coordinates, dtype=dtype),
            "rms": torch.zeros(num_coordinates, dtype=dtype),
        }

    def step_flat(
        self, meta_params: dict[str, Tensor], state: State, grad: Tensor, param: Tensor, sizes: list[int], step: int
    ) -> tuple[Tensor, State]:
        """Flat gradient and parameters (N,) of tensors of `sizes` -> (flat update, new state); pure."""
        momenta, rms = accumulate(state["momenta"], state["rms"], grad)
        features = coordinate_features(grad, param, momenta, rms, segment_ids(sizes), sizes)
        bias1 = meta_params["b1"] + meta_params["w1_time"] @ time_features(step, grad.dtype)
        hidden = torch.relu(torch.addmm(bias1.unsqueeze(1), meta_params["w1"], features))
        hidden = torch.relu(torch.addmm(meta_params["b2"].unsqueeze(1), meta_params["w2"], hidden))
        direction, magnitude = torch.addmm(meta_params["b3"].unsqueeze(1), meta_params["w3"], hidden)
        delta = -self.config.step_mult * direction * torch.exp(self.config.exp_mult * magnitude)
        return delta, {"momenta": momenta, "rms": rms}

    def update(
        self,
        meta_params: dict[str, Tensor],
        state: State,
        params: dict[str, Tensor],
        grads: dict[str, Tensor],
        *,
        step: int = 0,
        total_steps: int = 0,
    ) -> tuple[dict[str, Tensor], State]:
        """theta <- theta - 0.001 d exp(0.001 m), (d, m) = MLP(features); pure and differentiable in meta_params."""
        sizes = [p.numel() for p in params.values()]
        delta, state = self.step_flat(meta_params, state, flatten(grads), flatten(params), sizes, step)
        return add_flat(params, delta), state


class MLPOptimizer(FlatOptimizer):
    """`loptim.MLPOptimizer(model.parameters(), weights=...)`: the Metz 2019 optimizer as a torch.optim class."""

    def __init__(self, params: Iterable[Tensor], weights: str | None = None, *, total_steps: int = 0) -> None:
        from loptim.pretrained import load_learned

        net = load_learned("mlp", weights) if weights else MLPOptimizerNet()
        super().__init__(params, net, name="mlp", weights=weights)
        self.sizes = [p.numel() for p in self.params]

    def _init_flat_state(self, num_coordinates: int) -> State:
        return self.net.zero_state(num_coordinates)

    def _flat_update(self, flat_grad: Tensor) -> Tensor:
        flat_param = torch.cat([p.detach().reshape(-1) for p in self.params]).to(flat_grad.dtype)
        delta, self.flat_state = self.net.step_flat(
            self.meta_params, self.flat_state, flat_grad, flat_param, self.sizes, self.step_count
        )
        return delta
