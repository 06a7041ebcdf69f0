"""The `loptim` header of the optimizers' state_dicts: which code, optimizer and weights a saved state belongs to."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from loptim.errors import LoptimError
from loptim.version import __version__

STATE_DICT_FORMAT = 2  # 1: loptim 0.1.0's custom layout (name, flat_state, ...), which 0.2.0 cannot read


class StateDictError(LoptimError, ValueError):
    """A state_dict that is not this optimizer's, or was written by an incompatible loptim version."""


def is_shipped(weights: str | None) -> bool:
    """Whether `weights` names shipped weights (a state then stores only their name and hash)."""
    if not weights:
        return False
    from loptim.pretrained import available

    return weights in available()


def state_dict_header(name: str, weights: str | None, meta_params: dict[str, Tensor], sha256: str) -> dict[str, Any]:
    header: dict[str, Any] = {
        "format": STATE_DICT_FORMAT,
        "version": __version__,
        "optimizer": name,
        "weights": weights,
        "meta_sha256": sha256,
    }
    if not is_shipped(weights):
        header["meta_params"] = {k: v.detach().clone() for k, v in meta_params.items()}
    return header


def check_state_dict_header(state_dict: Any, name: str) -> dict[str, Any]:
    """The header of a loadable state_dict for optimizer `name`; one-line errors otherwise."""
    if not isinstance(state_dict, dict):
        raise StateDictError(f"expected a state_dict (a dict), got {type(state_dict).__name__}")
    if "loptim" not in state_dict:
        if "name" in state_dict and ("flat_state" in state_dict or "controller" in state_dict):
            raise StateDictError(
                f"this state_dict was written by loptim 0.1.0, whose format loptim {__version__} cannot read; "
                "start the optimizer afresh or load it with loptim 0.1.0"
            )
        raise StateDictError(f"not a loptim state_dict (no 'loptim' header); keys: {', '.join(map(str, state_dict))}")
    header = state_dict["loptim"]
    if header.get("format") != STATE_DICT_FORMAT:
        raise StateDictError(
            f"state_dict format {header.get('format')} (loptim {header.get('version')}); loptim {__version__} reads "
            f"format {STATE_DICT_FORMAT}"
        )
    if header.get("optimizer") != name:
        raise StateDictError(f"state_dict is for a '{header.get('optimizer')}' optimizer; this is '{name}'")
    if "state" not in state_dict or "param_groups" not in state_dict:
        raise StateDictError("state_dict lacks 'state' or 'param_groups'")
    return header


def packed_groups(param_groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """torch.optim's `param_groups` entry of a state_dict: each group's options, its parameters by flat index."""
    index = {id(p): i for i, p in enumerate(p for group in param_groups for p in group["params"])}
    return [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
            for g in param_groups]  # fmt: skip


def check_group_sizes(param_groups: list[dict[str, Any]], saved_groups: list[dict[str, Any]]) -> None:
    """A state_dict fits only an optimizer with as many groups of as many parameters."""
    saved, mine = [len(g["params"]) for g in saved_groups], [len(g["params"]) for g in param_groups]
    if saved != mine:
        raise ValueError(
            f"state_dict has param groups of sizes {saved}; this optimizer has {mine}: "
            "build it over the same parameters"
        )


def restore_group_options(param_groups: list[dict[str, Any]], saved_groups: list[dict[str, Any]]) -> None:
    """Each group takes the saved options (lr, weight_decay, a scheduler's initial_lr, ...), as torch.optim does."""
    for group, saved in zip(param_groups, saved_groups):
        group.update({k: v for k, v in saved.items() if k != "params"})
