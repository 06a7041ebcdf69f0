"""Seconds per meta-training episode of an LHOPT recipe on one core (reference run + policy run), by family.

    python benchmarks/lhopt/episode_cost.py --recipe lhopt-wide --episodes 16

Runs the first `episodes` training episodes of epoch 0 with the initial policy (sampling), on one torch thread,
after reading (or sweeping) the recipe's reference table. Prints each episode and the mean per family and overall:
the figure that sizes the recipe's tasks (issue 15: a mean of ~5-15 s per episode on one core).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from loptim.meta.lhopt_rollout import run_episode
from loptim.meta.lhopt_sweep import reference_lrs
from loptim.meta.lhopt_trainer import make_policy
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import derive_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lhopt-wide")
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES.get(args.recipe)
    table = reference_lrs(recipe, log=print) if recipe.reference == "tuned" else None
    policy = make_policy(recipe)
    by_family: dict[str, list[float]] = {}
    steps_total = 0
    for index in range(args.episodes):
        start = time.perf_counter()
        episode = run_episode(recipe, policy, derive_seed(recipe.seed, 0, index), reference_lrs=table)
        seconds = time.perf_counter() - start
        by_family.setdefault(episode.family, []).append(seconds)
        steps_total += episode.steps
        print(f"{index:3d} {episode.family:18s} {episode.steps:5d} steps {seconds:6.1f} s reward {episode.reward:+.3f}")
    every = [s for values in by_family.values() for s in values]
    for family, values in sorted(by_family.items()):
        print(f"{family:18s} {len(values):3d} episodes, mean {statistics.mean(values):.1f} s")
    mean_steps = steps_total / len(every)
    print(f"all: mean {statistics.mean(every):.1f} s per episode, {mean_steps:.0f} policy steps on average")


if __name__ == "__main__":
    main()
