"""A meta-training run's selection history, summarized for committing (runs/ is not committed): every evaluation,
the best checkpoint, and whether its weights equal a shipped weight file's bit for bit.

    python benchmarks/l2l/run_summary.py runs/lstm-mnist-mb2-long --shipped lstm-mnist-mb2 \
        --out benchmarks/l2l/results/lstm-mnist-mb2-long.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from loptim.pretrained import resolve


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def summary(run: Path, shipped: str | None) -> dict:
    card = json.loads((run / "best.json").read_text())
    history = json.loads((run / "history.json").read_text())
    result = {
        "command": card.get("command"),
        "score": "the recipe's selection score: mean final training loss on held-out initializations (lower is better)",
        "best_epoch": card.get("best_epoch"),
        "epochs_run": card.get("epochs_run"),
        "meta_training_seconds": card.get("meta_training_seconds"),
        "evaluations": [{k: r[k] for k in ("epoch", "eval_score", "seconds")} for r in history if "eval_score" in r],
    }
    if shipped is not None:
        result[f"best_weights_equal_shipped_{shipped}"] = same_weights(run / "best.safetensors", resolve(shipped))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--shipped", help="a shipped weight name to compare the best checkpoint with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(json.dumps(summary(args.run, args.shipped), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
