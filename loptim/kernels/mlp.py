"""The fused CPU kernel of the MLP optimizer's update (mlp_cpu.cpp): argument plumbing only; the designs' constants
and per-step terms come from loptim/optimizers/mlp.py and mlp_generalist.py, whose pure updates are the reference."""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from loptim.kernels import load

HIDDEN_SIZES = (4, 8, 16, 32)  # widths compiled into the kernel; others run the reference
_POINTER = ctypes.c_void_p
_ARGTYPES = {
    "loptim_mlp_metz": [ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    + [_POINTER] * 13
    + [ctypes.c_float, ctypes.c_int],
    "loptim_mlp_generalist": [ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    + [_POINTER] * 14
    + [ctypes.c_float, ctypes.c_int],
}


def available(hidden: int, *tensors: Tensor) -> bool:
    """Whether the kernel can run this update: a compiled width, float32 contiguous CPU tensors, a built library."""
    if hidden not in HIDDEN_SIZES:
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
        return False
    return load("mlp_cpu") is not None


def _entry(name: str):
    function = getattr(load("mlp_cpu"), name)
    function.argtypes, function.restype = _ARGTYPES[name], ctypes.c_int
    return function


def fused_update(
    entry: str,
    hidden: int,
    offsets: Tensor,
    grad: Tensor,
    param: Tensor,
    momenta: Tensor,
    rms: Tensor,
    weights: list[Tensor],
    hyper: list[float],
    normalizer_eps: float,
    threads: int,
) -> Tensor:
    """Run ENTRY ("loptim_mlp_metz" | "loptim_mlp_generalist") in place on momenta and rms; the flat update.

    `offsets` (T + 1,) int64: where each tensor starts in the flat vector; `weights` in the entry's order (float32,
    contiguous; the first layer's bias already holds the per-step terms); `hyper` the entry's constants."""
    out = torch.empty_like(grad)
    hyper_tensor = torch.tensor(hyper, dtype=torch.float32)
    weights = [w.detach().to(torch.float32).contiguous() for w in weights]
    pointers = [t.data_ptr() for t in (grad, param, momenta, rms, out, *weights, hyper_tensor)]
    code = _entry(entry)(
        hidden, grad.numel(), offsets.numel() - 1, offsets.data_ptr(), *pointers, normalizer_eps, threads
    )
    if code != 0:
        raise RuntimeError(f"{entry} returned {code}")
    return out
