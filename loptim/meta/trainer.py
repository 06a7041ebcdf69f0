"""The outer loop: Adam on the meta-parameters over estimated meta-gradients, with evaluation, best-checkpoint
keeping, atomic checkpoints and exact resume (all randomness derives from (recipe seed, epoch), never from
global state, so a resumed run repeats the uninterrupted one bit for bit).

`OuterTrainer` holds what every recipe shares; `L2LTrainer` (here) and `MetzTrainer` (meta/metz.py) say what one
epoch is and how a checkpoint is scored. Under torchrun (loptim.meta.distributed) every rank runs the same outer
loop on its share of the samples and holds the same meta-parameters; only rank 0 prints, checkpoints and exports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from loptim.meta import distributed as dist
from loptim.meta.checkpoint import load_checkpoint, save_checkpoint
from loptim.meta.estimators import TruncatedBackprop, estimate_samples
from loptim.meta.recipes import L2LRecipe
from loptim.meta.unroll import draw_truncation, start_unroll
from loptim.optimizers.core import LearnedOptimizerCore
from loptim.optimizers.lstm import LSTMOptimizerNet
from loptim.pretrained import save_learned
from loptim.tasks import get_task
from loptim.tasks.base import Task
from loptim.tasks.partition import check_meta_trainable

EVAL_SEED_BASE = 10_000_000  # checkpoint selection uses these seeds; `loptim bench` uses 0, 1, 2, ...


def epoch_seed(recipe_seed: int, epoch: int) -> int:
    """The seed of an epoch's inner run (initialization and batches), a pure function of (recipe seed, epoch)."""
    return (recipe_seed * 1_000_003 + epoch) * 7 + 12_345


