"""The epoch loop every meta-trainer shares (MetaTrainer, LHOPT's PPO trainer): train, evaluate, keep and export
the best, checkpoint, stop at a deadline on the same epoch on every rank, checkpoint on Ctrl-C/SIGTERM. All
randomness derives from (recipe seed, epoch), never from global state, so a resumed run repeats the
uninterrupted one bit for bit."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from tqdm import tqdm

from loptim.meta import distributed as dist
from loptim.pretrained import save_learned


def epoch_seed(recipe_seed: int, epoch: int) -> int:
    """The seed of an epoch's inner run (initialization and batches), a pure function of (recipe seed, epoch)."""
    return (recipe_seed * 1_000_003 + epoch) * 7 + 12_345


def derive_seed(*parts: int) -> int:
    """A seed that is a pure function of its integer parts (recipe seed, epoch, sample index, ...)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (2**61 - 1)
    return value


def task_seed(recipe_seed: int, epoch: int, index: int) -> int:
    """The seed of inner run `index` of an epoch's meta-batch; run 0 keeps the single-run `epoch_seed`."""
    return epoch_seed(recipe_seed, epoch) + index * 2**32


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

    def loop_state(self) -> dict[str, Any]:
        """The bookkeeping every trainer's checkpoint holds: recipe name, epoch, seconds, the best state and its
        score and epoch, the per-epoch history and the commands that ran it."""
        return {
            "recipe": self.recipe.name,
            "epoch": self.epoch,
            "seconds": self.seconds,
            "best": self.best,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "commands": self.commands,
        }

    def load_loop_state(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Restore `loop_state`'s fields from a checkpoint read from `path`, refusing another recipe's; a compact
        checkpoint may lack the history and the commands."""
        if checkpoint["recipe"] != self.recipe.name:
            raise ValueError(f"{path} is from recipe '{checkpoint['recipe']}', not '{self.recipe.name}'")
        self.epoch, self.seconds = checkpoint["epoch"], checkpoint["seconds"]
        self.best, self.best_score = checkpoint["best"], checkpoint["best_score"]
        self.best_epoch = checkpoint["best_epoch"]
        self.history, self.commands = checkpoint.get("history", []), checkpoint.get("commands", [])

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
