"""The interface every coordinate-wise learned optimizer's core implements, for meta-training and the shells alike.

A core is a network whose parameters are the default meta-parameters; `update` is a pure function of explicit
meta-parameters (so estimators can evaluate phi + eps without touching the module), differentiable in them when
`differentiable` is True (meta-training by backprop) and free to take its fast path when False (ES/PES samples,
evaluation runs). The switch is this explicit flag, never `torch.is_grad_enabled()`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

State = dict[str, Tensor]
Params = dict[str, Tensor]


@runtime_checkable
class LearnedOptimizerCore(Protocol):
    """What meta-training needs of a learned optimizer (LSTMOptimizerNet and MLPOptimizerNet implement it)."""

    def meta_params(self) -> Params:
        """The default meta-parameters (the module's nn.Parameters), by name."""
        ...

    def init_state(self, params: Params) -> State:
        """The optimizer state for a fresh run over `params` (on their device, in their dtype)."""
        ...

    def update(
        self,
        meta_params: Params,
        state: State,
        params: Params,
        grads: Params,
        *,
        step: int,
        total_steps: int,
        differentiable: bool = True,
        loss: Tensor | float | None = None,
    ) -> tuple[Params, State]:
        """(new params, new state) after one step; pure in its inputs. `loss`: the step's training loss, for
        cores that read it (they keep its statistics in the state)."""
        ...
