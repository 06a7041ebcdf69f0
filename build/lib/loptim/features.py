"""Per-coordinate features shared by the learned optimizers, computed on all coordinates as one flat batch.

Metz et al. 2019 (Sec. 4 and the official `task_specific_learned_opt` code; learned_optimization's mlp_lopt):
gradient, parameter, momenta at several decays, an RMS accumulator and RMS-normalized terms, each normalized
per tensor by its second moment, plus training-progress features tanh(step / tau).
"""

from __future__ import annotations

import torch
from torch import Tensor

MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
RMS_DECAY = 0.999
RSQRT_EPS = 1e-6  # inside rsqrt(v + eps)
NORMALIZER_EPS = 1e-5  # x * rsqrt(mean(x^2) + eps) per tensor, as learned_optimization's _second_moment_normalizer
TIMESCALES = (1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
NUM_COORDINATE_FEATURES = 2 + len(MOMENTUM_DECAYS) + 2  # g, p, momenta, g*rsqrt(v), m_0.9*rsqrt(v)


def segment_ids(sizes: list[int]) -> Tensor:
    """For a flat vector made of tensors of `sizes`, the index of the tensor each coordinate belongs to."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _on(values: Tensor, data: list | tuple) -> Tensor:
    """A small constant tensor in `values`' dtype and device."""
    return torch.tensor(data, dtype=values.dtype, device=values.device)


def per_tensor_mean_square(values: Tensor, segments: Tensor | None, sizes: list[int]) -> Tensor:
    """(F, N) features -> (F, T) mean of squares over each tensor's coordinates (`segments` kept for callers)."""
    # One mean per contiguous tensor slice, not index_add plus a gather (docs/design.md, performance facts).
    return torch.stack([piece.square().mean(1) for piece in torch.split(values, sizes, dim=1)], dim=1)


def normalize_per_tensor(
    values: Tensor, segments: Tensor | None, sizes: list[int], eps: float = NORMALIZER_EPS
) -> Tensor:
    """Divide every feature by its root mean square over the tensor the coordinate belongs to."""
    scale = torch.rsqrt(per_tensor_mean_square(values, segments, sizes) + eps)
    counts = torch.tensor(sizes, device=values.device)
    return values * torch.repeat_interleave(scale, counts, dim=1, output_size=values.shape[1])


def accumulate(momenta: Tensor, rms: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """EMA updates: m_i <- b_i m_i + (1 - b_i) g for each decay, v <- 0.999 v + 0.001 g^2 (pure)."""
    decays = _on(grad, MOMENTUM_DECAYS).unsqueeze(1)
    momenta = decays * momenta + (1.0 - decays) * grad
    rms = RMS_DECAY * rms + (1.0 - RMS_DECAY) * grad * grad
    return momenta, rms


def coordinate_features(
    grad: Tensor, param: Tensor, momenta: Tensor, rms: Tensor, segments: Tensor, sizes: list[int]
) -> Tensor:
    """(10, N): g, p, six momenta, g * rsqrt(v + eps), m_0.9 * rsqrt(v + eps); each normalized per tensor."""
    rsqrt = torch.rsqrt(rms + RSQRT_EPS)
    m09 = momenta[MOMENTUM_DECAYS.index(0.9)]
    raw = torch.cat((grad.unsqueeze(0), param.unsqueeze(0), momenta, (grad * rsqrt).unsqueeze(0),
                     (m09 * rsqrt).unsqueeze(0)))  # fmt: skip
    return normalize_per_tensor(raw, segments, sizes)


def time_features(step: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """tanh(step / tau) for tau in TIMESCALES: the same for every coordinate, so a per-step bias (Metz 2019)."""
    return torch.tanh(step / torch.tensor(TIMESCALES, dtype=dtype, device=device))
