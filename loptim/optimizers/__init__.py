"""What trains a task: hand-designed baselines and learned optimizers, by name."""

from loptim.optimizers.lhopt import LHOPT
from loptim.optimizers.lhopt.shell import DEFAULT_COOLDOWN, DEFAULT_LR
from loptim.optimizers.lstm import LSTMOptimizer
from loptim.optimizers.mlp import MLPOptimizer
from loptim.optimizers.registry import LEARNED


def _lstm_factory(weights: str = "lstm-mnist"):
    def factory(params, *, total_steps: int) -> LSTMOptimizer:
        return LSTMOptimizer(params, weights=weights, total_steps=total_steps)

    return factory


def _mlp_factory(weights: str = "mlp-generalist-fold"):
    def factory(params, *, total_steps: int) -> MLPOptimizer:
        return MLPOptimizer(params, weights=weights, total_steps=total_steps)

    return factory


def _lhopt_factory(
    weights: str = "lhopt-wider-e285",
    cooldown: float = DEFAULT_COOLDOWN,
    lr: float = DEFAULT_LR,  # explicit, so that a suite's run cache names the rate it ran at
    freeze_in_cooldown: bool = False,
):
    def factory(params, *, total_steps: int) -> LHOPT:
        return LHOPT(params, weights=weights, total_steps=total_steps, cooldown=cooldown, lr=lr,
                     freeze_in_cooldown=freeze_in_cooldown)  # fmt: skip

    return factory


LEARNED.add("lstm", _lstm_factory)
LEARNED.add("mlp", _mlp_factory)
LEARNED.add("lhopt", _lhopt_factory)

__all__ = ["LEARNED", "LHOPT", "LSTMOptimizer", "MLPOptimizer"]
