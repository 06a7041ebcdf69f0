"""An inner training run in progress, as data, and one truncation of it: the unit every meta-gradient estimator
differentiates or perturbs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from loptim.inner import Params, train_steps
from loptim.optimizers.core import LearnedOptimizerCore
from loptim.tasks.base import Task


@dataclass
class UnrollState:
    """Carried between truncations (detached); the inner run restarts when `step` reaches `total_steps`.

    Batches come from the `batches` iterators when given (L2L: one stream per inner run); otherwise each truncation
    draws them from a generator seeded by (`seed`, step), so the state is plain data that a checkpoint can hold.
    """

    task: Task
    params: dict[str, Tensor]
    opt_state: dict[str, Tensor]
    step: int
    total_steps: int
    batches: Iterator[Any] | None = None
    valid_batches: Iterator[Any] | None = None
    seed: int = 0

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


def start_unroll(
    task: Task, lopt: LearnedOptimizerCore, total_steps: int, seed: int, with_valid: bool = False
) -> UnrollState:
    """A fresh inner run of `task`: parameters and train (and valid) batch streams all derived from `seed`."""
    params = task.init(torch.Generator().manual_seed(seed))
    batches = task.batches("train", torch.Generator().manual_seed(seed + 1))
    valid = task.batches("valid", torch.Generator().manual_seed(seed + 2)) if with_valid else None
    return UnrollState(task, params, lopt.init_state(params), 0, total_steps, batches, valid, seed)


def start_seeded_unroll(task: Task, lopt: LearnedOptimizerCore, total_steps: int, seed: int) -> UnrollState:
    """A fresh inner run whose batches are drawn per truncation from (seed, step): resumable from its data alone."""
    params = task.init(torch.Generator().manual_seed(seed))
    return UnrollState(task, params, lopt.init_state(params), 0, total_steps, seed=seed)


def detach_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in state.items()}


@dataclass(frozen=True)
class Truncation:
    """The batches of one truncation, drawn before any estimator runs so every perturbation of the meta-parameters
    sees the same data (antithetic ES needs L(phi + eps) and L(phi - eps) on identical batches)."""

    train: list[Any]
    valid: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.train)


def seeded_batches(unroll: UnrollState, split: str, offset: int) -> Iterator[Any]:
    """Batches of `split` from a generator seeded by (the run's seed, its step, `offset`): data, not state."""
    seed = ((unroll.seed * 1_000_003 + unroll.step) * 4 + offset) % (2**63 - 1)
    return unroll.task.batches(split, torch.Generator().manual_seed(seed))


def draw_truncation(unroll: UnrollState, length: int, with_valid: bool) -> Truncation:
    """The next `length` train batches (and as many valid batches), clipped at the end of the inner run."""
    length = min(length, unroll.total_steps - unroll.step)
    train_stream = unroll.batches if unroll.batches is not None else seeded_batches(unroll, "train", 1)
    train = [next(train_stream) for _ in range(length)]
    valid = None
    if with_valid:
        valid_stream = unroll.valid_batches if unroll.valid_batches is not None else seeded_batches(unroll, "valid", 2)
        valid = [next(valid_stream) for _ in range(length)]
    return Truncation(train, valid)


@dataclass(frozen=True)
class MetaObjective:
    """What a truncation's meta-loss measures (Metz et al. 2019, Sec. 4 and 5).

    split "train": f(theta_t) on the batch the inner optimizer trains on (L2L's objective); "valid": the loss of the
    updated parameters on a validation batch, which the inner optimizer never sees. Each step's loss is clipped at
    `clip` (the official code's min(L, 10)) and the steps are summed (L2L, w_t = 1) or averaged (Metz).
    """

    split: Literal["train", "valid"] = "train"
    clip: float | None = None
    reduce: Literal["sum", "mean"] = "sum"


L2L_OBJECTIVE = MetaObjective("train", None, "sum")
METZ_OBJECTIVE = MetaObjective("valid", 10.0, "mean")


def run_truncation(
    lopt: LearnedOptimizerCore,
    meta_params: dict[str, Tensor],
    unroll: UnrollState,
    truncation: Truncation,
    objective: MetaObjective = L2L_OBJECTIVE,
    second_order: bool = False,
    losses: list[float] | None = None,
    *,
    differentiable: bool = False,
) -> tuple[Tensor, UnrollState]:
    """Run the truncation's inner steps from `unroll` with a learned optimizer's core, through loptim's one inner
    training loop (loptim.inner.train_steps); return the meta-loss and the detached end state.

    Differentiable in `meta_params` when `differentiable` (backprop estimators; ES, PES and evaluation runs leave it
    off, and the core takes its fast path). With `second_order` False each inner gradient is a
    constant (L2L's Figure 2 drops the gradient through the optimizee's gradient); with True the meta-gradient
    flows through it too (the full unrolled computation graph Metz et al. 2019 analyse, Sec. 2). The inner
    optimizer only ever receives gradients of train batches. With `losses` (evaluation runs), each step's train
    loss is appended to it and the run stops at the first one that is not finite.
    """
    params = {k: v.detach().requires_grad_(True) for k, v in unroll.params.items()}
    state, step = unroll.opt_state, unroll.step
    total, count = torch.zeros(()), 0

    def add(term: Tensor) -> Tensor:  # summed in step order, so L2L's sum is what it always was
        return total + (term if objective.clip is None else torch.clamp(term, max=objective.clip))

    def update(step: int, params: Params, grads: Params, loss: Tensor) -> Params:
        nonlocal state
        grads = {k: torch.zeros_like(params[k]) if g is None else g for k, g in grads.items()}
        params, state = lopt.update(meta_params, state, params, grads, step=step, total_steps=unroll.total_steps,
                                    differentiable=differentiable, loss=loss.detach())  # fmt: skip
        return params

    steps = train_steps(unroll.task, params, truncation.train, update, start_step=step, differentiable=differentiable,
                        second_order=second_order, stop_at_nonfinite=losses is not None)  # fmt: skip
    for t, (_, loss, params) in enumerate(steps):
        if losses is not None:
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                break
        if objective.split == "train":
            total, count = add(loss if differentiable else loss.detach()), count + 1
        if objective.split == "valid":
            if truncation.valid is None:
                raise ValueError("a validation objective needs a truncation drawn with valid batches")
            total, count = add(unroll.task.loss(params, truncation.valid[t])), count + 1
        step += 1
    meta_loss = total if objective.reduce == "sum" else total / max(count, 1)
    end = replace(unroll, params={k: v.detach() for k, v in params.items()}, opt_state=detach_state(state), step=step)
    return meta_loss, end


def final_train_loss(
    lopt: LearnedOptimizerCore, meta_params: dict[str, Tensor], task: Task, steps: int, seed: int
) -> float:
    """Train a fresh `task` for `steps` (no meta-graph): the mean minibatch loss over the last 10% of steps (the
    'final training loss' of docs/design.md); inf if the run diverges."""
    unroll = start_unroll(task, lopt, steps, seed)
    losses: list[float] = []
    with torch.no_grad():
        run_truncation(lopt, meta_params, unroll, draw_truncation(unroll, steps, with_valid=False), losses=losses)
    if not math.isfinite(losses[-1]):
        return math.inf
    tail = losses[-max(1, steps // 10) :]
    return sum(tail) / len(tail)


def evaluation_run(
    lopt: LearnedOptimizerCore,
    meta_params: dict[str, Tensor],
    task: Task,
    steps: int,
    seed: int,
    with_initial: bool = False,
) -> tuple[float, float]:
    """Train a fresh `task` for `steps` (no meta-graph, batches seeded per 100 steps as in meta-training): (final
    validation loss, initial validation loss if `with_initial` else nan); the final loss is inf if it diverged."""
    unroll = start_seeded_unroll(task, lopt, steps, seed)
    initial = task.evaluate(unroll.params, "valid", metrics=False)["loss"] if with_initial else math.nan
    with torch.no_grad():
        while not unroll.done:
            _, unroll = run_truncation(lopt, meta_params, unroll, draw_truncation(unroll, 100, with_valid=False))
            if not all(bool(torch.isfinite(p).all()) for p in unroll.params.values()):
                return math.inf, initial
    loss = task.evaluate(unroll.params, "valid", metrics=False)["loss"]
    return (loss if math.isfinite(loss) else math.inf), initial
