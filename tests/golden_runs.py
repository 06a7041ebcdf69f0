"""The runs behind the golden outputs (tests/golden): meta-training steps and the shipped weights' first updates."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import loptim
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer
from loptim.pretrained import available

SHIPPED_KINDS = {"lstm-mnist": "lstm", "lstm-mnist-mb2": "lstm", "lstm-quadratic": "lstm", "mlp-mnist": "mlp",
                 "mlp-generalist": "mlp", "lhopt-small": "lhopt", "lhopt-wide": "lhopt",
                 "lhopt-wider": "lhopt", "mlp-generalist-scale": "mlp", "lhopt-wider-e210": "lhopt",
                 "mlp-generalist-cosine": "mlp", "mlp-generalist-warmup": "mlp",
                 "mlp-generalist-half": "mlp", "lhopt-wider-e285": "lhopt", "mlp-generalist-fold": "mlp"}  # fmt: skip


def meta_training(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Meta-parameters after 3 epochs of `lstm-mnist` and 3 outer steps of `mlp-mnist`, on one thread."""
    results = {}
    for name in ("lstm-mnist", "mlp-mnist"):
        trainer = MetaTrainer(RECIPES.get(name), out / name)
        trainer.run(progress=False, stop_at_epoch=3, command="golden")
        results[name] = {k: v.detach().clone() for k, v in trainer.meta.items()}
    return results


def first_updates() -> dict[str, torch.Tensor]:
    """Parameters after each of the first 10 steps of every shipped weight file on a fixed small classifier."""
    results = {}
    for weights in available():
        kind = SHIPPED_KINDS[weights]
        g = torch.Generator().manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        x, y = torch.randn(32, 12, generator=g), torch.randint(0, 3, (32,), generator=g)
        params = list(model.parameters())
        if kind == "lstm":
            opt = loptim.LSTMOptimizer(params, weights=weights)
        elif kind == "mlp":
            opt = loptim.MLPOptimizer(params, weights=weights)
        else:
            # the policy alone, from the rate its golden outputs were recorded at
            opt = loptim.LHOPT(params, weights=weights, total_steps=10, decisions=5, cooldown=0.0, lr=1e-3)
        steps = []
        for _ in range(10):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step(loss)
            steps.append(torch.cat([p.detach().reshape(-1) for p in params]))
        results[weights] = torch.stack(steps)
    return results
