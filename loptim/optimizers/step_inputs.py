"""What the three learned optimizers' `step()` accepts, and the checks they share at that boundary.

A loss may arrive as `step(closure)` (torch.optim), `step(loss)` (the loss as the first argument, PyLO's
convention) or `step(loss=...)`. Hyperparameters are validated once here so every shell gives the same errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from loptim.errors import DivergedError, LoptimError

NONFINITE_POLICIES = ("raise", "skip")
Loss = Tensor | float | None


class MissingLossError(LoptimError, ValueError):
    """The optimizer reads each step's training loss (LHOPT's policy, a generalist with loss features)."""


def missing_loss(name: str) -> MissingLossError:
    return MissingLossError(
        f"{name} needs the training loss: call step(closure), step(loss), step(loss=loss), or "
        "opt.observe_loss(loss) before step() (loptim.integrations has Lightning and Hugging Face glue)"
    )


def split_step_args(closure_or_loss: Callable[[], Any] | Tensor | float | None, loss: Loss) -> tuple[Any, Loss]:
    """(closure, loss) from step's arguments: a callable first argument is a closure, anything else a loss."""
    if closure_or_loss is None or callable(closure_or_loss):
        return closure_or_loss, loss
    if loss is not None:
        raise TypeError("step() got a loss both as its first argument and as loss=; pass it once")
    if not isinstance(closure_or_loss, Tensor | float | int):
        raise TypeError(
            f"step() takes a closure, a loss tensor or a float, got {type(closure_or_loss).__name__}: "
            "call step(closure), step(loss) or step(loss=loss)"
        )
    return None, closure_or_loss


def run_closure(closure: Callable[[], Any] | None) -> Any:
    """The closure's result, computed with gradients enabled (as torch.optim does); None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def loss_value(loss: Loss) -> float | None:
    """A loss as a Python float (one host synchronization for a device tensor)."""
    if loss is None:
        return None
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


def check_hyperparameters(name: str, *, lr: float, weight_decay: float, nonfinite: str) -> None:
    """One-line errors for values torch.optim would also refuse, and for an unknown non-finite policy."""
    if not (isinstance(lr, int | float) and lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"{name}: lr must be a finite number >= 0, got {lr!r}")
    if not (isinstance(weight_decay, int | float) and weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"{name}: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"{name}: nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")


def check_dense(name: str, params: Iterable[Tensor]) -> None:
    """Sparse gradients are refused with a one-line error, as torch.optim.Adam refuses them."""
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            raise RuntimeError(
                f"{name} does not support sparse gradients; build the layer with sparse=False "
                "(e.g. nn.Embedding(..., sparse=False)) or use torch.optim.SparseAdam for it"
            )


def check_one_device(name: str, params: list[Tensor]) -> torch.device:
    """The single device all parameters live on; a clear error when they are spread over several."""
    devices = {p.device for p in params}
    if len(devices) > 1:
        listed = ", ".join(sorted(str(d) for d in devices))
        raise RuntimeError(f"{name} needs all parameters on one device, found {listed}; use one optimizer per device")
    return params[0].device


def diverged(name: str, step: int, what: str) -> DivergedError:
    """The error every shell raises for a non-finite gradient or loss, saying what to do."""
    return DivergedError(
        f"{name}: non-finite {what} at step {step}; the model was left unchanged. Lower the learning rate (the "
        "param group's lr), clip gradients, or pass nonfinite='skip' to skip such steps"
    )
