"""What the LHOPT policy does on the held-out tasks: the hyperparameters it chooses over each run.

Runs `loptim.LHOPT` with the shipped policy (or `--weights`) through the same harness as `loptim bench` (same
initializations, batches and validation feed, so these are the runs behind the bench rows) and records the
controlled hyperparameters after every step, and the learning rate applied (the policy's times `LHOPT`'s cooldown
multiplier, docs/lhopt.md, Cooldown). Writes results/schedules.json (values at each decision) and
results/schedules.png: the learning rate applied, next to the tuned AdamW schedule of the task's bench run
when `results/<task>/results.json` exists.

    python benchmarks/lhopt/schedules.py --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text
from loptim.meta.lhopt_trainer import HELD_OUT_TASKS
from loptim.optimizers.lhopt import LHOPT
from loptim.optimizers.lhopt.shell import DEFAULT_COOLDOWN, DEFAULT_LR
from loptim.optimizers.schedules import schedule
from loptim.tasks import get_task

RESULTS = Path(__file__).parent / "results"
CONTROLLED = ("lr", "one_minus_beta1", "one_minus_beta2", "weight_decay", "eps", "clip_ratio")


def trace(
    task_name: str, seed: int, weights: str, cooldown: float = DEFAULT_COOLDOWN, lr: float = DEFAULT_LR
) -> dict[str, Any]:
    """One LHOPT run of `task_name`: its hyperparameters at step 0 and after each of the policy's decisions."""
    task = get_task(task_name)
    steps = task.default_steps
    rows: dict[str, list[float]] = {"step": [], "applied_lr": [], **{name: [] for name in CONTROLLED}}

    def record(done: int, optimizer: Any) -> None:
        if done == 1 or done % optimizer.interval == 0 or done == steps:
            rows["step"].append(done)
            hparams = dataclasses.asdict(optimizer.hparams)
            rows["applied_lr"].append(optimizer.applied_lrs()[0])
            for name in CONTROLLED:
                rows[name].append(float(hparams[name]))

    def factory(params: Any, *, total_steps: int) -> LHOPT:
        return LHOPT(params, weights, total_steps=total_steps, cooldown=cooldown, lr=lr)

    curve = run_one(factory, task, steps, seed, observer=record)
    return {"task": task_name, "seed": seed, "steps": steps, "final_valid_loss": curve.valid_loss[-1], **rows}


def tuned_adamw(task_name: str) -> tuple[float, str] | None:
    """(lr, schedule) of tuned AdamW from this task's committed bench results, if present."""
    path = RESULTS / task_name / "results.json"
    if not path.exists():
        return None
    hyper = json.loads(path.read_text())["optimizers"].get("adamw", {}).get("hyperparameters")
    return (hyper["lr"], hyper["schedule"]) if hyper else None


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task_name in zip(axes[0], tasks):
        for r in (r for r in runs if r["task"] == task_name):
            progress = [s / r["steps"] for s in r["step"]]
            ax.step(progress, r.get("applied_lr", r["lr"]), where="post", alpha=0.8, label=f"LHOPT seed {r['seed']}")
        tuned = tuned_adamw(task_name)
        if tuned is not None:
            lr, name = tuned
            grid = [i / 200 for i in range(201)]
            ax.plot(grid, [lr * schedule(name)(t) for t in grid], "k--", label=f"tuned AdamW ({name})")
        ax.set_yscale("log")
        ax.set_title(task_name)
        ax.set_xlabel("fraction of training")
    axes[0][0].set_ylabel("learning rate")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(HELD_OUT_TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--weights", default="lhopt-small", help="shipped name or a .safetensors path")
    parser.add_argument("--cooldown", type=float, default=DEFAULT_COOLDOWN, help="LHOPT's cooldown fraction")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="LHOPT's starting learning rate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing schedules.json")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((args.out / "schedules.json").read_text())["runs"], args.out / "schedules.png")
        return
    torch.set_num_threads(1)
    runs = [trace(t, s, args.weights, args.cooldown, args.lr) for t in args.tasks.split(",") for s in range(args.seeds)]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"weights": args.weights, "cooldown": args.cooldown, "lr": args.lr, "runs": runs}
    atomic_write_text(args.out / "schedules.json", json.dumps(result, indent=1))
    plot(runs, args.out / "schedules.png")
    for r in runs:
        applied = r["applied_lr"]
        print(f"{r['task']:18s} seed {r['seed']}: applied lr {applied[0]:.2g} -> max {max(applied):.2g} -> "
              f"final {applied[-1]:.2g} (the policy's own: {r['lr'][0]:.2g} -> {r['lr'][-1]:.2g}); "
              f"final valid {r['final_valid_loss']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
