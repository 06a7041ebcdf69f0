"""LHOPT's action space (docs/design.md, LHOPT): discrete relative changes of the inner hyperparameters,
and restart registers to recover from divergence. Everything here is a pure function of its inputs.

Scale-type hyperparameters are multiplied by a factor and clamped to their bounds; 1 - beta is scaled (so
beta stays in [0, 1)); only the clip ratio, a probability, moves by a logit shift. Choices and bounds are the
example config's `action_definitions` (OpenAI's LHOPT repository).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from loptim.optimizers.lhopt.features import log_ratio
from loptim.optimizers.lhopt.inner import InnerHParams, clone_state

NUM_REGISTERS = 3  # configurable_restart_registers: num_registers 3
REGISTER_OPERATIONS = ("save", "load", "swap")


@dataclass(frozen=True)
class HeadSpec:
    """One categorical action head: which hyperparameter, how it moves ("scale" or "logit"), within what bounds."""

    name: str
    kind: str  # "scale": h * c; "logit": sigmoid(logit(h) + c); "restart": register operations
    choices: tuple[float, ...]
    low: float = 0.0
    high: float = 1.0

    @property
    def size(self) -> int:
        return len(self.choices)

    @property
    def noop(self) -> int:
        """Index of the choice that leaves everything as it is."""
        return self.choices.index(0.0 if self.kind in ("logit", "restart") else 1.0)


# The restart head: choice 0 does nothing; 1 + 3 r + k applies operation k (save, load, swap) to register r.
RESTART_CHOICES = (0.0, *[float(i + 1) for i in range(NUM_REGISTERS * len(REGISTER_OPERATIONS))])

ACTION_HEADS: tuple[HeadSpec, ...] = (
    HeadSpec("lr", "scale", (0.5, 0.707, 0.9, 1.0, 1.1, 1.414, 2.0), 1e-8, 1.0),
    HeadSpec("weight_decay", "scale", (0.5, 1.0, 2.0), 1e-8, 1.0),
    HeadSpec("eps", "scale", (0.5, 1.0, 2.0), 1e-8, 1.0),
    HeadSpec("one_minus_beta1", "scale", (0.5, 1.0, 2.0), 1e-5, 1.0),
    HeadSpec("one_minus_beta2", "scale", (0.5, 1.0, 2.0), 1e-5, 0.1),
    HeadSpec("clip_ratio", "logit", (-1.0, -0.3, 0.0, 0.3, 1.0), 1e-10, 1.0 - 1e-10),
    HeadSpec("restart", "restart", RESTART_CHOICES),
)
HEAD_SIZES = tuple(head.size for head in ACTION_HEADS)
# Initial policy logit of each head's no-op, over 0 for the other choices (loptim's choice, the paper does not
# say): the untrained greedy policy keeps the initial hyperparameters and sampling explores the learning rate most.
# With +1 everywhere, the 10-choice restart head samples a register operation at 77% of decisions (e / (e + 9)
# is the no-op's share) and a load at 26%, which undid the training.
DEFAULT_NOOP_BIAS = (1.5, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0)
NOOP_ACTION = tuple(head.noop for head in ACTION_HEADS)
HPARAM_HEADS = tuple(head for head in ACTION_HEADS if head.kind != "restart")
RESTART_HEAD = len(ACTION_HEADS) - 1

# Episode starts (example config `noise_definition`): lr x log-uniform[1e-2, 1e2], the other scale-type
# hyperparameters x log-uniform[0.1, 10], the clip ratio shifted by uniform[-1, 1] in logit space.
LR_INIT_SPREAD = 1e2
OTHER_INIT_SPREAD = 10.0


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def move(head: HeadSpec, value: float, amount: float) -> float:
    """`value` scaled by `amount` (scale heads) or logit-shifted by it (logit heads), clamped to the bounds."""
    if head.kind == "scale":
        moved = value * amount
    elif amount == 0.0:
        moved = value
    else:
        moved = _sigmoid(_logit(value) + amount)
    return min(max(moved, head.low), head.high)


def apply_action(hparams: InnerHParams, action: Sequence[int]) -> InnerHParams:
    """New hyperparameters after `action` (one choice index per head, ACTION_HEADS order); restart ignored."""
    if len(action) != len(ACTION_HEADS):
        raise ValueError(f"an action has {len(ACTION_HEADS)} choices (one per head), got {len(action)}")
    changes = {}
    for head, index in zip(ACTION_HEADS, action):
        if head.kind != "restart":
            changes[head.name] = move(head, getattr(hparams, head.name), head.choices[int(index)])
    return dataclasses.replace(hparams, **changes)


def randomize_hparams(hparams: InnerHParams, generator: torch.Generator) -> InnerHParams:
    """Randomized episode start (example config's noise_definition), within the heads' bounds."""
    changes = {}
    for head in HPARAM_HEADS:
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        if head.kind == "logit":
            amount = 2.0 * u - 1.0
        else:
            spread = LR_INIT_SPREAD if head.name == "lr" else OTHER_INIT_SPREAD
            amount = spread ** (2.0 * u - 1.0)
        changes[head.name] = move(head, getattr(hparams, head.name), amount)
    return dataclasses.replace(hparams, **changes)


def hparam_features(hparams: InnerHParams, initial: InnerHParams) -> Tensor:
    """Each controlled hyperparameter relative to its initial value, never absolute: log(h / h0) for scale
    heads, logit(h) - logit(h0) for the clip ratio (example config: scale_relative / logit_relative)."""
    values = []
    for head in HPARAM_HEADS:
        now, start = getattr(hparams, head.name), getattr(initial, head.name)
        values.append(math.log(now / start) if head.kind == "scale" else _logit(now) - _logit(start))
    return torch.tensor(values, dtype=torch.float64)


def action_one_hot(action: Sequence[int]) -> Tensor:
    """The previous action as concatenated one-hot vectors, one per head (example config: action_vector)."""
    pieces = [torch.nn.functional.one_hot(torch.tensor(int(i)), size) for i, size in zip(action, HEAD_SIZES)]
    return torch.cat(pieces).to(torch.float64)


# ----------------------------------------------------------------------------------------- restart registers

Snapshot = dict[str, Any]  # {"params": [Tensor], "state": inner state, "loss": float, "progress": float}
Registers = tuple[Snapshot | None, ...]


def empty_registers() -> Registers:
    return (None,) * NUM_REGISTERS


def clone_snapshot(snapshot: Snapshot) -> Snapshot:
    return {**snapshot, "params": [p.clone() for p in snapshot["params"]], "state": clone_state(snapshot["state"])}


def restart_operation(index: int) -> tuple[str, int] | None:
    """Restart-head choice -> (operation, register), or None for the no-op."""
    if index == 0:
        return None
    register, operation = divmod(index - 1, len(REGISTER_OPERATIONS))
    return REGISTER_OPERATIONS[operation], register


def apply_restart(registers: Registers, index: int, current: Snapshot) -> tuple[Registers, Snapshot | None]:
    """Apply restart-head choice `index` to the registers; returns (registers, snapshot to load or None).

    save r: register r <- a copy of now. load r: now <- a copy of register r (no-op when r is empty).
    swap r: register r <- now and now <- register r's old content (a plain save when r was empty).
    """
    operation = restart_operation(index)
    if operation is None:
        return registers, None
    name, register = operation
    stored = registers[register]
    updated = list(registers)
    if name == "load":
        return registers, None if stored is None else clone_snapshot(stored)
    updated[register] = clone_snapshot(current)
    if name == "swap" and stored is not None:
        return tuple(updated), stored
    return tuple(updated), None


def register_features(registers: Registers, current_loss: float) -> Tensor:
    """Per register: filled, progress at its save, tanh(log(saved loss / current loss)) (example config:
    restart_checkpoint_loss and restart_checkpoint_progress), 0 for an empty register or unusable loss."""
    values = []
    for snapshot in registers:
        if snapshot is None:
            values += [0.0, 0.0, 0.0]
            continue
        ratio = log_ratio(snapshot["loss"], current_loss)
        ratio = 0.0 if math.isnan(ratio) else math.tanh(ratio)
        values += [1.0, float(snapshot["progress"]), ratio]
    return torch.tensor(values, dtype=torch.float64)
