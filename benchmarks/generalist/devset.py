"""Does a generalist stay stable on runs wider and longer than meta-training's? A dev set outside the suite: tasks on
meta-train and meta-valid data only (loptim/tasks/partition.py), some 2x wider and 2x longer than the meta-training
mixture's and the meta-validation tasks, for design decisions (docs/generalist.md, Scale-only design). Each
generalist runs at its defaults; the references are Adam over four constant learning rates (its best per task is
"tuned Adam"). Final validation loss, mean of 2 seeds; and each generalist's meta-validation score, the number
its campaign selects checkpoints by (loptim.meta.parts.LogRatioToAdam on spam-gru and doctor-contacts-mlp).

    python benchmarks/generalist/devset.py --weights mlp-generalist,mlp-generalist-scale --scale-only mlp-generalist

`--scale-only NAME` adds NAME's meta-parameters run as the scale-only design (correction=False), untrained in it;
`--cosine-prior NAME` adds them run with the cosine schedule prior (MLPConfig.schedule_prior), untrained in it;
`--variant NAME:field=value,...` with any MLPConfig fields changed. `--reuse-adam FILE` takes the Adam references
from an earlier result of the same seeds and grid (its tasks' runs are not repeated).
`--log-step-max X` moves the upper end of the generalist's log-step clamp (4: at most e^4 times the nominal step).
`--tasks all` adds two long recurrent tasks to the default six; a transformer and a CNN run only when named
(`--tasks mobydick-char-wide,mnist-cnn`); `--schedules constant,cosine` tunes the Adam
reference over both schedules (default: constant); `--workers N` runs N tasks at once, one thread each.
Writes benchmarks/generalist/results/devset.json (or `--out`) and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text
from loptim.meta.parts import LogRatioToAdam
from loptim.optimizers import mlp_generalist
from loptim.optimizers.baselines import make_baseline
from loptim.optimizers.mlp import MLPOptimizer
from loptim.pretrained import load_learned, save_learned
from loptim.tasks import get_task
from loptim.tasks.base import Task
from loptim.tasks.image import ImageMLPConfig, MLPTask
from loptim.tasks.partition import part_of
from loptim.tasks.resnet import ResNetConfig, ResNetTask
from loptim.tasks.tabular import ForecastConfig, ForecastTask, TableMLPConfig, TableMLPTask
from loptim.tasks.text import CharLMConfig, CharLMTask

TASKS: dict[str, Callable[[], Task]] = {
    "spam-gru": lambda: get_task("spam-gru"),
    "doctor-contacts-mlp": lambda: get_task("doctor-contacts-mlp"),
    "doctor-contacts-mlp-wide": lambda: get_task("doctor-contacts-mlp-wide"),
    "health-insurance-mlp-wide": lambda: TableMLPTask(
        TableMLPConfig("health-insurance", hidden=(128, 128), steps=1000), "health-insurance-mlp-wide"
    ),
    "mnist-mlp-relu-wide": lambda: MLPTask(
        ImageMLPConfig("mnist", hidden=(128, 64), activation="relu", steps=600, init_std=None), "mnist-mlp-relu-wide"
    ),
    "mnist-resnet": lambda: ResNetTask(ResNetConfig("mnist", channels=(16, 32), blocks=1), "mnist-resnet"),
    # recurrent and long (meta-validation's spam-gru runs 300 steps): where a step too large late in a run shows
    "spam-gru-long": lambda: get_task("spam-gru-long"),
    "births-gru-long": lambda: ForecastTask(ForecastConfig("us-births", hidden=64, steps=1000), "births-gru-long"),
    # named only (not in 'all'): the suite's transformer and CNN shapes on meta-train data, where the generalist
    # lost most on the suite (shakespeare-char's transformer; fsdd-cnn) and the first eight have neither
    "mobydick-char-wide": lambda: CharLMTask(
        CharLMConfig("moby-dick", d_model=64, layers=2, heads=4, context=64, default_steps=600), "mobydick-char-wide"
    ),
    "mnist-cnn": lambda: get_task("mnist-cnn"),
    # the size of the meta-training mixture's larger transformers (d_model 32, 2 layers, context 32): whether the
    # attention step's loss (docs/generalist.md) shows at that size too
    "mobydick-char": lambda: get_task("mobydick-char"),
    # named only: the suite's recommendation models (GMF, NeuMF) on meta-train data, Moby-Dick's passages x words
    # (loptim/tasks/data/cooccurrence.py): embedding rows that see gradients only when in the batch
    "mobydick-gmf": lambda: get_task("mobydick-gmf"),
    "mobydick-neumf": lambda: get_task("mobydick-neumf"),
}
FIRST_SIX = tuple(TASKS)[:6]  # the default set (the first dev set's); `--tasks all` adds the long recurrent tasks
ALL = tuple(TASKS)[:8]  # `--tasks all`: the eight tasks of docs/generalist.md's tables
ADAM_LRS = (1e-3, 3.16e-3, 1e-2, 3.16e-2)
# Tasks whose Adam grid goes one point further (their tuned Adam may want more than 3.16e-2, as MovieLens' does)
WIDER_GRID = {"mobydick-gmf": (*ADAM_LRS, 1e-1), "mobydick-neumf": (*ADAM_LRS, 1e-1)}
SEEDS = (1, 2)


def geometric_mean(values: list[float]) -> float:
    """exp(mean(log values)); inf if any value is (a diverged run)."""
    return math.exp(sum(map(math.log, values)) / len(values)) if all(map(math.isfinite, values)) else math.inf


def generalist(weights: str) -> Callable:
    def factory(params, *, total_steps: int) -> MLPOptimizer:
        return MLPOptimizer(params, weights=weights, total_steps=total_steps)

    return factory


def variant(weights: str, changes: dict[str, Any], folder: Path) -> str:
    """`weights`' meta-parameters saved with MLPConfig fields changed (untrained in them): e.g. correction=False,
    the scale-only design (its d row ignored), or schedule_prior="cosine"."""
    net = load_learned("mlp", weights)
    config = dataclasses.replace(net.config, **changes)
    path = folder / f"variant-{len(list(folder.iterdir()))}.safetensors"
    save_learned(path, "mlp", net, dataclasses.asdict(config), {"variant_of": weights, "changes": changes})
    return str(path)


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """'WEIGHTS:field=value,field=value' -> (WEIGHTS, {field: value}); values are numbers, true/false/none or text."""
    weights, _, fields = spec.partition(":")
    changes: dict[str, Any] = {}
    known = {"true": True, "false": False, "none": None}
    for item in filter(None, fields.split(",")):
        key, _, text = item.partition("=")
        try:
            changes[key] = known[text.lower()] if text.lower() in known else float(text)
        except ValueError:
            changes[key] = text
    if not weights or not changes:
        raise SystemExit(f"--variant wants WEIGHTS:field=value[,field=value], got '{spec}'")
    return weights, changes


def reused_adam(path: Path | None, name: str, steps: int, schedules: list[str]) -> dict[str, float] | None:
    """The Adam references of task `name` from an earlier devset JSON of the same seeds, steps and grid, if any."""
    if path is None:
        return None
    earlier = json.loads(path.read_text())
    entry = earlier["tasks"].get(name)
    if entry is None or entry["steps"] != steps or earlier["seeds"] != list(SEEDS):
        return None
    keys = [adam_key(lr, schedule) for schedule in schedules for lr in WIDER_GRID.get(name, ADAM_LRS)]
    losses = entry["final_valid_loss"]
    return {k: losses[k] for k in keys} if all(k in losses for k in keys) else None


def adam_key(lr: float, schedule: str) -> str:
    return f"adam {lr:g}" + ("" if schedule == "constant" else f" {schedule}")


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


def set_log_step_max(value: float) -> None:
    """The generalist's log-step clamp with its upper end at `value` in this process (both the reference update and
    the kernel read mlp_generalist.LOG_STEP_RANGE at every step)."""
    mlp_generalist.LOG_STEP_RANGE = (mlp_generalist.LOG_STEP_RANGE[0], value)


def task_results(name: str, paths: dict[str, str], schedules: list[str], reuse: Path | None = None) -> dict:
    """One dev task: the Adam references (or `reuse`'s), each generalist at its defaults, the ratios to tuned Adam."""
    torch.set_num_threads(1)
    task = TASKS[name]()
    adam = reused_adam(reuse, name, task.default_steps, schedules) or {
        adam_key(lr, schedule): final_valid(make_baseline("adam", lr, schedule), task)
        for schedule in schedules
        for lr in WIDER_GRID.get(name, ADAM_LRS)
    }
    tuned = min(adam.values())
    losses = adam | {key: final_valid(generalist(path), task) for key, path in paths.items()}
    for key, value in losses.items():
        print(f"{name} | {key} | {value:.4g} | {value / tuned:.3f}", flush=True)
    return {"steps": task.default_steps, "data": task.data_source, "final_valid_loss": losses,
            "ratio_to_tuned_adam": {k: v / tuned for k, v in losses.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mlp-generalist", help="comma-separated generalist weights")
    parser.add_argument("--scale-only", default="", help="comma-separated weights to run as the scale-only design")
    parser.add_argument("--cosine-prior", default="", help="comma-separated weights to run with the cosine prior")
    parser.add_argument("--variant", action="append", default=[], help="WEIGHTS:field=value[,...] (repeatable)")
    parser.add_argument("--reuse-adam", type=Path, help="an earlier devset JSON whose Adam references to reuse")
    parser.add_argument("--schedules", default="constant", help="the Adam reference's schedules: constant[,cosine]")
    parser.add_argument(
        "--tasks", default=",".join(FIRST_SIX), help="comma-separated dev tasks, or 'all' (the first eight)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--log-step-max",
        type=float,
        default=None,
        help="move the upper end of the generalist's log-step clamp (mlp_generalist.LOG_STEP_RANGE) for this run",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "devset.json")
    args = parser.parse_args()
    if args.log_step_max is not None:
        set_log_step_max(args.log_step_max)
    torch.set_num_threads(1)
    names = list(ALL) if args.tasks == "all" else args.tasks.split(",")
    for name in names:
        if name not in TASKS:
            raise SystemExit(f"no dev task '{name}'; known: {', '.join(TASKS)}")
        if part_of(TASKS[name]().data_source) == "suite":
            raise SystemExit(f"{name} trains on suite data; the dev set holds meta-train and meta-valid data only")
    schedules = args.schedules.split(",")
    folder = Path(tempfile.mkdtemp())
    paths = {w: w for w in filter(None, args.weights.split(","))}
    for w in filter(None, args.scale_only.split(",")):
        paths[f"{w} (scale-only)"] = variant(w, {"correction": False}, folder)
    for w in filter(None, args.cosine_prior.split(",")):
        paths[f"{w} (cosine prior)"] = variant(w, {"schedule_prior": "cosine"}, folder)
    for spec in args.variant:
        w, changes = parse_variant(spec)
        paths[f"{w} ({', '.join(f'{k}={v}' for k, v in changes.items())})"] = variant(w, changes, folder)
    scores = {key: meta_valid_score(path) for key, path in paths.items()}
    for key, score in scores.items():
        print(f"meta-validation score | {key} | {score['mean']:+.3f}", flush=True)
    jobs = [(name, paths, schedules, args.reuse_adam) for name in names]
    if args.workers > 1:
        clamp = (set_log_step_max, (args.log_step_max,)) if args.log_step_max is not None else (None, ())
        with multiprocessing.get_context("spawn").Pool(args.workers, *clamp) as pool:
            results = dict(zip(names, pool.starmap(task_results, jobs)))
    else:
        results = {name: task_results(*job) for name, job in zip(names, jobs)}
    keys = list(next(iter(results.values()))["final_valid_loss"])
    geomean = {}
    for key in keys:
        geomean[key] = geometric_mean([r["ratio_to_tuned_adam"][key] for r in results.values()])
        print(f"geometric mean | {key} | {geomean[key]:.3f}")
    command = shlex.join(["python", "benchmarks/generalist/devset.py", *sys.argv[1:]])  # as it was run
    payload = {"command": command, "seeds": list(SEEDS), "adam_lrs": list(ADAM_LRS), "adam_schedules": schedules,
               "tasks": results,
               "geometric_mean_ratio_to_tuned_adam": geomean, "meta_validation_score": scores}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
