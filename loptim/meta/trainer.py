"""The one meta-trainer: Adam on a learned optimizer's meta-parameters over meta-gradients estimated from inner
runs, composed of a core, a task source, an estimator, a truncation schedule, a run lifetime and a checkpoint
score (loptim.meta.parts), all named by a recipe (loptim.meta.recipes). L2L (Andrychowicz et al. 2016), Metz et
al. 2019 and the generalist are recipes of it; so is the LSTM core under ES (`lstm-es-quadratic`).

Under torchrun (loptim.meta.distributed) every rank runs the same outer loop on its share of the run slots and
holds the same meta-parameters; samples are gathered in slot order, so the result does not depend on the number
of ranks, nor on which rank runs which slot: carried runs move between ranks so that each rank's share of the
last epoch's seconds is balanced. Only rank 0 prints, checkpoints and exports.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from loptim.io import load_checkpoint, save_checkpoint
from loptim.meta import distributed as dist
from loptim.meta.estimators import estimate_samples
from loptim.meta.loop import EpochLoop, derive_seed, git_commit, task_seed
from loptim.meta.parts import EVAL_SEED_BASE, CarriedRuns, FreshRuns, Parts
from loptim.meta.unroll import UnrollState, start_seeded_unroll, start_unroll

__all__ = ["EVAL_SEED_BASE", "EpochLoop", "MetaTrainer", "derive_seed", "git_commit", "warm_start"]


def warm_start(net: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy `source`'s meta-parameters into `net`'s: equal shapes whole; where `net`'s tensor has more columns
    (inputs added to a design, e.g. loss features), into the leading columns with the new ones zero, so that
    `net` computes what `source` did until meta-training moves the new weights."""
    theirs = dict(source.named_parameters())
    with torch.no_grad():
        for name, mine in net.named_parameters():
            other = theirs.get(name)
            if other is None or other.shape[:-1] != mine.shape[:-1] or other.shape[-1] > mine.shape[-1]:
                found = None if other is None else tuple(other.shape)
                raise ValueError(f"cannot warm-start {name} {tuple(mine.shape)} from {found}")
            mine.zero_()
            mine[..., : other.shape[-1]].copy_(other)


