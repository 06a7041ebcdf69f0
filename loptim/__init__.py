"""loptim: learned optimizers (L2L, Metz 2019, LHOPT) for PyTorch, with real-data tasks and tuned baselines."""

from loptim.optimizers import LHOPT, LSTMOptimizer, MLPOptimizer

__version__ = "0.1.0"
__all__ = ["LHOPT", "LSTMOptimizer", "MLPOptimizer"]
