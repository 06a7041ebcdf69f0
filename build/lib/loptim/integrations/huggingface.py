"""Hugging Face `transformers.Trainer`: pass each training step's loss to LHOPT.

The Trainer calls `optimizer.step()` without the loss and its callbacks never see it, so the glue is a Trainer
subclass whose `training_step` hands the loss it computed to the optimizer before the step (the same step's loss,
averaged over gradient-accumulation micro-batches). `LossObservingMixin` adds the same to a Trainer subclass of
your own: `class MyTrainer(LossObservingMixin, Trainer)`.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from loptim.integrations import observe_loss


class LossObservingMixin:
    """Overrides `training_step` to pass its (detached) loss to optimizers that have `observe_loss`."""

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        loss = super().training_step(*args, **kwargs)
        if getattr(self, "optimizer", None) is not None:
            observe_loss(self.optimizer, loss)
        return loss


class LossObservingTrainer(LossObservingMixin, Trainer):
    """`transformers.Trainer` that feeds LHOPT the training loss: a drop-in for `Trainer`."""
