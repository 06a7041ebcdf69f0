"""The torch.optim shell shared by learned optimizers: all coordinates of all tensors as one flat vector."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn


def flatten(tensors: dict[str, Tensor]) -> Tensor:
    """Concatenate a dict of tensors into one flat vector (dict order)."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(flat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector back into tensors shaped like `like` (views, no copy)."""
    sizes = [t.numel() for t in like.values()]
    return {k: piece.view_as(t) for (k, t), piece in zip(like.items(), torch.split(flat, sizes))}


def add_flat(params: dict[str, Tensor], delta: Tensor) -> dict[str, Tensor]:
    """params + a flat update, tensor by tensor (differentiable; used by every learned optimizer's `update`)."""
    deltas = unflatten(delta, params)
    return {k: params[k] + deltas[k] for k in params}


class FlatOptimizer(torch.optim.Optimizer):
    """A learned optimizer as torch.optim: `step()` flattens the gradients, asks the core for a flat update, adds it.

    Parameters without a gradient count as zero gradients, so the set of coordinates never changes between steps.
    The whole state is one dict of tensors plus the step count, and `state_dict` round-trips it exactly.
    """

    def __init__(self, params: Iterable[Tensor], net: nn.Module, *, name: str, weights: str | None) -> None:
        super().__init__(params, defaults={})
        self.net = net
        self.meta_params = {k: v.detach() for k, v in net.meta_params().items()}
        self.name = name
        self.weights = weights
        self.params = [p for group in self.param_groups for p in group["params"]]
        self.num_coordinates = sum(p.numel() for p in self.params)
        self.flat_state: dict[str, Tensor] = self._init_flat_state(self.num_coordinates)
        self.step_count = 0

    def _init_flat_state(self, num_coordinates: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def _flat_update(self, flat_grad: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat_grad = torch.cat([g.reshape(-1) for g in grads]).to(torch.float32)
        delta = self._flat_update(flat_grad)
        pieces = torch.split(delta, [p.numel() for p in self.params])
        torch._foreach_add_(self.params, [d.view_as(p).to(p.dtype) for d, p in zip(pieces, self.params)])
        self.step_count += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": self.weights,
            "step_count": self.step_count,
            "flat_state": {k: v.clone() for k, v in self.flat_state.items()},
            "meta_params": {k: v.clone() for k, v in self.meta_params.items()},
            "num_coordinates": self.num_coordinates,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("name") != self.name or state_dict.get("num_coordinates") != self.num_coordinates:
            raise ValueError(
                f"state_dict is for a '{state_dict.get('name')}' optimizer over {state_dict.get('num_coordinates')} "
                f"coordinates; this is a '{self.name}' optimizer over {self.num_coordinates}"
            )
        self.step_count = int(state_dict["step_count"])
        self.flat_state = {k: v.clone() for k, v in state_dict["flat_state"].items()}
        self.meta_params = {k: v.clone() for k, v in state_dict["meta_params"].items()}
