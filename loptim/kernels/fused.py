"""Calls into the fused CPU kernels (cpu.cpp): argument plumbing only. The constants and per-step terms come from
the optimizers (loptim/optimizers/mlp.py, mlp_generalist.py, lstm.py), whose pure updates are the reference."""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from loptim.kernels import load

MLP_HIDDEN = (4, 8, 16, 32)  # widths compiled into the kernel; others run the reference
LSTM_HIDDEN = (20,)
MLP_DESIGNS = {"metz2019": 0, "generalist": 1}  # the `design` argument of loptim_mlp
_POINTER = ctypes.c_void_p
_ARGTYPES = {
    "loptim_mlp": [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    + [_POINTER] * 14
    + [ctypes.c_float, ctypes.c_int],
    "loptim_lstm": [ctypes.c_int, ctypes.c_int64] + [_POINTER] * 12 + [ctypes.c_float, ctypes.c_float, ctypes.c_int],
}


MIN_COORDINATES_PER_THREAD = 1 << 15  # below this a second thread costs more in start-up than it saves


def threads_for(n: int) -> int:
    """Threads for an update of n coordinates: torch's setting, fewer for small models."""
    return max(1, min(torch.get_num_threads(), n // MIN_COORDINATES_PER_THREAD))


def available(supported: bool, *tensors: Tensor) -> bool:
    """Whether a kernel can run this update: a `supported` configuration (a compiled width), float32 contiguous
    CPU tensors, and a built library."""
    if not supported:
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
        return False
    return load("cpu") is not None


@functools.cache
def _entry(name: str):
    function = getattr(load("cpu"), name)
    function.argtypes, function.restype = _ARGTYPES[name], ctypes.c_int
    return function


def mlp_update(
    design: str,
    hidden: int,
    offsets: Tensor,
    grad: Tensor,
    param: Tensor,
    momenta: Tensor,
    rms: Tensor,
    weights: list[Tensor | None],
    hyper: list[float],
    normalizer_eps: float,
    threads: int,
) -> Tensor:
    """The MLP optimizer's update of DESIGN ("metz2019" | "generalist") in place on momenta and rms; the flat update.

    `offsets` (T + 1,) int64: where each tensor starts in the flat vector; `weights`: w1, b1 (already holding the
    per-step terms), w1_tensor (None for metz2019), w2, b2, w3, b3; `hyper` the design's constants (cpu.cpp)."""
    out = torch.empty_like(grad)
    hyper_tensor = torch.tensor(hyper, dtype=torch.float32)
    weights = [None if w is None else w.detach().to(torch.float32).contiguous() for w in weights]
    pointers = [0 if t is None else t.data_ptr() for t in (grad, param, momenta, rms, out, *weights, hyper_tensor)]
    code = _entry("loptim_mlp")(MLP_DESIGNS[design], hidden, grad.numel(), offsets.numel() - 1, offsets.data_ptr(),
                                *pointers, normalizer_eps, threads)  # fmt: skip
    if code != 0:
        raise RuntimeError(f"loptim_mlp returned {code}")
    return out


def lstm_update(
    hidden: int,
    grad: Tensor,
    state: dict[str, Tensor],
    weights: dict[str, Tensor],
    p: float,
    output_scale: float,
    threads: int,
) -> Tensor:
    """The L2L LSTM step on flat `grad`, state (h1, c1, h2, c2) updated in place; `weights` in lstm._scaled's
    layout (cell-input rows x2). Returns the flat update (output_scale x the output layer)."""
    out = torch.empty_like(grad)
    names = ("w1", "b1", "w2", "b2", "wout", "bout")
    tensors = [weights[k].detach().to(torch.float32).contiguous() for k in names]
    pointers = [t.data_ptr() for t in (grad, state["h1"], state["c1"], state["h2"], state["c2"], out, *tensors)]
    code = _entry("loptim_lstm")(hidden, grad.numel(), *pointers, p, output_scale, threads)
    if code != 0:
        raise RuntimeError(f"loptim_lstm returned {code}")
    return out
