"""Meta-training the generalist MLP optimizer (loptim.optimizers.mlp_generalist) with PES over whole inner runs.

`slots` inner runs of tasks drawn from an augmented mixture of meta-train families, each of a log-uniform length
in `inner_steps`, advance by one truncation per outer step (all slots' truncations share that step's length);
PES (loptim.meta.pes) turns them into one meta-gradient; runs restart with a fresh task when they end or diverge.
Checkpoints are selected on meta-validation tasks by the mean log ratio of the learned optimizer's final
validation loss to Adam's at its default learning rate (negative: better than Adam). A campaign checkpoint
(`compact`) keeps only what is needed to go on (meta-parameters, Adam's state, counters, the best so far): the
inner runs in flight restart on resume, and the per-epoch log lives in its own file.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import torch

from loptim.meta import distributed as dist
from loptim.meta.checkpoint import save_checkpoint
from loptim.meta.estimators import estimate_samples
from loptim.meta.pes import PES, PESRun, start_run
from loptim.meta.recipes import GeneralistRecipe
from loptim.meta.trainer import EVAL_SEED_BASE, OuterTrainer, derive_seed
from loptim.meta.unroll import _stream, draw_truncation, run_truncation, start_seeded_unroll
from loptim.optimizers.core import LearnedOptimizerCore
from loptim.optimizers.mlp import MLPOptimizerNet, generalist_config
from loptim.tasks import get_task
from loptim.tasks.augment import MixtureFamily
from loptim.tasks.base import Task, log_uniform_int
from loptim.tasks.partition import check_meta_trainable


class GeneralistTrainer(OuterTrainer):
    """Outer loop for `GeneralistRecipe` (Adam on the meta-parameters; the shared EpochLoop bookkeeping)."""

    kind = "mlp"
    checkpoint_every_epoch = True  # a few KB: an interruption loses at most one outer step

    def __init__(self, recipe: GeneralistRecipe, out: Path, campaign: Path | None = None) -> None:
        net = MLPOptimizerNet(recipe.mlp, generator=torch.Generator().manual_seed(recipe.seed))
        super().__init__(recipe, out, net, recipe.mlp)
        self.estimator = PES(recipe.sigma)
        self.family = MixtureFamily(recipe.families, recipe.augment, recipe.log10_scales, name=recipe.name)
        self.slots: list[PESRun | None] = [None] * recipe.slots
        self.campaign = campaign
        self.experience = 0  # inner steps taken, both trajectories of every run counted

    def adam_betas(self) -> tuple[float, float]:
        return (self.recipe.meta_beta1, 0.999)

    def _start(self, slot: int) -> PESRun:
        task_seed = derive_seed(self.recipe.seed, self.epoch, slot, 1)
        task = check_meta_trainable(self.family.sample(torch.Generator().manual_seed(task_seed)))
        length = log_uniform_int(torch.Generator().manual_seed(task_seed + 1), *self.recipe.inner_steps)
        unroll = start_seeded_unroll(task, self.net, length, task_seed)
        with torch.no_grad():
            batch = next(_stream(unroll, "valid", 3))
            initial = float(task.loss(unroll.params, batch))
        return start_run(unroll, self.meta, initial)

    def train_epoch(self) -> dict[str, float]:
        recipe = self.recipe
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, self.epoch, 0))
        length = int(torch.randint(recipe.truncation[0], recipe.truncation[1] + 1, (), generator=generator))
        mine = dist.my_indices(recipe.slots)
        runs = []
        for slot in mine:
            run = self.slots[slot]
            runs.append(self._start(slot) if run is None or run.done else run)
        truncations = [draw_truncation(run.plus, length, with_valid=True) for run in runs]
        seeds = [derive_seed(recipe.seed, self.epoch, slot, 2) for slot in mine]
        estimate = estimate_samples(self.estimator, self.net, self.meta, runs, truncations, seeds, dist.gather_samples)
        finite = all(bool(torch.isfinite(g).all()) for g in estimate.grads.values())
        norm = self.apply_gradient(estimate.grads) if finite else math.nan
        for slot, end, truncation in zip(mine, estimate.unrolls, truncations):
            alive = all(bool(torch.isfinite(p).all()) for p in (*end.plus.params.values(), *end.minus.params.values()))
            self.slots[slot] = end if alive else None
            self.experience += 2 * len(truncation)
        record = {"epoch": self.epoch, "meta_loss": estimate.stats["meta_loss"], "grad_norm": norm,
                  "truncation": length, "experience": self.experience,
                  **{k: v for k, v in estimate.stats.items() if k != "meta_loss"}}  # fmt: skip
        self._log(record)
        return record

    def evaluate(self) -> float:
        """Mean over meta-validation tasks of log(final valid loss / Adam-at-1e-3's), on a held-out seed."""
        meta = {k: v.detach() for k, v in self.meta.items()}
        scores = []
        for name in self.recipe.eval_tasks:
            task = get_task(name)
            learned = final_valid_loss(self.net, meta, task, task.default_steps, EVAL_SEED_BASE)
            scores.append(math.log(learned / adam_reference(name, EVAL_SEED_BASE)))
        score = sum(scores) / len(scores)
        self._log({"epoch": self.epoch, "eval_score": score, **dict(zip(self.recipe.eval_tasks, scores))})
        return score

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {"meta_loss": f"{record['meta_loss']:.3f}", "best": f"{self.best_score:.4f}"}

    def _log(self, record: dict[str, Any]) -> None:
        if self.campaign is not None and dist.is_main():
            self.campaign.mkdir(parents=True, exist_ok=True)
            with open(self.campaign / "log.jsonl", "a") as log:
                log.write(
                    json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}) + "\n"
                )

    def extra_state(self) -> dict[str, Any]:
        return {"experience": self.experience}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.experience = int(state.get("experience", 0))

    def save(self) -> None:
        """The local checkpoint (exact resume, in-flight runs restart) and, for a campaign, the compact copy."""
        super().save()
        if self.campaign is not None and dist.is_main():
            state = self.state()
            state["history"] = state["history"][-1:]  # the full history is the campaign's log.jsonl
            save_checkpoint(self.campaign / "checkpoint.pt", state)

    def card_fields(self) -> dict[str, Any]:
        return {
            "optimizer": "mlp, generalist design (docs/generalist.md)",
            "meta_trained_on": [f"mixture {self.recipe.families}, reparameterized with p={self.recipe.augment}"],
            "selection_score": {
                "mean_log_ratio_final_valid_loss_to_adam_1e-3": self.best_score,
                "tasks": list(self.recipe.eval_tasks),
            },
            "experience_inner_steps": self.experience,
        }


