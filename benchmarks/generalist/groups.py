"""Which tensors want a smaller step? The generalist at its defaults on a dev task (meta-train or meta-valid data,
benchmarks/generalist/devset.py), with `lr` (the multiplier of its learned step) lowered on one class of tensors
at a time, the classes matched by name. A diagnosis for docs/generalist.md, not a tuning: no result here changes
a default.

    python benchmarks/generalist/groups.py --task mobydick-char-wide --classes attn,qkv,attn.out,embed,mlp,ln,head \
        --scales 0.1 --seeds 1,2

`--classes` are name substrings ("all" scales every tensor, "matrices" every tensor of 2+ dimensions); each runs at
every `--scales` value. Writes benchmarks/generalist/results/groups-TASK.json (or `--out`) and prints a table of
final validation losses (mean over seeds) next to tuned Adam's from `--adam` (a devset JSON with that task).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

import loptim
from loptim.evaluate.harness import run_one
from loptim.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent))
from devset import TASKS  # noqa: E402  (the dev tasks, meta-train and meta-valid data only)


def picks(name: str, tensor: torch.Tensor, cls: str) -> bool:
    """Whether tensor `name` belongs to class `cls`: a name substring, "all", or "matrices" (2+ dimensions)."""
    if cls == "all":
        return True
    if cls == "matrices":
        return tensor.ndim >= 2
    return cls in name


def factory(names: list[str], cls: str | None, scale: float):
    """MLPOptimizer at its defaults, `lr=scale` on the tensors of class `cls` (None: on none)."""

    def make(params: list[torch.Tensor], total_steps: int) -> loptim.MLPOptimizer:
        if cls is None:
            return loptim.MLPOptimizer(params, total_steps=total_steps)
        chosen = [p for n, p in zip(names, params) if picks(n, p, cls)]
        rest = [p for n, p in zip(names, params) if not picks(n, p, cls)]
        if not chosen:
            raise SystemExit(f"no tensor matches class '{cls}'; names: {', '.join(names)}")
        groups = [{"params": chosen, "lr": scale}] + ([{"params": rest}] if rest else [])
        return loptim.MLPOptimizer(groups, total_steps=total_steps)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mobydick-char-wide", help=f"a dev task: {', '.join(TASKS)}")
    parser.add_argument("--classes", default="all,attn", help="comma-separated name substrings, 'all', 'matrices'")
    parser.add_argument("--scales", default="0.1", help="comma-separated lr multipliers for the chosen class")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--adam", type=Path, default=Path(__file__).parent / "results" / "devset-more.json")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.task not in TASKS:
        raise SystemExit(f"no dev task '{args.task}'; known: {', '.join(TASKS)}")
    torch.set_num_threads(1)
    task = TASKS[args.task]()
    names = list(task.init(torch.Generator().manual_seed(0)).keys())
    seeds = [int(s) for s in args.seeds.split(",")]
    adam = json.loads(args.adam.read_text())["tasks"].get(args.task) if args.adam.exists() else None
    tuned = min(v for k, v in adam["final_valid_loss"].items() if k.startswith("adam ")) if adam else None
    runs = [("defaults", None, 1.0)] + [
        (f"{cls} x{scale:g}", cls, scale)
        for cls in args.classes.split(",")
        for scale in (float(s) for s in args.scales.split(","))
    ]
    results = {}
    for label, cls, scale in runs:
        losses = [run_one(factory(names, cls, scale), task, task.default_steps, s).valid_loss[-1] for s in seeds]
        mean = sum(losses) / len(losses)
        results[label] = {"per_seed": losses, "mean": mean, "ratio_to_tuned_adam": mean / tuned if tuned else None}
        ratio = f"{mean / tuned:.3f}" if tuned else "-"
        print(f"{args.task} | {label} | {mean:.4f} | {ratio}", flush=True)
    out = args.out or Path(__file__).parent / "results" / f"groups-{args.task}.json"
    payload = {
        "command": shlex.join(["python", "benchmarks/generalist/groups.py", *sys.argv[1:]]),
        "task": args.task,
        "seeds": seeds,
        "tensors": names,
        "tuned_adam_final_valid_loss": tuned,
        "tuned_adam_from": str(args.adam) if tuned else None,
        "runs": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
