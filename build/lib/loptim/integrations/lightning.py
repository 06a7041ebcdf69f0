"""PyTorch Lightning: a callback that passes each training step's loss to LHOPT before its optimizer step.

Lightning's automatic optimization runs the training step inside the closure it passes to `optimizer.step`, so
LHOPT already gets the loss there; with mixed precision (`precision="16-mixed"`) the scaler calls `step()`
without the closure, and this callback supplies the loss instead (from `on_before_backward`, the same step's).
Usage: `Trainer(callbacks=[LHOPTLossCallback()])`.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from loptim.integrations import observe_loss


class LHOPTLossCallback(Callback):
    """Hands the loss of every backward pass to the trainer's optimizers that have `observe_loss`."""

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        observe_loss(trainer.optimizers, loss)
