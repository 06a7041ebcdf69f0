"""The coordinate-wise LSTM optimizer of Andrychowicz et al. 2016 (L2L): functional core and torch.optim shell.

Two LSTM layers of 20 units (Sec. 3), weights shared across coordinates, hidden and cell state per coordinate,
input preprocessing with p = 10 (Appendix A), linear output scaled by 0.1: theta <- theta + 0.1 * out.
All coordinates of all tensors form one batch, processed in cache-sized chunks of columns of the (units, N) state,
so a chunk's rows are contiguous and every parameter tensor owns a column range (its live view in `opt.state`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from loptim.kernels import fused
from loptim.optimizers.core import State
from loptim.optimizers.flat import FlatOptimizer, add_flat, flatten
from loptim.pretrained import register_kind

GPU_CHUNK = 1 << 20  # coordinates per chunk on an accelerator: few kernel launches, gate buffers of ~320 MB


@dataclass(frozen=True)
class LSTMConfig:
    """Architecture and preprocessing; defaults from the paper (Sec. 3, Appendix A)."""

    kind: ClassVar[str] = "lstm"  # the weights kind (loptim.pretrained)

    hidden: int = 20
    preprocess: str = "log-sign"  # "log-sign": paper's (log|g|/p, sign g) with p = 10; "none": raw gradient
    p: float = 10.0
    output_scale: float = 0.1
    chunk: int = 4096  # coordinates per chunk in the eager path (docs/design.md, performance facts)

    def build(self, generator: torch.Generator | None = None) -> LSTMOptimizerNet:
        """The core with this architecture (its initial meta-parameters drawn from `generator`)."""
        return LSTMOptimizerNet(self, generator=generator)


def preprocess_gradient(grad: Tensor, p: float = 10.0) -> Tensor:
    """Appendix A: (log|g|/p, sign g) if |g| >= e^-p else (-1, e^p g); returns (2, *grad.shape)."""
    magnitude = grad.abs()
    large = magnitude >= math.exp(-p)
    log_part = torch.where(large, magnitude.clamp_min(math.exp(-p)).log() / p, torch.full_like(grad, -1.0))
    sign_part = torch.where(large, torch.sign(grad), grad * math.exp(p))
    return torch.stack((log_part, sign_part))


def _sigmoid_tanh(gates: Tensor, units: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gate activations with one sigmoid: the cell-input rows were pre-scaled by 2, tanh(z) = 2 sigmoid(2z) - 1."""
    i, f, o, g = torch.sigmoid(gates).chunk(4)  # one split (its backward is one cat, not four zero-filled slices)
    return i, f, o, g * 2.0 - 1.0