def final_valid_loss(
    net: LearnedOptimizerCore, meta: dict[str, torch.Tensor], task: Task, steps: int, seed: int
) -> float:
    """Train `task` for `steps` with the learned optimizer; its final validation loss (10x the initial if it
    diverged)."""
    unroll = start_seeded_unroll(task, net, steps, seed)
    initial = task.evaluate(unroll.params, "valid", metrics=False)["loss"]
    with torch.no_grad():
        while not unroll.done:
            _, unroll = run_truncation(net, meta, unroll, draw_truncation(unroll, 100, with_valid=False))
            if not all(bool(torch.isfinite(p).all()) for p in unroll.params.values()):
                return 10.0 * initial
    loss = task.evaluate(unroll.params, "valid", metrics=False)["loss"]
    return loss if math.isfinite(loss) else 10.0 * initial


@cache
def adam_reference(name: str, seed: int) -> float:
    """Adam at lr 1e-3 on the same task, steps and seed (the generalist's initialization): the score's unit."""
    net = MLPOptimizerNet(generalist_config(), generator=torch.Generator().manual_seed(0))
    meta = {k: v.detach() for k, v in net.meta_params().items()}  # output layer and schedule at zero: Adam
    task = get_task(name)
    return final_valid_loss(net, meta, task, task.default_steps, seed)
