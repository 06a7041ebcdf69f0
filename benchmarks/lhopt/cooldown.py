"""Choose LHOPT's cooldown on the meta-valid tier: the shipped policy with its learning rate multiplied by a linear
decay to 0 over the last fraction c of the run (`LHOPT(cooldown=c)`), for each c given, on the five meta-valid
tasks at the tier's steps and seeds 1-3, against tuned AdamW's final validation loss from a committed meta-valid
suite result (docs/lhopt.md, Cooldown). Selection data only: the suite's core tier judges the choice afterwards.

    python benchmarks/lhopt/cooldown.py --cooldowns 0,0.1,0.2,0.3

Writes benchmarks/lhopt/results/cooldown.json and prints, per cooldown, the mean final-loss ratio per task, the
seeds that reach tuned AdamW's loss, and the geometric mean over tasks. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text
from loptim.optimizers.lhopt import LHOPT
from loptim.optimizers.lhopt.shell import DEFAULT_LR
from loptim.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "benchmarks" / "suite" / "results" / "meta-valid" / "suite.json"
RESULTS = Path(__file__).parent / "results" / "cooldown.json"
SEEDS = (1, 2, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cooldowns", default="0,0.1,0.2,0.3")
    parser.add_argument("--weights", default="lhopt-wider-e285")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="LHOPT's starting learning rate")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="a meta-valid tier suite.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.reference.resolve().is_relative_to(ROOT):
        sys.exit(f"--reference must be a committed result inside the repository, got {args.reference}")
    reference = json.loads(args.reference.read_text())
    if reference.get("tier") != "meta-valid":
        sys.exit(f"{args.reference} is not a meta-valid tier result (tier {reference.get('tier')!r})")
    rows = []
    for cooldown in (float(c) for c in args.cooldowns.split(",")):

        def factory(params, *, total_steps: int, cooldown: float = cooldown) -> LHOPT:
            return LHOPT(params, weights=args.weights, total_steps=total_steps, cooldown=cooldown, lr=args.lr)

        tasks = {}
        for name, entry in reference["tasks"].items():
            target = entry["optimizers"]["adamw"]["target"]
            curves = [run_one(factory, get_task(name), entry["steps"], seed) for seed in SEEDS]
            ratios = [curve.valid_loss[-1] / target for curve in curves]
            tasks[name] = {
                "steps": entry["steps"],
                "final_loss_ratio": ratios,
                "mean": sum(ratios) / len(ratios),
                "seeds_reaching": sum(min(curve.valid_loss) <= target for curve in curves),
            }
            print(f"cooldown {cooldown:g} {name:26s} {tasks[name]['mean']:.4f} "
                  f"({tasks[name]['seeds_reaching']}/{len(SEEDS)} seeds reach)", flush=True)  # fmt: skip
        geomean = math.exp(sum(math.log(t["mean"]) for t in tasks.values()) / len(tasks))
        rows.append({"cooldown": cooldown, "geomean": geomean, "tasks": tasks})
        print(f"cooldown {cooldown:g}: geometric mean {geomean:.4f}", flush=True)
    result = {
        "weights": args.weights,
        "lr": args.lr,
        "seeds": list(SEEDS),
        "reference": str(args.reference.resolve().relative_to(ROOT)),
        "rows": rows,
        "command": "python benchmarks/lhopt/cooldown.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
