"""Calls into the fused CPU kernels (cpu.cpp): argument plumbing only. The constants and per-step terms come from
the optimizers (loptim/optimizers/mlp.py, mlp_generalist.py, lstm.py), whose pure updates are the reference."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass

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
    "loptim_mlp_direct": [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    + [_POINTER] * 15
    + [ctypes.c_float, ctypes.c_int],
    "loptim_lstm": [ctypes.c_int, ctypes.c_int64] + [_POINTER] * 12 + [ctypes.c_float, ctypes.c_float, ctypes.c_int],
    "loptim_lhopt_moments": [ctypes.c_int64]
    + [_POINTER] * 6
    + [ctypes.c_int, ctypes.c_int]
    + [_POINTER] * 4
    + [ctypes.c_int],
    "loptim_lhopt_apply": [ctypes.c_int64] + [_POINTER] * 5 + [ctypes.c_int] + [_POINTER] * 3 + [ctypes.c_int],
}
LHOPT_SUMS = 10  # per-tensor sums of loptim_lhopt_moments (cpu.cpp; features.stats_from_sums reads them)


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


@dataclass(frozen=True)
class MLPKernelCall:
    """What both MLP kernels take besides the tensors they step: the design ("metz2019" | "generalist"), its
    width, `offsets` (T + 1,) int64 (where each tensor starts in the flat state), `weights` w1, b1 (already holding
    the per-step terms), w1_tensor (None for metz2019), w2, b2, w3, b3 as float32 contiguous CPU tensors, `hyper`
    the design's constants for this step (cpu.cpp), the normalizer's epsilon and the thread count."""

    design: str
    hidden: int
    offsets: Tensor
    weights: list[Tensor | None]
    hyper: list[float]
    normalizer_eps: float
    threads: int

    def head(self) -> list:
        """The arguments both entry points start with: design, width, coordinates, tensors, offsets."""
        return [MLP_DESIGNS[self.design], self.hidden, int(self.offsets[-1]), self.offsets.numel() - 1,
                self.offsets.data_ptr()]  # fmt: skip

    def tail(self) -> list:
        """The arguments both end with: the weights, the constants, the epsilon, the threads."""
        return [*_weight_pointers(self.weights), _array(ctypes.c_float, self.hyper), self.normalizer_eps, self.threads]


def mlp_update(call: MLPKernelCall, grad: Tensor, param: Tensor, momenta: Tensor, rms: Tensor,
               out: Tensor | None = None) -> Tensor:  # fmt: skip
    """The MLP optimizer's update in place on momenta and rms, from flat `grad` and `param`; the flat update, written
    to `out` (a fresh tensor when None)."""
    out = torch.empty_like(grad) if out is None else out
    pointers = [t.data_ptr() for t in (grad, param, momenta, rms, out)]
    code = _entry("loptim_mlp")(*call.head(), *pointers, *call.tail())
    if code != 0:
        raise RuntimeError(f"loptim_mlp returned {code}" + (" (a non-finite gradient)" if code == 1 else ""))
    return out


def mlp_update_direct(
    call: MLPKernelCall,
    params: list[Tensor],
    grads: list[Tensor | None],
    lr: list[float],
    decay: list[float],
    momenta: Tensor,
    rms: Tensor,
) -> bool:
    """`mlp_update` read from each parameter's own gradient and applied to it in place, p <- decay p + lr D per
    tensor, without flat copies: float32 contiguous CPU `params` and `grads` in the order of the offsets (a None
    gradient: that tensor and its state are left as they are). Returns False, with nothing changed, when a
    gradient entry is not finite; True after the step."""
    code = _entry("loptim_mlp_direct")(
        *call.head(),
        _array(_POINTER, [p.data_ptr() for p in params]),
        _array(_POINTER, [0 if g is None else g.data_ptr() for g in grads]),
        _array(ctypes.c_float, lr),
        _array(ctypes.c_float, decay),
        momenta.data_ptr(),
        rms.data_ptr(),
        *call.tail(),
    )
    if code not in (0, 1):
        raise RuntimeError(f"loptim_mlp_direct returned {code}")
    return code == 0


def _weight_pointers(weights: list[Tensor | None]) -> list[int]:
    """Pointers to the network's weights (0 for an absent one). They must be float32 and contiguous, as the shells'
    cached `kernel_weights` are: a converted copy would be freed before the kernel reads it."""
    pointers = []
    for w in weights:
        if w is not None and (w.dtype != torch.float32 or not w.is_contiguous() or w.device.type != "cpu"):
            raise ValueError("the kernel's weights must be float32 contiguous CPU tensors (kernel_weights makes them)")
        pointers.append(0 if w is None else w.data_ptr())
    return pointers


def lstm_update(
    hidden: int,
    grad: Tensor,
    state: dict[str, Tensor],
    weights: dict[str, Tensor],
    p: float,
    output_scale: float,
    threads: int,
    out: Tensor | None = None,
) -> Tensor:
    """The L2L LSTM step on flat `grad`, state (h1, c1, h2, c2) updated in place; `weights` in lstm._scaled's
    layout (cell-input rows x2). Returns the flat update (output_scale x the output layer)."""
    out = torch.empty_like(grad) if out is None else out
    names = ("w1", "b1", "w2", "b2", "wout", "bout")
    tensors = [weights[k].detach().to(torch.float32).contiguous() for k in names]
    pointers = [t.data_ptr() for t in (grad, state["h1"], state["c1"], state["h2"], state["c2"], out, *tensors)]
    code = _entry("loptim_lstm")(hidden, grad.numel(), *pointers, p, output_scale, threads)
    if code != 0:
        raise RuntimeError(f"loptim_lstm returned {code}")
    return out


def _array(kind: type, values: list) -> ctypes.Array:
    """A C array of `values` (cheaper than a tensor for the few numbers a call takes)."""
    return (kind * len(values))(*values)


def lhopt_step(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg: list[Tensor],
    exp_avg_sq: list[Tensor],
    constants: list[float],
    adamax: bool,
    stats: bool,
    decay_in_update: list[float],
    learning_rates: Callable[[Tensor], tuple[list[float], list[float]]] | tuple[list[float], list[float]],
    threads: int,
) -> Tensor:
    """LHOPT's inner AdamW step (cpu.cpp, loptim_lhopt_*) on float32 CPU tensors, in place on the parameters and
    moments; returns the per-tensor sums (T, LHOPT_SUMS) float64.

    `constants`: clip coefficient, beta1, 1 - beta1, beta2, 1 - beta2, sqrt(c2), eps, c1. `learning_rates`: the
    per-tensor (lr, decay) lists, p <- decay p - lr u; a function of the sums when they depend on them (the trust
    ratio: two passes), else the lists themselves (one pass)."""
    n = len(params)
    sizes = _array(ctypes.c_int64, [p.numel() for p in params])
    lists = (params, grads, exp_avg, exp_avg_sq)
    p_ptr, g_ptr, m_ptr, v_ptr = (_array(_POINTER, [t.data_ptr() for t in ts]) for ts in lists)
    sums = torch.empty(n, LHOPT_SUMS, dtype=torch.float64)
    hyper = _array(ctypes.c_float, constants)
    in_update = _array(ctypes.c_float, decay_in_update)
    one_pass = not callable(learning_rates)
    lr, decay = (_array(ctypes.c_float, x) for x in learning_rates) if one_pass else (None, None)
    code = _entry("loptim_lhopt_moments")(n, sizes, p_ptr, g_ptr, m_ptr, v_ptr, hyper, int(adamax), int(stats),
                                          in_update, lr, decay, sums.data_ptr(), threads)  # fmt: skip
    if code != 0:
        raise RuntimeError(f"loptim_lhopt_moments returned {code}")
    if not one_pass:
        lr, decay = (_array(ctypes.c_float, x) for x in learning_rates(sums))
        code = _entry("loptim_lhopt_apply")(n, sizes, p_ptr, m_ptr, v_ptr, hyper, int(adamax), in_update, lr, decay,
                                            threads)  # fmt: skip
        if code != 0:
            raise RuntimeError(f"loptim_lhopt_apply returned {code}")
    return sums
