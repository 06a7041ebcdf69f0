"""One rank of a test launch (tests/test_distributed.py): runs a JSON list of small meta-training jobs in order.

Usage: python tests/distributed_worker.py JOBS.json, with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT) set by the test. A job is {"trainer": "lstm" | "mlp" | "lhopt", "recipe": name, "changes": {...},
"out": dir, "stop_at_epoch": int | null, "resume": bool, "die": {"rank": r, "epoch": e} | null, "costs": per-epoch
slot costs | null} or {"cli": argv}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from loptim.cli import main
from loptim.meta import distributed as dist
from loptim.meta.lhopt_trainer import LHOPTTrainer
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer

TRAINERS = {"lstm": MetaTrainer, "mlp": MetaTrainer, "lhopt": LHOPTTrainer}
DIED_EXIT_CODE = 3


def run_job(job: dict[str, Any]) -> None:
    """Run one job on this rank (alone when no process group is set up)."""
    if "cli" in job:
        if main(job["cli"]) != 0:
            raise SystemExit(f"CLI job failed: {job['cli']}")
        return
    recipe = dataclasses.replace(RECIPES.get(job["recipe"]), **job.get("changes", {}))
    trainer = TRAINERS[job["trainer"]](recipe, Path(job["out"]))
    if job.get("resume"):
        trainer.resume()
    costs = job.get("costs")  # forced per-epoch slot costs: the balancer moves runs between ranks every epoch
    if costs is not None:
        rebalance = trainer._rebalance

        def forced_rebalance() -> None:
            trainer.slot_seconds = costs[trainer.epoch % len(costs)]
            rebalance()
            if dist.is_main():
                Path(job["out"]).mkdir(parents=True, exist_ok=True)
                with open(Path(job["out"]) / "owners.jsonl", "a") as log:
                    log.write(json.dumps(trainer.owners) + "\n")

        trainer._rebalance = forced_rebalance
    die = job.get("die")
    if die is not None and dist.rank() == die["rank"]:
        train_epoch = trainer.train_epoch

        def dying_epoch() -> dict[str, float]:
            if trainer.epoch == die["epoch"]:
                os._exit(DIED_EXIT_CODE)  # a crash: no clean shutdown, no exception to the others
            return train_epoch()

        trainer.train_epoch = dying_epoch
    trainer.run(progress=False, command="test", stop_at_epoch=job.get("stop_at_epoch"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    created = dist.init_from_env()
    try:
        for job in json.loads(Path(sys.argv[1]).read_text()):
            run_job(job)
    finally:
        if created:
            dist.shutdown()
