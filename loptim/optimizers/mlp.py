"""The per-parameter MLP optimizer of Metz et al. 2019: functional core and torch.optim shell.

Per coordinate: 10 features (loptim.features) -> 32 -> 32 (ReLU) -> (d, m); update = -0.001 * d * exp(0.001 * m)
(Sec. 4 of the paper; two hidden layers of 32 as in learned_optimization's mlp_lopt). The 11 training-progress
features are the same for every coordinate, so they enter as a per-step bias of the first layer (docs/design.md,
Metz et al. 2019).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

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
from loptim.optimizers import mlp_generalist as generalist
from loptim.optimizers.core import State
from loptim.optimizers.flat import FlatOptimizer, add_flat, flatten
from loptim.pretrained import register_kind


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and output scaling; defaults from the paper (Sec. 4; docs/design.md)."""

    kind: ClassVar[str] = "mlp"  # the weights kind (loptim.pretrained)

    hidden: int = 32
    step_mult: float = 1e-3  # update = -step_mult * d * exp(exp_mult * m)
    exp_mult: float = 1e-3
    chunk: int = 8192  # coordinates per chunk in the eager path (the hidden buffers of one chunk stay in cache)
    design: str = "metz2019"  # "metz2019" (the paper) | "generalist" (loptim.optimizers.mlp_generalist)
    nominal_lr: float = 1e-3  # generalist: the Adam step the network corrects (Adam's default learning rate)

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"MLPConfig.design must be one of {', '.join(DESIGNS)}, got {self.design!r}")

    def build(self, generator: torch.Generator | None = None) -> MLPOptimizerNet:
        """The core with this architecture (its initial meta-parameters drawn from `generator`)."""
        return MLPOptimizerNet(self, generator=generator)


DESIGNS = ("metz2019", "generalist")


def generalist_config(hidden: int = 8) -> MLPConfig:
    """The generalist design's defaults (tiny network, nominal Adam step; docs/generalist.md)."""
    return MLPConfig(hidden=hidden, design="generalist")


MIN_CHUNKS_PER_THREAD = 32


@dataclass(frozen=True)
class ChunkPlan:
    """Chunks of the flat coordinate vector that never straddle two tensors, so each chunk's per-tensor
    normalizer can be folded into the first layer's weights (docs/design.md, performance facts)."""

    starts: list[int]
    ends: list[int]
    owners: list[int]  # index of the tensor each chunk lies in (read per chunk: a list, no tensor indexing)
    tensor_of_chunk: Tensor  # the same as a tensor, for the per-tensor reduction
    sizes: list[int]

    @staticmethod
    def build(sizes: list[int], chunk: int) -> ChunkPlan:
        starts, ends, owners, offset = [], [], [], 0
        for index, size in enumerate(sizes):
            for start in range(offset, offset + size, chunk):
                starts.append(start)
                ends.append(min(start + chunk, offset + size))
                owners.append(index)
            offset += size
        return ChunkPlan(starts, ends, owners, torch.tensor(owners, dtype=torch.long), list(sizes))


