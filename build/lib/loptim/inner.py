"""The one inner training loop: for each batch, the task's loss at the current parameters, its gradient, one
update. The harness runs it with a torch.optim optimizer (loptim.evaluate.harness), meta-training and its
evaluation runs with a learned optimizer's functional core (loptim.meta.unroll.run_truncation); differentiable
in the update's meta-parameters when `differentiable` is True."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from loptim.tasks.base import Task

Params = dict[str, Tensor]
Update = Callable[[int, Params, Params, Tensor], Params]  # (step, params, grads, loss) -> new params


def train_steps(
    task: Task,
    params: Params,
    batches: Iterable[Any],
    update: Update,
    *,
    start_step: int = 0,
    differentiable: bool = False,
    second_order: bool = False,
    stop_at_nonfinite: bool = False,
) -> Iterator[tuple[int, Tensor, Params]]:
    """Yield (step, train loss before the update, parameters after it) for each batch.

    `differentiable`: the graph through the parameters is kept from step to step (meta-gradients by backprop);
    otherwise every step starts from detached leaves (parameters that already are leaves, as a torch.optim
    optimizer's, are used as they are). `second_order`: the gradient itself is differentiable (Metz et al. 2019,
    Sec. 2). `stop_at_nonfinite`: a non-finite loss is yielded with the parameters unchanged and ends the loop.
    Gradients of parameters the loss does not use are None.
    """
    for step, batch in enumerate(batches, start_step):
        if not differentiable:
            params = {
                k: v if v.is_leaf and v.requires_grad else v.detach().requires_grad_(True) for k, v in params.items()
            }
        with torch.enable_grad():
            loss = task.loss(params, batch)
            if stop_at_nonfinite and not torch.isfinite(loss):
                yield step, loss, params
                return
            grads = torch.autograd.grad(
                loss,
                list(params.values()),
                retain_graph=differentiable,
                create_graph=second_order and differentiable,
                allow_unused=True,
            )
        params = update(step, params, dict(zip(params, grads)), loss)
        yield step, loss, params
