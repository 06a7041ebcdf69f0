"""Meta-gradient estimators behind one interface; the outer trainer does not care which one it has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from loptim.meta.unroll import UnrollState, detach_state


class Estimator(Protocol):
    def estimate(
        self, lopt: Any, meta_params: dict[str, Tensor], unroll: UnrollState, generator: torch.Generator
    ) -> tuple[dict[str, Tensor], UnrollState, dict[str, float]]: ...


def truncated_meta_loss(
    lopt: Any, meta_params: dict[str, Tensor], unroll: UnrollState, length: int
) -> tuple[Tensor, UnrollState]:
    """Run `length` inner steps from `unroll`; return sum_t f(theta_t) (w_t = 1) and the detached end state.

    Each inner gradient g_t is taken without a graph (create_graph=False), so it enters the LSTM as a constant:
    the paper's Figure 2 drops the gradients through the optimizee's gradient (no second derivatives).
    """
    params = {k: v.detach().requires_grad_(True) for k, v in unroll.params.items()}
    state = unroll.opt_state
    total = torch.zeros(())
    step = unroll.step
    for _ in range(min(length, unroll.total_steps - unroll.step)):
        loss = unroll.task.loss(params, next(unroll.batches))
        grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True)
        total = total + loss
        params, state = lopt.update(
            meta_params, state, params, dict(zip(params, grads)), step=step, total_steps=unroll.total_steps
        )
        step += 1
    end = UnrollState(
        unroll.task,
        {k: v.detach() for k, v in params.items()},
        detach_state(state),
        step,
        unroll.total_steps,
        unroll.batches,
        unroll.valid_batches,
    )
    return total, end


@dataclass(frozen=True)
class TruncatedBackprop:
    """L2L's estimator: backprop through a truncation of `length` steps, state carried between truncations."""

    length: int = 20

    def estimate(
        self, lopt: Any, meta_params: dict[str, Tensor], unroll: UnrollState, generator: torch.Generator
    ) -> tuple[dict[str, Tensor], UnrollState, dict[str, float]]:
        leaves = {k: v.detach().requires_grad_(True) for k, v in meta_params.items()}
        meta_loss, end = truncated_meta_loss(lopt, leaves, unroll, self.length)
        grads = torch.autograd.grad(meta_loss, list(leaves.values()), allow_unused=True)
        grads = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}
        return grads, end, {"meta_loss": float(meta_loss.detach())}