class MLPOptimizerNet(nn.Module):
    """The learned optimizer: its nn.Parameters are the default meta-parameters; `update` is pure in them."""

    def __init__(self, config: MLPConfig = MLPConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden

        def fan_in(*shape: int) -> nn.Parameter:  # LeCun normal, as haiku's default initializer
            return nn.Parameter(torch.randn(*shape, generator=generator) / math.sqrt(shape[-1]))

        if config.design == "generalist":  # the output layer and the schedule start at zero: exactly Adam
            for name, shape in generalist.meta_param_shapes(hidden).items():
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
        first = next(iter(params.values()))
        return self.zero_state(sum(p.numel() for p in params.values()), dtype=first.dtype, device=first.device)

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
    ) -> tuple[Tensor, State]:
        """Flat gradient and parameters (N,) of tensors of `sizes` -> (flat update, new state); pure."""
        if self.config.design == "generalist":
            return generalist.update(meta_params, state, grad, param, sizes, step, total_steps, self.config.nominal_lr)
        momenta, rms = accumulate(state["momenta"], state["rms"], grad)
        features = coordinate_features(grad, param, momenta, rms, segment_ids(sizes), sizes)
        bias1 = meta_params["b1"] + meta_params["w1_time"] @ time_features(step, grad.dtype, grad.device)
        hidden = torch.relu(torch.addmm(bias1.unsqueeze(1), meta_params["w1"], features))
        hidden = torch.relu(torch.addmm(meta_params["b2"].unsqueeze(1), meta_params["w2"], hidden))
        direction, magnitude = torch.addmm(meta_params["b3"].unsqueeze(1), meta_params["w3"], hidden)
        delta = -self.config.step_mult * direction * torch.exp(self.config.exp_mult * magnitude)
        return delta, {"momenta": momenta, "rms": rms}

    @torch.no_grad()
    def step_flat_eager(
        self,
        meta_params: dict[str, Tensor],
        state: State,
        grad: Tensor,
        param: Tensor,
        plan: ChunkPlan,
        step: int,
        scratch: Tensor,
    ) -> Tensor:
        """The same update as `step_flat`, for the torch.optim shell: state updated in place, chunked, threaded.

        Pass 1 updates the accumulators and writes the raw features feature-major into `scratch` (11, N; the last
        row is ones) while summing their squares per chunk; pass 2 runs the MLP per chunk with the per-tensor
        normalizer and the bias folded into the first layer ([W1 diag(s_t), b1 + W_time t]), so no normalized
        copy of the features is made and the first layer is one plain GEMM (docs/design.md, performance facts).
        """
        momenta, rms, n_chunks = state["momenta"], state["rms"], len(plan.starts)
        weights = torch.tensor([1.0 - d for d in MOMENTUM_DECAYS], dtype=grad.dtype).unsqueeze(1)
        chunk_sums = torch.empty(n_chunks, NUM_COORDINATE_FEATURES, dtype=grad.dtype)
        m09 = MOMENTUM_DECAYS.index(0.9)
        hidden = self.config.hidden

        def features(chunks: range) -> None:
            for k in chunks:
                lo, hi = plan.starts[k], plan.ends[k]
                g, x, m = grad[lo:hi], scratch[:, lo:hi], momenta[:, lo:hi]
                m.lerp_(g.expand_as(m), weights)
                v = rms[lo:hi]
                v.mul_(RMS_DECAY).addcmul_(g, g, value=1.0 - RMS_DECAY)
                x[0].copy_(g)
                x[1].copy_(param[lo:hi])
                x[2:8].copy_(m)
                torch.add(v, RSQRT_EPS, out=x[8]).rsqrt_()
                torch.mul(x[8], m[m09], out=x[9])
                x[8].mul_(g)
                torch.linalg.vector_norm(x[:NUM_COORDINATE_FEATURES], dim=1, out=chunk_sums[k]).square_()

        delta = torch.empty_like(grad)
        sums = torch.zeros(len(plan.sizes), NUM_COORDINATE_FEATURES, dtype=grad.dtype)
        bias1 = (meta_params["b1"] + meta_params["w1_time"] @ time_features(step, grad.dtype)).unsqueeze(1)
        b2, b3 = meta_params["b2"].unsqueeze(1), meta_params["b3"].unsqueeze(1)
        w2, w3 = meta_params["w2"], meta_params["w3"]
        folded: list[Tensor] = []

        def mlp(chunks: range) -> None:
            width = max((plan.ends[k] - plan.starts[k] for k in chunks), default=0)
            h1 = torch.empty(hidden, width, dtype=grad.dtype)
            h2 = torch.empty(hidden, width, dtype=grad.dtype)
            out = torch.empty(2, width, dtype=grad.dtype)
            for k in chunks:
                lo, hi = plan.starts[k], plan.ends[k]
                c = hi - lo
                a, b, o = h1[:, :c], h2[:, :c], out[:, :c]
                torch.mm(folded[0][plan.owners[k]], scratch[:, lo:hi], out=a).relu_()
                torch.addmm(b2, w2, a, out=b).relu_()
                torch.addmm(b3, w3, b, out=o)
                torch.mul(o[1], self.config.exp_mult, out=delta[lo:hi]).exp_().mul_(o[0])
                delta[lo:hi].mul_(-self.config.step_mult)

        # Threads pay off only with many chunks each (docs/design.md, performance facts).
        threads = max(1, min(torch.get_num_threads(), n_chunks // MIN_CHUNKS_PER_THREAD))

        def run(work) -> None:
            if threads > 1:

                def single(chunks: range) -> None:
                    torch.set_num_threads(1)
                    work(chunks)

                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(single, [range(i, n_chunks, threads) for i in range(threads)]))
            else:
                work(range(n_chunks))

        run(features)
        sums.index_add_(0, plan.tensor_of_chunk, chunk_sums)
        sizes = torch.tensor(plan.sizes, dtype=grad.dtype).unsqueeze(1)
        scale = torch.rsqrt(sums / sizes + NORMALIZER_EPS)  # (T, 10)
        first = meta_params["w1"].unsqueeze(0) * scale.unsqueeze(1)  # (T, 32, 10)
        folded.append(torch.cat((first, bias1.expand(len(plan.sizes), -1, -1)), dim=2))  # bias as an 11th column
        run(mlp)
        return delta

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
    ) -> tuple[dict[str, Tensor], State]:
        """theta <- theta + the step of `step_flat` (Metz 2019: -0.001 d exp(0.001 m), (d, m) = MLP(features));
        pure and differentiable in meta_params."""
        sizes = [p.numel() for p in params.values()]
        delta, state = self.step_flat(meta_params, state, flatten(grads), flatten(params), sizes, step, total_steps)
        return add_flat(params, delta), state


