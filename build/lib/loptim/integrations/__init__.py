"""Glue for training frameworks whose loops call `optimizer.step()` without the loss (LHOPT needs it).

`loptim.integrations.lightning.LHOPTLossCallback` (PyTorch Lightning) and
`loptim.integrations.huggingface.LossObservingTrainer` (Hugging Face `transformers.Trainer`) hand each step's
training loss to every optimizer that has `observe_loss`. Each module imports its framework only when used.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def unwrap(optimizer: Any) -> Any:
    """The loptim optimizer inside a framework's wrapper (accelerate's AcceleratedOptimizer, LightningOptimizer)."""
    seen = 0
    while hasattr(optimizer, "optimizer") and not hasattr(optimizer, "observe_loss") and seen < 4:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def observe_loss(optimizers: Any, loss: Tensor | float) -> None:
    """Pass `loss` (detached) to each optimizer that observes losses; others are left alone."""
    items = optimizers if isinstance(optimizers, list | tuple) else [optimizers]
    for optimizer in items:
        target = unwrap(optimizer)
        if hasattr(target, "observe_loss"):
            target.observe_loss(loss.detach() if isinstance(loss, Tensor) else loss)
