"""Does a generalist stay stable on runs wider and longer than meta-training's? A dev set outside the suite: tasks on
meta-train and meta-valid data only (loptim/tasks/partition.py), some 2x wider and 2x longer than the meta-training
mixture's and the meta-validation tasks, for design decisions (docs/generalist.md, Scale-only design). Each
generalist runs at its defaults; the references are Adam over four constant learning rates (its best per task is
"tuned Adam"). Final validation loss, mean of 2 seeds; and each generalist's meta-validation score, the number
its campaign selects checkpoints by (loptim.meta.parts.LogRatioToAdam on spam-gru and doctor-contacts-mlp).

    python benchmarks/generalist/devset.py --weights mlp-generalist,mlp-generalist-scale --scale-only mlp-generalist

`--scale-only NAME` adds NAME's meta-parameters run as the scale-only design (correction=False), untrained in it.
Writes benchmarks/generalist/results/devset.json and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text
from loptim.meta.parts import LogRatioToAdam
from loptim.optimizers.baselines import make_baseline
from loptim.optimizers.mlp import MLPOptimizer
from loptim.pretrained import load_learned, save_learned
from loptim.tasks import get_task
from loptim.tasks.base import Task
from loptim.tasks.image import ImageMLPConfig, MLPTask
from loptim.tasks.partition import part_of
from loptim.tasks.resnet import ResNetConfig, ResNetTask
from loptim.tasks.tabular import TableMLPConfig, TableMLPTask

TASKS: dict[str, Callable[[], Task]] = {
    "spam-gru": lambda: get_task("spam-gru"),
    "doctor-contacts-mlp": lambda: get_task("doctor-contacts-mlp"),
    "doctor-contacts-mlp-wide": lambda: TableMLPTask(
        TableMLPConfig("doctor-contacts", hidden=(128, 128), steps=1000), "doctor-contacts-mlp-wide"
    ),
    "health-insurance-mlp-wide": lambda: TableMLPTask(
        TableMLPConfig("health-insurance", hidden=(128, 128), steps=1000), "health-insurance-mlp-wide"
    ),
    "mnist-mlp-relu-wide": lambda: MLPTask(
        ImageMLPConfig("mnist", hidden=(128, 64), activation="relu", steps=600, init_std=None), "mnist-mlp-relu-wide"
    ),
    "mnist-resnet": lambda: ResNetTask(ResNetConfig("mnist", channels=(16, 32), blocks=1), "mnist-resnet"),
}
ADAM_LRS = (1e-3, 3.16e-3, 1e-2, 3.16e-2)
SEEDS = (1, 2)


def generalist(weights: str) -> Callable:
    def factory(params, *, total_steps: int) -> MLPOptimizer:
        return MLPOptimizer(params, weights=weights, total_steps=total_steps)

    return factory


def scale_only(weights: str, folder: Path) -> str:
    """`weights`' meta-parameters saved as the scale-only design (its d row ignored)."""
    net = load_learned("mlp", weights)
    config = dataclasses.replace(net.config, correction=False)
    path = folder / f"{Path(weights).stem}-scale-only.safetensors"
    save_learned(path, "mlp", net, dataclasses.asdict(config), {"scale_only_of": weights})
    return str(path)


def meta_valid_score(weights: str) -> dict[str, float]:
    """The campaigns' selection score of `weights`: mean log ratio of the final validation loss to Adam at 1e-3."""
    net = load_learned("mlp", weights)
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    mean, per_task = LogRatioToAdam(("spam-gru", "doctor-contacts-mlp"))(net, meta, None, None)
    return {"mean": mean, **per_task}


def final_valid(factory: Callable, task: Task) -> float:
    """Mean over SEEDS of the final validation loss; a diverged run counts as infinite."""
    losses = [run_one(factory, task, task.default_steps, seed).valid_loss[-1] for seed in SEEDS]
    return sum(losses) / len(losses) if all(math.isfinite(v) for v in losses) else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mlp-generalist", help="comma-separated generalist weights")
    parser.add_argument("--scale-only", default="", help="comma-separated weights to run as the scale-only design")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "devset.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    paths = {w: w for w in filter(None, args.weights.split(","))}
    for w in filter(None, args.scale_only.split(",")):
        paths[f"{w} (scale-only)"] = scale_only(w, folder)
    learned = {key: generalist(path) for key, path in paths.items()}
    scores = {key: meta_valid_score(path) for key, path in paths.items()}
    for key, score in scores.items():
        print(f"meta-validation score | {key} | {score['mean']:+.3f}", flush=True)
    results = {}
    for name in args.tasks.split(","):
        task = TASKS[name]()
        if part_of(task.data_source) == "suite":
            raise SystemExit(f"{name} trains on suite data; the dev set holds meta-train and meta-valid data only")
        adam = {f"adam {lr:g}": final_valid(make_baseline("adam", lr, "constant"), task) for lr in ADAM_LRS}
        tuned = min(adam.values())
        losses = adam | {key: final_valid(factory, task) for key, factory in learned.items()}
        results[name] = {"steps": task.default_steps, "data": task.data_source, "final_valid_loss": losses,
                         "ratio_to_tuned_adam": {k: v / tuned for k, v in losses.items()}}  # fmt: skip
        for key, value in losses.items():
            print(f"{name} | {key} | {value:.4g} | {value / tuned:.3f}", flush=True)
    keys = list(next(iter(results.values()))["final_valid_loss"])
    geomean = {}
    for key in keys:
        ratios = [r["ratio_to_tuned_adam"][key] for r in results.values()]
        finite = all(map(math.isfinite, ratios))
        geomean[key] = math.exp(sum(map(math.log, ratios)) / len(ratios)) if finite else math.inf
        print(f"geometric mean | {key} | {geomean[key]:.3f}")
    command = "python benchmarks/generalist/devset.py --weights " + args.weights
    command += f" --scale-only {args.scale_only}" if args.scale_only else ""
    payload = {"command": command, "seeds": list(SEEDS), "adam_lrs": list(ADAM_LRS), "tasks": results,
               "geometric_mean_ratio_to_tuned_adam": geomean, "meta_validation_score": scores}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
