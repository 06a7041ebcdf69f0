"""Atomic file writes: every output goes to a temp file in its folder and is renamed into place, so an
interruption never leaves a half-written file. One permission policy: 0644 (results, weights, checkpoints and
caches are shared outputs; mkstemp alone would make them 0600)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

FILE_MODE = 0o644


def cache_dir() -> Path:
    """The root of loptim's cache (`$LOPTIM_CACHE`, default ~/.cache/loptim); never inside the repository."""
    return Path(os.environ.get("LOPTIM_CACHE", Path.home() / ".cache" / "loptim")).expanduser()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create `path` (and its folder) from `write(handle)`, atomically, with mode 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """`torch.save` of `payload`, atomically."""
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)
