"""Score LHOPT policies on a recipe's meta-validation episodes: the greedy policy's mean reward on the fixed
evaluation episodes the campaign selects its checkpoints by (higher is better; 0 = the reference run's loss).
Scores any weights, so shipped policies can be compared on the same episodes (never on the suite).

    python benchmarks/lhopt/metavalid.py lhopt-small lhopt-wide [--recipe lhopt-wide]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from loptim.meta.lhopt_trainer import LHOPTTrainer
from loptim.meta.recipes import RECIPES
from loptim.optimizers.lhopt.shell import load_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="shipped names or .safetensors paths")
    parser.add_argument("--recipe", default="lhopt-wide")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = dataclasses.replace(RECIPES.get(args.recipe), workers=1)
    for weights in args.weights:
        trainer = LHOPTTrainer(recipe, tempfile.mkdtemp())
        trainer.policy = load_policy(weights)
        start = time.time()
        score = trainer.evaluate()
        trainer.close()
        seconds = time.time() - start
        print(f"{weights} | {args.recipe} meta-validation, greedy mean reward | {score:.4f} | {seconds:.0f} s")


if __name__ == "__main__":
    main()
