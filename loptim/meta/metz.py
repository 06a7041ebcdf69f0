"""Meta-training the Metz 2019 MLP optimizer: a batch of inner runs sampled from a task family, carried across
outer steps, truncations from the curriculum, any of the three estimators, the validation meta-objective.

Under torchrun the inner runs (slots) are split across ranks: each rank advances its slots' runs, the per-slot
samples are gathered in slot order (ES: only the two meta-losses; each direction is regenerated from the slot's
noise seed), and every rank reduces the same list. A checkpoint holds every slot (gathered to rank 0), so a run
resumes on any number of ranks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from loptim.meta import distributed as dist
from loptim.meta.estimators import SmoothedEstimator, estimate_samples
from loptim.meta.recipes import MetzRecipe
from loptim.meta.trainer import EVAL_SEED_BASE, OuterTrainer, derive_seed
from loptim.meta.unroll import MetaObjective, UnrollState, draw_truncation, run_truncation, start_seeded_unroll
from loptim.optimizers.core import LearnedOptimizerCore
from loptim.optimizers.mlp import MLPOptimizerNet
from loptim.tasks import get_family
from loptim.tasks.base import Task, log_uniform_int
from loptim.tasks.partition import check_meta_trainable

EVAL_LOSS_CAP = 10.0  # a diverged evaluation run scores as the meta-objective's clip value


class MetzTrainer(OuterTrainer):
    """Outer loop for `MetzRecipe`; the inner runs in flight are part of the checkpoint, so resume is exact."""

    kind = "mlp"

    def __init__(self, recipe: MetzRecipe, out: Path) -> None:
        net = MLPOptimizerNet(recipe.mlp, generator=torch.Generator().manual_seed(recipe.seed))
        super().__init__(recipe, out, net, recipe.mlp)
        self.objective = MetaObjective(recipe.objective, recipe.loss_clip, "mean")
        self.estimator = SmoothedEstimator(recipe.estimator, recipe.sigma, self.objective, recipe.second_order)
        self.family = get_family(recipe.family)
        self.slots: list[dict[str, Any] | None] = [None] * recipe.unrolls
        self._tasks: dict[int, Task] = {}

    def adam_betas(self) -> tuple[float, float]:
        return (self.recipe.meta_beta1, 0.999)

    def task(self, task_seed: int) -> Task:
        if task_seed not in self._tasks:
            task = check_meta_trainable(self.family.sample(torch.Generator().manual_seed(task_seed)))
            self._tasks = {task_seed: task, **self._tasks}
            while len(self._tasks) > 4 * self.recipe.unrolls:  # keep recent tasks; their data sets are shared
                self._tasks.pop(next(reversed(self._tasks)))
        return self._tasks[task_seed]

    def inner_length(self, task_seed: int) -> int:
        return log_uniform_int(torch.Generator().manual_seed(task_seed + 1), *self.recipe.inner_steps)

    def _unroll(self, slot: int) -> UnrollState:
        """The slot's inner run, restarted with a fresh task when it ended or diverged."""
        data = self.slots[slot]
        if data is None or data["step"] >= data["total_steps"]:
            task_seed = derive_seed(self.recipe.seed, self.epoch, slot, 1)
            unroll = start_seeded_unroll(self.task(task_seed), self.net, self.inner_length(task_seed), task_seed)
            return unroll
        task = self.task(data["task_seed"])
        return UnrollState(task, data["params"], data["opt_state"], data["step"], data["total_steps"],
                           seed=data["task_seed"])  # fmt: skip

    def train_epoch(self) -> dict[str, float]:
        """One outer step: this rank's slots each advance one truncation; one update from all slots' samples.
        Slot i's truncation length, task and noise derive from (recipe seed, epoch, i) alone."""
        recipe = self.recipe
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, self.epoch, 0))
        lengths = [recipe.curriculum.length(self.epoch, generator) for _ in range(recipe.unrolls)]  # all slots'
        mine = dist.my_indices(recipe.unrolls)
        unrolls = [self._unroll(slot) for slot in mine]
        valid = self.objective.split == "valid"
        truncations = [draw_truncation(unroll, lengths[slot], valid) for slot, unroll in zip(mine, unrolls)]
        seeds = [derive_seed(recipe.seed, self.epoch, slot, 2) for slot in mine]
        estimate = estimate_samples(
            self.estimator, self.net, self.meta, unrolls, truncations, seeds, dist.gather_samples
        )
        finite = all(bool(torch.isfinite(g).all()) for g in estimate.grads.values())
        norm = self.apply_gradient(estimate.grads) if finite else math.nan
        for slot, end in zip(mine, estimate.unrolls):
            alive = all(bool(torch.isfinite(p).all()) for p in end.params.values())
            step = end.step if alive else end.total_steps  # a diverged run restarts next epoch
            self.slots[slot] = {"task_seed": end.seed, "params": end.params, "opt_state": end.opt_state,
                                "step": step, "total_steps": end.total_steps}  # fmt: skip
        return {"epoch": self.epoch, "meta_loss": estimate.stats["meta_loss"], "grad_norm": norm,
                "truncation": sum(lengths) / len(lengths), **{k: v for k, v in estimate.stats.items()
                                                               if k != "meta_loss"}}  # fmt: skip

    def evaluate(self) -> float:
        """Mean final validation loss over held-out family samples (seeds no meta-training epoch draws)."""
        meta = {k: v.detach() for k, v in self.meta.items()}

        def score(i: int) -> float:
            task_seed = EVAL_SEED_BASE + 7 * i
            task = check_meta_trainable(self.family.sample(torch.Generator().manual_seed(task_seed)))
            return final_valid_loss(self.net, meta, task, self.inner_length(task_seed), task_seed)

        scores = dist.map_samples(self.recipe.eval_tasks, score)  # split across ranks, in task order
        return sum(scores) / len(scores)

    def extra_state(self) -> dict[str, Any]:
        """Every slot's inner run, each from the rank that owns it (collective: all ranks call it)."""
        slots = list(self.slots)
        for part in dist.all_gather({slot: self.slots[slot] for slot in dist.my_indices(self.recipe.unrolls)}):
            for slot, data in part.items():
                slots[slot] = data
        return {"slots": slots}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if len(state["slots"]) != self.recipe.unrolls:
            raise ValueError(f"checkpoint holds {len(state['slots'])} inner runs; the recipe has {self.recipe.unrolls}")
        self.slots = state["slots"]

    def card_fields(self) -> dict[str, Any]:
        return {
            "optimizer": "mlp (Metz et al. 2019)",
            "meta_trained_on": [
                f"family {self.recipe.family}, {self.recipe.inner_steps[0]}-"
                f"{self.recipe.inner_steps[1]} steps, train split"
            ],  # fmt: skip
            "selection_score": {
                "mean_final_valid_loss_heldout_family_samples": self.best_score,
                "tasks": self.recipe.eval_tasks,
            },  # fmt: skip
        }


def final_valid_loss(net: LearnedOptimizerCore, meta: dict[str, Tensor], task: Task, steps: int, seed: int) -> float:
    """Train `task` for `steps` with the learned optimizer (no meta-graph); its validation loss, capped."""
    unroll = start_seeded_unroll(task, net, steps, seed)
    with torch.no_grad():
        while not unroll.done:
            truncation = draw_truncation(unroll, 100, with_valid=False)
            _, unroll = run_truncation(net, meta, unroll, truncation)
            if not all(bool(torch.isfinite(p).all()) for p in unroll.params.values()):
                return EVAL_LOSS_CAP
    loss = task.evaluate(unroll.params, "valid", metrics=False)["loss"]
    return min(loss, EVAL_LOSS_CAP) if math.isfinite(loss) else EVAL_LOSS_CAP
