"""Shipped weights of the learned optimizers: safetensors files (no code runs on load) with a JSON card beside each."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from loptim.errors import WeightsError
from loptim.io import atomic_write_bytes, atomic_write_text

PRETRAINED_DIR = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def resolve(weights: str) -> Path:
    """A shipped name (e.g. 'lstm-mnist') or a path to a .safetensors file."""
    path = Path(weights)
    if path.suffix == ".safetensors":
        if not path.exists():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    shipped = PRETRAINED_DIR / f"{weights}.safetensors"
    if not shipped.exists():
        raise WeightsError(
            f"no shipped weights '{weights}'; shipped: {', '.join(available()) or '(none)'}; "
            "or pass a path to a .safetensors file written by `loptim meta-train`"
        )
    return shipped


Builder = Callable[[dict[str, Any]], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register_kind(kind: str, build: Builder) -> None:
    """Called by each learned optimizer's module: `build(config)` makes the network a weights file of `kind` holds
    (from the config recorded in the file's metadata)."""
    _BUILDERS[kind] = build


def _build(kind: str, config: dict[str, Any]) -> nn.Module:
    if kind in _BUILDERS:
        return _BUILDERS[kind](config)
    raise WeightsError(f"weights of unknown kind '{kind}'; known: {', '.join(sorted(_BUILDERS))}")


def load_learned(kind: str, weights: str) -> nn.Module:
    """Build the optimizer network recorded in the file's metadata and load its tensors; errors say what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = resolve(weights)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable safetensors file ({error}); re-download or re-train it") from None
    if metadata.get("kind") != kind:
        raise WeightsError(f"{path} holds '{metadata.get('kind')}' weights, not '{kind}'")
    try:
        net = _build(kind, json.loads(metadata.get("config", "{}")))
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path} has an unusable config in its metadata: {error}") from None
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise WeightsError(f"{path} does not fit the '{kind}' optimizer: expected {expected}, found {found}")
    net.load_state_dict(tensors)
    return net


def save_learned(path: Path, kind: str, net: nn.Module, config: dict[str, Any], card: dict[str, Any]) -> None:
    """Write weights and the JSON card beside them (same stem, .json), each atomically."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"kind": kind, "config": json.dumps(config)}))
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