class MLPOptimizer(FlatOptimizer):
    """`loptim.MLPOptimizer(model.parameters())`: the Metz 2019 optimizer (or its generalist design, by the
    weights' config) as a torch.optim class; `total_steps` feeds the generalist's progress features.

    `weights`: a shipped name (default "mlp-mnist"), a .safetensors path, or None for an untrained network drawn
    from a fixed seed (the global RNG is never touched). `lr` multiplies the learned step (dimensionless, default 1);
    the rest of the torch.optim semantics and the non-finite policy are `FlatOptimizer`'s. State: six momenta and
    an RMS accumulator per coordinate in float32 (float64 for float64 parameters).
    """

    name = "mlp"
    default_weights = "mlp-mnist"
    _plan: tuple[list[int], ChunkPlan, Tensor] | None = None  # sizes, chunks, feature scratch (44 B/param)

    @classmethod
    def untrained(cls, generator: torch.Generator) -> MLPOptimizerNet:
        return MLPOptimizerNet(generator=generator)

    def _flat_update(self, flat_grad: Tensor, params: list[Tensor]) -> Tensor:
        flat_param = torch.cat([p.detach().reshape(-1) for p in params]).to(flat_grad.dtype)
        sizes = [p.numel() for p in params]
        whole = flat_grad.device.type != "cpu" or self.net.config.design != "metz2019"
        if whole:  # one whole-batch pass of the pure update: few kernel launches
            delta, new = self.net.step_flat(
                self.meta_params, self.flat_state, flat_grad, flat_param, sizes, self.step_count, self.total_steps
            )
            for k, v in new.items():
                self.flat_state[k].copy_(v)
            return delta
        if self._plan is None or self._plan[0] != sizes or self._plan[2].dtype != flat_grad.dtype:
            scratch = torch.ones(NUM_COORDINATE_FEATURES + 1, len(flat_grad), dtype=flat_grad.dtype)
            self._plan = (sizes, ChunkPlan.build(sizes, self.net.config.chunk), scratch)
        _, plan, scratch = self._plan
        return self.net.step_flat_eager(
            self.meta_params, self.flat_state, flat_grad, flat_param, plan, self.step_count, scratch
        )


def _from_card(config: dict) -> MLPOptimizerNet:
    return MLPOptimizerNet(MLPConfig(**config))


register_kind("mlp", _from_card)