def lstm_chunk(
    weights: dict[str, Tensor], x: Tensor, state: tuple[Tensor, Tensor, Tensor, Tensor], units: int
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Two LSTM layers on a chunk, feature-major: x (inputs, C), states (units, C); returns out (C,).

    One GEMM per layer over [input; hidden] stacked (the copy is cheap next to the GEMM, and a K=2 GEMM alone is
    slower than the K=22 one: docs/design.md, performance facts).
    """
    h1, c1, h2, c2 = state
    i, f, o, g = _sigmoid_tanh(torch.addmm(weights["b1"], weights["w1"], torch.cat((x, h1))), units)
    c1 = f * c1 + i * g
    h1 = o * (torch.sigmoid(2.0 * c1) * 2.0 - 1.0)
    i, f, o, g = _sigmoid_tanh(torch.addmm(weights["b2"], weights["w2"], torch.cat((h1, h2))), units)
    c2 = f * c2 + i * g
    h2 = o * (torch.sigmoid(2.0 * c2) * 2.0 - 1.0)
    out = torch.addmm(weights["bout"], weights["wout"], h2)
    return out.squeeze(0), (h1, c1, h2, c2)


def _scaled(meta_params: dict[str, Tensor], units: int) -> dict[str, Tensor]:
    """Meta-parameters in the layout lstm_chunk wants: cell-input rows x2 (for the sigmoid tanh), biases as columns."""
    scale = torch.ones(4 * units, 1, dtype=meta_params["w1"].dtype, device=meta_params["w1"].device)
    scale[3 * units :] = 2.0
    return {
        "w1": meta_params["w1"] * scale,
        "b1": meta_params["b1"].unsqueeze(1) * scale,
        "w2": meta_params["w2"] * scale,
        "b2": meta_params["b2"].unsqueeze(1) * scale,
        "wout": meta_params["wout"],
        "bout": meta_params["bout"].unsqueeze(1),
    }


class LSTMOptimizerNet(nn.Module):
    """The learned optimizer: its nn.Parameters are the default meta-parameters; `update` is pure in them."""

    def __init__(self, config: LSTMConfig = LSTMConfig(), generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        units, inputs = config.hidden, 2 if config.preprocess == "log-sign" else 1
        bound = 1.0 / math.sqrt(units)  # torch.nn.LSTM's default init

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)

        # Gate rows in the order input, forget, output, cell-input; columns [input features; hidden state].
        self.w1, self.b1 = uniform(4 * units, inputs + units), uniform(4 * units)
        self.w2, self.b2 = uniform(4 * units, 2 * units), uniform(4 * units)
        self.wout, self.bout = uniform(1, units), nn.Parameter(torch.zeros(1))

    def meta_params(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())

    def init_state(self, params: dict[str, Tensor]) -> State:
        """Zero LSTM state for every coordinate of `params` (LearnedOptimizerCore), in the parameters' dtype."""
        first = next(iter(params.values()))
        return self.zero_state(sum(p.numel() for p in params.values()), dtype=first.dtype, device=first.device)

    def zero_state(
        self, num_coordinates: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> State:
        """Zero hidden and cell states, (units, N) each: a chunk is a column block, a parameter a column range."""
        zeros = torch.zeros(self.config.hidden, num_coordinates, dtype=dtype, device=device)
        return {"h1": zeros, "c1": zeros.clone(), "h2": zeros.clone(), "c2": zeros.clone()}

    def _inputs(self, grad: Tensor) -> Tensor:
        if self.config.preprocess == "log-sign":
            return preprocess_gradient(grad, self.config.p)
        return grad.unsqueeze(0)

    def step_flat(
        self,
        meta_params: dict[str, Tensor],
        state: State,
        grad: Tensor,
        inplace: bool = False,
        chunk: int | None = None,
        threads: int = 1,
        differentiable: bool = True,
    ) -> tuple[Tensor, State]:
        """Flat gradient (N,) -> (flat update (N,), new state); differentiable in meta_params and state when
        `differentiable`, else the eager path: no graph, gate buffers chunk by chunk, up to `threads` threads.

        Pure unless `inplace` (used by the torch.optim shell, which owns its state): then the state tensors are
        overwritten chunk by chunk instead of reallocated.
        """
        units, n = self.config.hidden, grad.shape[0]
        chunk = max(1, min(chunk or self.config.chunk, n))
        bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
        x = self._inputs(grad)  # (inputs, N)
        weights = _scaled(meta_params, units)
        names = ("h1", "c1", "h2", "c2")
        if inplace and differentiable:
            raise ValueError("an in-place update cannot be differentiable: pass differentiable=False")
        if differentiable:  # meta-training by backprop: new state tensors, chunk by chunk
            outs, pieces = [], {name: [] for name in names}
            for lo, hi in bounds:
                out_k, new = lstm_chunk(weights, x[:, lo:hi], tuple(state[name][:, lo:hi] for name in names), units)
                outs.append(out_k)
                for name, value in zip(names, new):
                    pieces[name].append(value)
            out = torch.cat(outs)
            new_state = {name: torch.cat(pieces[name], dim=1) for name in names}
        else:  # eager path: the gate buffers of one chunk stay in cache; threads split the chunks
            out = torch.empty(n, dtype=grad.dtype, device=grad.device)
            new_state = state if inplace else {name: torch.empty_like(state[name]) for name in names}

            @torch.no_grad()  # grad mode is per thread: each worker sets its own
            def work(ranges: list[tuple[int, int]]) -> None:
                if threads > 1:
                    torch.set_num_threads(1)  # this worker thread's ops stay single-threaded
                for lo, hi in ranges:
                    current = tuple(state[name][:, lo:hi] for name in names)
                    out[lo:hi], new = lstm_chunk(weights, x[:, lo:hi], current, units)
                    for name, value in zip(names, new):
                        new_state[name][:, lo:hi] = value

            threads = max(1, min(threads, len(bounds)))
            if threads > 1:  # one chunk per op call is too small to split across cores; whole chunks are not
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(work, [bounds[i::threads] for i in range(threads)]))
            else:
                work(bounds)
        return self.config.output_scale * out, new_state

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
        """theta_{t+1} = theta_t + 0.1 * LSTM(preprocess(grad)); pure in meta_params (Eq. 1 of the paper; the
        loss is not an input)."""
        delta, state = self.step_flat(meta_params, state, flatten(grads), differentiable=differentiable)
        return add_flat(params, delta), state


class LSTMOptimizer(FlatOptimizer):
    """`loptim.LSTMOptimizer(model.parameters())`: the L2L optimizer as a torch.optim class, shipped weights by default.

    `weights`: a shipped name (default "lstm-mnist"), a .safetensors path, or None for an untrained network drawn
    from a fixed seed (the global RNG is never touched). `lr` multiplies the learned step (dimensionless, default 1);
    the rest of the torch.optim semantics and the non-finite policy are `FlatOptimizer`'s. The LSTM state is
    float32 (float64 for float64 parameters): 16 floats per hidden unit and coordinate pair, 80 per coordinate.
    """

    name = "lstm"
    default_weights = "lstm-mnist"

    @classmethod
    def untrained(cls, generator: torch.Generator) -> LSTMOptimizerNet:
        return LSTMOptimizerNet(generator=generator)

    def _flat_update(self, flat_grad: Tensor, params: list[Tensor], loss: float | None = None) -> Tensor:
        config = self.net.config
        supported = config.hidden in fused.LSTM_HIDDEN and config.preprocess == "log-sign"
        if fused.available(supported, flat_grad, *self.flat_state.values()):  # the fused CPU kernel of step_flat
            weights = _scaled(self.meta_params, config.hidden)
            out = self._buffer("delta", flat_grad.numel(), flat_grad.dtype, flat_grad.device)
            return fused.lstm_update(config.hidden, flat_grad, self.flat_state, weights, config.p, config.output_scale,
                                     fused.threads_for(flat_grad.numel()), out=out)  # fmt: skip
        on_cpu = flat_grad.device.type == "cpu"
        chunk = self.net.config.chunk if on_cpu else GPU_CHUNK
        threads = fused.threads_for(flat_grad.numel()) if on_cpu else 1
        delta, self.flat_state = self.net.step_flat(
            self.meta_params,
            self.flat_state,
            flat_grad,
            inplace=True,
            chunk=chunk,
            threads=threads,
            differentiable=False,
        )
        return delta


def _from_card(config: dict) -> LSTMOptimizerNet:
    config = {k: v for k, v in config.items() if k != "chunk"}  # a speed setting, not part of the weights
    return LSTMOptimizerNet(LSTMConfig(**config))


register_kind("lstm", _from_card)
