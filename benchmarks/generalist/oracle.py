"""Is the generalist's gap to tuned Adam a step-size problem? An oracle test on meta-validation tasks only
(never the suite): the trained generalist with its `lr` multiplier swept, against Adam over learning rates and
two schedules, final validation loss, mean of 2 seeds. If some multiplier per task closes the gap, the direction
the network computes is sound and what is missing is the step size (docs/generalist.md, Next).

    python benchmarks/generalist/oracle.py --weights runs/mlp-generalist/best.safetensors

Writes benchmarks/generalist/results/oracle.json: per task, the final validation loss of every configuration
and its ratio to the best Adam configuration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text
from loptim.optimizers.baselines import make_baseline
from loptim.optimizers.mlp import MLPOptimizer
from loptim.tasks import get_task

ADAM_LRS = (1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1)
MULTIPLIERS = (0.3, 1.0, 3.0, 10.0, 30.0)
SEEDS = (0, 1)


def generalist(weights: str, multiplier: float):
    def factory(params, *, total_steps: int) -> MLPOptimizer:
        return MLPOptimizer(params, weights=weights, total_steps=total_steps, lr=multiplier)

    return factory


def mean_final_valid(factory, task, steps: int) -> float:
    return sum(run_one(factory, task, steps, seed).valid_loss[-1] for seed in SEEDS) / len(SEEDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="generalist weights (.safetensors)")
    parser.add_argument("--tasks", default="spam-gru,doctor-contacts-mlp", help="meta-validation tasks")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "oracle.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.tasks.split(","):
        task = get_task(name)
        steps = task.default_steps
        losses = {}
        for lr in ADAM_LRS:
            for schedule in ("constant", "cosine"):
                adam = make_baseline("adam", lr, schedule)
                losses[f"adam lr {lr:g} {schedule}"] = mean_final_valid(adam, task, steps)
        for multiplier in MULTIPLIERS:
            losses[f"generalist x{multiplier:g}"] = mean_final_valid(generalist(args.weights, multiplier), task, steps)
        best = min(v for k, v in losses.items() if k.startswith("adam"))
        ratios = {k: v / best for k, v in losses.items()}
        results[name] = {"steps": steps, "final_valid_loss": losses, "ratio_to_tuned_adam": ratios}
        for key, value in losses.items():
            print(f"{name} | {key} | {value:.4f} | {value / best:.3f}", flush=True)
    payload = {"command": "python benchmarks/generalist/oracle.py --weights " + args.weights, "seeds": list(SEEDS),
               "tasks": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