def rollout(
    net: LearnedOptimizerCore, meta_params: dict[str, Tensor], task: Task, steps: int, seed: int
) -> tuple[float, dict]:
    """Train a fresh `task` with the learned optimizer: (mean minibatch loss over the last 10% of steps, params);
    inf if the run diverges."""
    unroll = start_unroll(task, net, steps, seed)
    params, state, losses = unroll.params, unroll.opt_state, []
    for step in range(steps):
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss = task.loss(params, next(unroll.batches))
        grads = torch.autograd.grad(loss, list(params.values()))
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            return math.inf, params
        with torch.no_grad():
            params, state = net.update(meta_params, state, params, dict(zip(params, grads)), step=step,
                                       total_steps=steps, differentiable=False)  # fmt: skip
    tail = losses[-max(1, steps // 10) :]
    return sum(tail) / len(tail), params


def derive_seed(*parts: int) -> int:
    """A seed that is a pure function of its integer parts (recipe seed, epoch, sample index, ...)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (2**61 - 1)
    return value


def task_seed(recipe_seed: int, epoch: int, index: int) -> int:
    """The seed of inner run `index` of an epoch's meta-batch; run 0 keeps the single-run `epoch_seed`."""
    return epoch_seed(recipe_seed, epoch) + index * 2**32


def rollout_train_loss(
    net: LearnedOptimizerCore, meta_params: dict[str, Tensor], task: Task, steps: int, seed: int
) -> float:
    return rollout(net, meta_params, task, steps, seed)[0]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


class EpochLoop:
    """The epoch loop every trainer shares: train, evaluate every `eval_every` epochs, keep and export the best,
    checkpoint, stop at the deadline on the same epoch on every rank. Subclasses provide `train_epoch`,
    `evaluate`, `trained_state` (what ranks must agree on and what "best" keeps), `save`, `export`, `postfix`."""

    eval_key = "eval_score"
    higher_is_better = False  # scores: lower is better (losses) unless a subclass says otherwise (rewards)
    checkpoint_every_epoch = False  # else only after evaluations (and at the end)
    recipe: Any
    epoch: int
    seconds: float
    best: dict[str, Tensor] | None
    best_score: float
    best_epoch: int
    history: list[dict[str, float]]
    commands: list[str]
    code_commit: str
    out: Path

    @property
    def total_epochs(self) -> int:
        return self.recipe.epochs

    def train_epoch(self) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self) -> float:
        raise NotImplementedError

    def trained_state(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def save(self) -> None:
        raise NotImplementedError

    def export(self, command: str | None = None) -> Path:
        raise NotImplementedError

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {}

    def write_weights(self, kind: str, net: nn.Module, config: dict[str, Any], fields: dict[str, Any],
                      command: str | None) -> Path:  # fmt: skip
        """best.safetensors + its JSON card (`fields` plus the run's provenance) + history.json, in `out`."""
        card = {
            **fields,
            "architecture": config,
            "recipe": asdict(self.recipe),
            "command": self.commands[0] if self.commands else command,
            "invocations": self.commands,
            "seed": self.recipe.seed,
            "git_commit": self.code_commit,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epoch,
            "finished": self.epoch >= self.total_epochs,
            "meta_training_seconds": round(self.seconds, 1),
        }
        path = self.out / "best.safetensors"
        save_learned(path, kind, net, config, card)
        (self.out / "history.json").write_text(json.dumps(self.history))
        return path

    def close(self) -> None:
        """Release resources (worker pools) when the loop ends."""

    def _better(self, score: float) -> bool:
        return score > self.best_score if self.higher_is_better else score < self.best_score

    def run(
        self,
        max_minutes: float | None = None,
        progress: bool = True,
        command: str | None = None,
        stop_at_epoch: int | None = None,
    ) -> bool:
        """Train until the recipe's epochs are done, `max_minutes` pass or `stop_at_epoch`; True when finished."""
        recipe, total = self.recipe, self.total_epochs
        self.commands.append(command or " ".join(["loptim", *sys.argv[1:]]))
        deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else math.inf
        last = min(total, stop_at_epoch if stop_at_epoch is not None else total)
        quiet = not progress or not dist.is_main()
        bar = tqdm(total=total, initial=self.epoch, desc=f"meta-train {recipe.name}", disable=quiet)
        interrupted = False
        try:
            while self.epoch < last and not dist.broadcast(time.monotonic() >= deadline):
                start = time.perf_counter()
                record = self.train_epoch()
                dist.check_identical(self.trained_state())
                self.epoch += 1
                evaluate = self.epoch % recipe.eval_every == 0 or self.epoch == total
                if evaluate:
                    record[self.eval_key] = score = self.evaluate()
                    if self._better(score):
                        self.best_score, self.best_epoch = score, self.epoch
                        self.best = {k: v.detach().clone() for k, v in self.trained_state().items()}
                self.seconds += time.perf_counter() - start
                record["seconds"] = round(self.seconds, 2)
                self.history.append(record)
                bar.update(1)
                bar.set_postfix(self.postfix(record))
                if evaluate and self.best_epoch == self.epoch and dist.is_main():
                    self.export(command)
                if evaluate or self.checkpoint_every_epoch:
                    self.save()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt): keep the work
            interrupted = True
        finally:
            bar.close()
            self.close()
        self.save()
        if interrupted:
            if dist.is_main():
                print(f"interrupted at epoch {self.epoch}: checkpoint saved; continue with --resume", file=sys.stderr)
            raise KeyboardInterrupt
        if self.best is not None and dist.is_main():
            self.export(command)  # the card records how far this run got
        return self.epoch >= total


class OuterTrainer(EpochLoop):
    """Adam over the meta-parameters of `net`, epochs counted, best held-out checkpoint kept and exported.

    Subclasses set `kind` and implement `train_epoch`, `evaluate` and `card_fields`; they may add state through
    `extra_state` / `load_extra_state`.
    """

    kind = ""

    def __init__(self, recipe: Any, out: Path, net: nn.Module, config: Any) -> None:
        self.code_commit = git_commit()  # the code this process loaded (the tree may change while it trains)
        self.recipe = recipe
        self.out = Path(out)
        self.net = net
        self.config = config
        self.meta = {k: v.detach().clone().requires_grad_(True) for k, v in net.meta_params().items()}
        self.adam = torch.optim.Adam(list(self.meta.values()), lr=recipe.meta_lr, betas=self.adam_betas())
        self.epoch = 0
        self.seconds = 0.0
        self.best: dict[str, Tensor] | None = None
        self.best_score = math.inf
        self.best_epoch = -1
        self.history: list[dict[str, float]] = []
        self.commands: list[str] = []  # every invocation (the first trains; later ones resume)

    def adam_betas(self) -> tuple[float, float]:
        return (0.9, 0.999)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def trained_state(self) -> dict[str, Tensor]:
        return self.meta

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {"meta_loss": f"{record['meta_loss']:.3f}", "best": f"{self.best_score:.4f}"}

    def card_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def apply_gradient(self, grads: dict[str, Tensor]) -> float:
        """One clipped Adam step on the meta-parameters; returns the pre-clip gradient norm."""
        for k, p in self.meta.items():
            p.grad = grads[k]
        norm = float(torch.nn.utils.clip_grad_norm_(list(self.meta.values()), self.recipe.clip_norm))
        self.adam.step()
        return norm

    def state(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "epoch": self.epoch,
            "seconds": self.seconds,
            "meta": {k: v.detach().clone() for k, v in self.meta.items()},
            "adam": self.adam.state_dict(),
            "best": self.best,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "commands": self.commands,
            **self.extra_state(),
        }

    def save(self) -> None:
        """Write the checkpoint atomically from rank 0 (every rank calls this: the state may be gathered)."""
        state = self.state()
        if dist.is_main():
            save_checkpoint(self.checkpoint_path, state)

    def resume(self, path: Path | None = None) -> None:
        """Continue exactly from `checkpoint_path` (or `path`; read by rank 0, sent to every rank: any world size)."""
        path = self.checkpoint_path if path is None else Path(path)
        ckpt = dist.broadcast(load_checkpoint(path) if dist.is_main() else None)
        if ckpt["recipe"] != self.recipe.name:
            raise ValueError(f"{path} is from recipe '{ckpt['recipe']}', not '{self.recipe.name}'")
        with torch.no_grad():
            for k, v in ckpt["meta"].items():
                self.meta[k].copy_(v)
        self.adam.load_state_dict(ckpt["adam"])
        self.epoch, self.seconds = ckpt["epoch"], ckpt["seconds"]
        self.best, self.best_score, self.best_epoch = ckpt["best"], ckpt["best_score"], ckpt["best_epoch"]
        self.history = ckpt["history"]
        self.commands = ckpt.get("commands", [])
        self.load_extra_state(ckpt)

    def export(self, command: str | None = None) -> Path:
        """Write the best meta-parameters so far as best.safetensors with its JSON card."""
        net = type(self.net)(self.config)
        with torch.no_grad():
            for k, p in net.named_parameters():
                p.copy_((self.best or self.meta)[k])
        return self.write_weights(self.kind, net, asdict(self.config), self.card_fields(), command)


class L2LTrainer(OuterTrainer):
    """Meta-trains the LSTM optimizer with truncated backprop on one task (a fresh initialization per epoch)."""

    kind = "lstm"

    def __init__(self, recipe: L2LRecipe, out: Path) -> None:
        net = LSTMOptimizerNet(recipe.lstm, generator=torch.Generator().manual_seed(recipe.seed))
        super().__init__(recipe, out, net, recipe.lstm)
        self.estimator = TruncatedBackprop()
        self.task = check_meta_trainable(get_task(recipe.task))

    def train_epoch(self) -> dict[str, float]:
        """`meta_batch` inner runs of `horizon` steps in lockstep (split across ranks); one meta-update per
        truncation from the gradients of all runs, averaged in run order."""
        recipe = self.recipe
        unrolls = [
            start_unroll(self.task, self.net, recipe.horizon, task_seed(recipe.seed, self.epoch, index))
            for index in dist.my_indices(recipe.meta_batch)
        ]
        meta_losses, norms, step = [], [], 0
        while step < recipe.horizon:
            truncations = [draw_truncation(unroll, recipe.truncation, with_valid=False) for unroll in unrolls]
            seeds = [0] * len(unrolls)  # truncated backprop draws no noise
            estimate = estimate_samples(
                self.estimator, self.net, self.meta, unrolls, truncations, seeds, dist.gather_samples
            )
            unrolls, step = estimate.unrolls, min(recipe.horizon, step + recipe.truncation)
            grads = estimate.grads
            finite = math.isfinite(estimate.stats["meta_loss"]) and all(torch.isfinite(g).all() for g in grads.values())
            if not finite:
                meta_losses.append(math.inf)
                break  # a diverged inner run is abandoned; the next epoch starts a fresh one
            norms.append(self.apply_gradient(grads))
            meta_losses.append(estimate.stats["meta_loss"] / recipe.truncation)
        return {"epoch": self.epoch, "meta_loss": sum(meta_losses) / len(meta_losses),
                "grad_norm": sum(norms) / max(len(norms), 1)}  # fmt: skip

    def evaluate(self) -> float:
        """Mean final training loss over held-out initializations (the paper's objective on unseen seeds)."""
        meta = {k: v.detach() for k, v in self.meta.items()}
        scores = dist.map_samples(
            self.recipe.eval_runs,
            lambda i: rollout_train_loss(self.net, meta, self.task, self.recipe.horizon, EVAL_SEED_BASE + 3 * i),
        )
        return sum(scores) / len(scores)

    def card_fields(self) -> dict[str, Any]:
        return {
            "optimizer": "lstm (Andrychowicz et al. 2016)",
            "meta_trained_on": [self.recipe.task],
            "selection_score": {"mean_final_train_loss_heldout_seeds": self.best_score, "runs": self.recipe.eval_runs},
        }