class MetaTrainer(EpochLoop):
    """Meta-trains `recipe.parts()`; `campaign` (a folder) also receives a compact checkpoint and a per-epoch
    log.jsonl, for recipes whose runs in flight are not checkpointed (they restart on resume)."""

    def __init__(self, recipe: Any, out: Path, campaign: Path | None = None) -> None:
        self.code_commit = git_commit()  # the code this process loaded (the tree may change while it trains)
        self.recipe = recipe
        self.parts: Parts = recipe.parts()
        runs = self.parts.runs
        if campaign is not None and not (isinstance(runs, CarriedRuns) and not runs.in_checkpoint):
            raise ValueError(f"recipe '{recipe.name}' checkpoints its runs in flight: it has no compact campaign form")
        self.out = Path(out)
        self.campaign = None if campaign is None else Path(campaign)
        self.config = self.parts.core
        self.kind = self.config.kind
        self.net = self.config.build(generator=torch.Generator().manual_seed(recipe.seed))
        if self.parts.init_from is not None:
            from loptim.pretrained import load_learned

            warm_start(self.net, load_learned(self.kind, self.parts.init_from))
        self.core = self.net
        self.meta = {k: v.detach().clone().requires_grad_(True) for k, v in self.net.meta_params().items()}
        unknown = set(getattr(self.parts.estimator, "perturbed", None) or ()) - set(self.meta)
        if unknown:
            raise ValueError(
                f"recipe '{recipe.name}' perturbs {sorted(unknown)}, which its optimizer does not have: "
                f"choose among {sorted(self.meta)}"
            )
        outer = self.parts.outer
        self.adam = torch.optim.Adam(list(self.meta.values()), lr=outer.lr, betas=(outer.beta1, 0.999))
        self.tasks = self.parts.tasks
        self.estimator = self.parts.estimator
        self.slots: list[Any] = [None] * runs.count  # the estimator's run objects (None: start afresh)
        self.owners: list[int] | None = None  # the rank of each slot (None: contiguous blocks)
        self.slot_seconds: list[float] | None = None  # each slot's last sample, in seconds (for balancing)
        self.checkpoint_every_epoch = isinstance(runs, CarriedRuns) and not runs.in_checkpoint
        self.epoch = 0
        self.seconds = 0.0
        self.experience = 0  # inner steps taken, every trajectory of every run counted
        self.best: dict[str, Tensor] | None = None
        self.best_score = math.inf
        self.best_epoch = -1
        self.history: list[dict[str, float]] = []
        self.commands: list[str] = []  # every invocation (the first trains; later ones resume)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def trained_state(self) -> dict[str, Tensor]:
        return self.meta

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {"meta_loss": f"{record['meta_loss']:.3f}", "best": f"{self.best_score:.4f}"}

    # --- one epoch ---------------------------------------------------------------------------------------------

    def _mine(self) -> list[int]:
        """The slots this rank runs."""
        count = self.parts.runs.count
        if self.owners is None:
            return list(dist.my_indices(count))
        return [slot for slot, owner in enumerate(self.owners) if owner == dist.rank()]

    def _rebalance(self) -> None:
        """Give each rank an equal share of the last epoch's sample seconds (longest first onto the least loaded),
        moving carried runs to their new ranks as checkpoint data. The samples stay reduced in slot order, so the
        meta-parameters are those of any other assignment, bit for bit. Only carried runs that checkpoint move."""
        runs = self.parts.runs
        movable = isinstance(runs, CarriedRuns) and runs.in_checkpoint
        if dist.world_size() == 1 or not movable or self.slot_seconds is None:
            return
        old = self.owners or [dist.shard_of(slot, runs.count) for slot in range(runs.count)]
        new = dist.balanced(self.slot_seconds)
        if new == old:
            return
        leaving = {slot: _slot_data(self.slots[slot]) for slot in range(runs.count)
                   if old[slot] == dist.rank() and new[slot] != old[slot]}  # fmt: skip
        for part in dist.all_gather(leaving):
            for slot, data in part.items():
                arriving = new[slot] == dist.rank()
                self.slots[slot] = self._unroll(data) if arriving and data is not None else None
        self.owners = new

    def _start(self, slot: int) -> Any:
        """A fresh inner run for `slot`, wrapped as the estimator wants it."""
        if isinstance(self.parts.runs, FreshRuns):
            seed = task_seed(self.recipe.seed, self.epoch, slot)
            task = self.tasks.task(seed)
            unroll = start_unroll(task, self.net, self.tasks.length(seed), seed, with_valid=self._valid)
        else:
            seed = derive_seed(self.recipe.seed, self.epoch, slot, 1)
            unroll = start_seeded_unroll(self.tasks.task(seed), self.net, self.tasks.length(seed), seed)
        return self.estimator.start(unroll, self.meta)

    @property
    def _valid(self) -> bool:
        return self.estimator.objective.split == "valid"

    def apply_gradient(self, grads: dict[str, Tensor]) -> float:
        """One clipped Adam step on the meta-parameters; returns the pre-clip gradient norm."""
        for k, p in self.meta.items():
            p.grad = grads[k]
        norm = float(torch.nn.utils.clip_grad_norm_(list(self.meta.values()), self.parts.outer.clip_norm))
        self.adam.step()
        return norm

    def train_epoch(self) -> dict[str, float]:
        """This rank's run slots advance by one truncation per outer update (fresh runs: until they end; carried
        runs: once); each update's meta-gradient comes from all slots' samples, in slot order. Slot i's task,
        truncation length and noise derive from (recipe seed, epoch, i) alone."""
        recipe, runs, fresh = self.recipe, self.parts.runs, isinstance(self.parts.runs, FreshRuns)
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, self.epoch, 0))
        lengths = self.parts.schedule.lengths(self.epoch, generator, runs.count)  # all slots'
        self._rebalance()
        mine = self._mine()
        if fresh:
            self.slots = [None] * runs.count
        current = [self.slots[slot] if self._alive(self.slots[slot]) else self._start(slot) for slot in mine]
        meta_losses, norms, stats, update = [], [], {}, 0
        while True:
            positions = [self.estimator.position(run) for run in current]
            truncations = [self.estimator.draw(run, lengths[slot], self._valid) for slot, run in zip(mine, current)]
            seeds = [derive_seed(recipe.seed, self.epoch, slot, 2 + 2 * update) for slot in mine]
            estimate = estimate_samples(
                self.estimator, self.net, self.meta, current, truncations, seeds,
                lambda local: dist.gather_indexed(mine, local),
            )  # fmt: skip
            current = estimate.unrolls
            if not fresh and dist.world_size() > 1:
                self.slot_seconds = dist.gather_indexed(mine, estimate.seconds)
            steps = sum(dist.all_gather(sum(len(t) for t in truncations)))  # every rank's runs
            self.experience += self.estimator.trajectories * steps
            meta_loss = estimate.stats["meta_loss"]
            stats = {k: v for k, v in estimate.stats.items() if k != "meta_loss"}
            finite = all(bool(torch.isfinite(g).all()) for g in estimate.grads.values())
            if fresh and not (finite and math.isfinite(meta_loss)):
                meta_losses.append(math.inf)  # a diverged inner run is abandoned; the next epoch starts afresh
                break
            norms.append(self.apply_gradient(estimate.grads) if finite else math.nan)
            per_step = lengths[0] if self.estimator.objective.reduce == "sum" else 1  # a sum: per inner step
            meta_losses.append(meta_loss / per_step)
            update += 1
            if not fresh or all(position.step + len(t) >= position.total_steps
                                for position, t in zip(positions, truncations)):  # fmt: skip
                break
        for slot, run in zip(mine, current):
            self.slots[slot] = None if fresh or not self.estimator.alive(run) else run
        truncation = lengths[0] if len(set(lengths)) == 1 else sum(lengths) / len(lengths)
        record = {"epoch": self.epoch, "meta_loss": sum(meta_losses) / len(meta_losses),
                  "grad_norm": sum(norms) / max(len(norms), 1), "truncation": truncation,
                  "experience": self.experience, **stats}  # fmt: skip
        self._log(record)
        return record

    def _alive(self, run: Any) -> bool:
        return run is not None and not run.done

    def evaluate(self) -> float:
        """The recipe's held-out score of the current meta-parameters (lower is better)."""
        meta = {k: v.detach() for k, v in self.meta.items()}
        score, parts = self.parts.score(self.net, meta, self.tasks, dist.map_samples)
        self._log({"epoch": self.epoch, "eval_score": score, **parts})
        return score

    def _log(self, record: dict[str, Any]) -> None:
        """A campaign's log.jsonl: one line per epoch and per evaluation."""
        if self.campaign is not None and dist.is_main():
            self.campaign.mkdir(parents=True, exist_ok=True)
            with open(self.campaign / "log.jsonl", "a") as log:
                log.write(
                    json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}) + "\n"
                )

    # --- checkpoints -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds (collective under torchrun: the runs in flight are gathered to every rank)."""
        state = {
            **self.loop_state(),
            "meta": {k: v.detach().clone() for k, v in self.meta.items()},
            "adam": self.adam.state_dict(),
            "experience": self.experience,
        }
        runs = self.parts.runs
        if isinstance(runs, CarriedRuns) and runs.in_checkpoint:
            slots = [_slot_data(run) for run in self.slots]
            mine = {slot: slots[slot] for slot in self._mine()}
            for part in dist.all_gather(mine):
                for slot, data in part.items():
                    slots[slot] = data
            state["slots"] = slots
        return state

    def save(self) -> None:
        """The checkpoint, atomically from rank 0 (every rank calls this: the state may be gathered); for a
        campaign also the compact copy (its full history is the campaign's log.jsonl)."""
        state = self.state()
        if dist.is_main():
            save_checkpoint(self.checkpoint_path, state)
            if self.campaign is not None:
                save_checkpoint(self.campaign / "checkpoint.pt", {**state, "history": state["history"][-1:]})

    def resume(self, path: Path | None = None) -> None:
        """Continue exactly from `checkpoint_path` (or `path`; read by rank 0, sent to every rank: any world size)."""
        path = self.checkpoint_path if path is None else Path(path)
        ckpt = dist.broadcast(load_checkpoint(path) if dist.is_main() else None)
        self.load_loop_state(ckpt, path)
        with torch.no_grad():
            for k, v in ckpt["meta"].items():
                self.meta[k].copy_(v)
        self.adam.load_state_dict(ckpt["adam"])
        for group in self.adam.param_groups:  # the recipe's outer learning rate holds (a later segment may lower it)
            if group["lr"] != self.parts.outer.lr and dist.is_main():
                print(f"outer learning rate {group['lr']:g} -> {self.parts.outer.lr:g} (recipe '{self.recipe.name}')")
            group["lr"] = self.parts.outer.lr
        self.experience = int(ckpt.get("experience", 0))
        if "slots" in ckpt:
            if len(ckpt["slots"]) != self.parts.runs.count:
                raise ValueError(
                    f"checkpoint holds {len(ckpt['slots'])} inner runs; the recipe has {self.parts.runs.count}"
                )
            self.slots = [None if data is None else self._unroll(data) for data in ckpt["slots"]]

    def _unroll(self, data: dict[str, Any]) -> UnrollState:
        return UnrollState(self.tasks.task(data["task_seed"]), data["params"], data["opt_state"], data["step"],
                           data["total_steps"], seed=data["task_seed"])  # fmt: skip

    def export(self, command: str | None = None) -> Path:
        """Write the best meta-parameters so far as best.safetensors with its JSON card."""
        net = self.config.build()
        with torch.no_grad():
            for k, p in net.named_parameters():
                p.copy_((self.best or self.meta)[k])
        card = {**self.parts.card}
        card["selection_score"] = {self.parts.score.label: self.best_score, **card.get("selection_score", {})}
        if self.experience:
            card["experience_inner_steps"] = self.experience
        return self.write_weights(self.kind, net, asdict(self.config), card, command)


def _slot_data(run: Any) -> dict[str, Any] | None:
    """A carried inner run as checkpoint data (its batches derive from (seed, step): nothing else to keep)."""
    if run is None:
        return None
    if not isinstance(run, UnrollState):
        raise TypeError(f"{type(run).__name__} runs cannot be checkpointed: use CarriedRuns(in_checkpoint=False)")
    return {"task_seed": run.seed, "params": run.params, "opt_state": run.opt_state, "step": run.step,
            "total_steps": run.total_steps}  # fmt: skip
