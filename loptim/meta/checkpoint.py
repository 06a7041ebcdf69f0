"""Kept for LHOPT's trainer until its move into loptim/optimizers/lhopt/: checkpoints are written by loptim.io."""

from loptim.io import load_checkpoint, save_checkpoint

__all__ = ["load_checkpoint", "save_checkpoint"]
