"""The LHOPT runs behind tests/golden/lhopt-state/: a least-squares problem, 40 steps, a state_dict, 30 more."""

from __future__ import annotations

from typing import Any

import torch

from loptim import LHOPT
from loptim.optimizers.lhopt import HEAD_SIZES, OBS_DIM, ActorCritic, InnerHParams, PolicyConfig

RUNS = ("sampled-policy", "lhopt-small")
FIRST, NEXT = 40, 30


def _problem() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(14)
    inputs, targets = torch.randn(64, 8, generator=g), torch.randn(64, 3, generator=g)
    return inputs, targets, [torch.randn(8, 3, generator=g), torch.zeros(3)]


def _optimizer(name: str, params: list[torch.Tensor]) -> LHOPT:
    if name == "sampled-policy":
        policy = ActorCritic(PolicyConfig(OBS_DIM, HEAD_SIZES), torch.Generator().manual_seed(15))
        return LHOPT(params, total_steps=100, decisions=25, policy=policy, sample_actions=True, lr=1e-3)  # as recorded
    return LHOPT(params, "lhopt-small", total_steps=100, decisions=25, hparams=InnerHParams(lr=0.02))


def _train(opt: LHOPT, params: list[torch.Tensor], start: int, steps: int) -> None:
    inputs, targets, _ = _problem()
    for step in range(start, start + steps):
        loss = ((inputs @ params[0] + params[1] - targets) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
        if step % 10 == 9:
            opt.observe_validation(1.1 * float(loss.detach()))


def first_part(name: str) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """The state_dict after FIRST steps and the parameters then."""
    params = [p.clone().requires_grad_() for p in _problem()[2]]
    opt = _optimizer(name, params)
    _train(opt, params, 0, FIRST)
    return opt.state_dict(), [p.detach().clone() for p in params]


def continuation(name: str, params: list[torch.Tensor], state_dict: dict[str, Any]) -> dict[str, Any]:
    """A fresh optimizer loads `state_dict` and trains NEXT more steps: the parameters, hparams, last observation."""
    params = [p.clone().requires_grad_() for p in params]
    opt = _optimizer(name, params)
    opt.load_state_dict(state_dict)
    _train(opt, params, FIRST, NEXT)
    return {
        "params": [p.detach().clone() for p in params],
        "lr": opt.hparams.lr,
        "last_observation": opt.last_observation,
    }
