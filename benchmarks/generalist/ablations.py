"""The generalist's ablation table (issue 16; docs/generalist.md, Ablations): the full design retrained on a small
budget next to four recipes that each remove one fix, all on the same budget and seed, judged on the suite.

Train each first (about 1 core-hour each, one core; the two cores hold two at a time):

    loptim --threads 1 meta-train mlp --recipe generalist-ablation-control --out runs/generalist-ablation-control \
        --max-minutes 60
    (and the same for -no-horizon, -no-normalization, -no-schedule, -no-augmentation)

and copy each run's best.safetensors and best.json into benchmarks/generalist/results/ablations/weights/NAME/
(committed: the recipes are trained across sessions, the machine may be new by the time all five are done), then

    python benchmarks/generalist/ablations.py [--runs DIR] [--full] [--workers 2]

runs `loptim suite --quick` (the issue's quick mode; `--full`: the core tier) on the five best checkpoints together
and writes benchmarks/generalist/results/ablations/ (the suite's files and table.md: per recipe, what it removes,
its meta-training seconds and inner steps, its meta-validation score, and its suite summary).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loptim.cli import main as loptim_main
from loptim.io import atomic_write_text

ABLATIONS = {
    "generalist-ablation-control": "nothing (the full design, same budget)",
    "generalist-ablation-no-horizon": "long horizons (runs of 25-50 steps, one truncation)",
    "generalist-ablation-no-normalization": "normalized inputs and the nominal Adam term",
    "generalist-ablation-no-schedule": "progress features and the schedule head",
    "generalist-ablation-no-augmentation": "reparameterization augmentation",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    results = Path("benchmarks/generalist/results/ablations")
    parser.add_argument("--runs", type=Path, default=results / "weights", help="where each recipe's folder is")
    parser.add_argument("--out", type=Path, default=results)
    parser.add_argument("--full", action="store_true", help="the suite's core tier instead of its quick mode")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    missing = [name for name in ABLATIONS if not (args.runs / name / "best.safetensors").exists()]
    if missing:
        sys.exit(f"no trained weights for {', '.join(missing)}: train them first (see this script's docstring)")
    cards = {name: json.loads((args.runs / name / "best.json").read_text()) for name in ABLATIONS}
    labels = {name: f"mlp:{args.runs / name / 'best.safetensors'}" for name in ABLATIONS}
    command = ["suite", "--optimizers", ",".join(["adam", *labels.values()]), "--out", str(args.out)]
    command += ["--workers", str(args.workers)] + ([] if args.full else ["--quick"])
    if loptim_main(command) != 0:
        sys.exit("the suite failed (its message is above)")
    summary = json.loads((args.out / "suite.json").read_text())["summary"]
    rows = [
        "| recipe | removes | meta-training s | inner steps | meta-valid score (log ratio to Adam 1e-3) "
        "| suite final-loss ratio, geometric mean | tasks diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, removed in ABLATIONS.items():
        card, row = cards[name], summary[labels[name]]
        score = next(v for k, v in card["selection_score"].items() if k != "tasks")
        geo = row.get("final_loss_ratio_geomean")
        rows.append(
            f"| {name} | {removed} | {card['meta_training_seconds']:.0f} | {card.get('experience_inner_steps', 0):,} "
            f"| {score:.3f} | {'-' if geo is None else f'{geo:.3f}'} | {row['tasks_diverged']} |"
        )
    atomic_write_text(args.out / "ablations.md", "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
