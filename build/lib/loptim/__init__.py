"""loptim: learned optimizers (L2L, Metz 2019, LHOPT) for PyTorch, with real-data tasks and tuned baselines."""

from loptim.errors import DivergedError
from loptim.optimizers import LHOPT, LSTMOptimizer, MLPOptimizer
from loptim.version import __version__

__all__ = ["LHOPT", "DivergedError", "LSTMOptimizer", "MLPOptimizer", "__version__"]
