"""The README's held-out table, from the committed bench results (benchmarks/lhopt/results/<task>/results.json).

    python benchmarks/lhopt/table.py

Prints one markdown row per held-out task: tuned AdamW's configuration and final validation loss, LHOPT's, the
step and wall-clock speedups over tuned AdamW (null = never reached), and the median step speedup over the tasks
(a task never reached counts as 0 in the median, the most pessimistic reading).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from loptim.meta.lhopt_trainer import HELD_OUT_TASKS

RESULTS = Path(__file__).parent / "results"


def _loss(entry: dict) -> str:
    stats = entry["final_valid_loss"]
    return "diverged" if stats["mean"] is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _x(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}x"


def lines() -> list[str]:
    """The table's lines (header, rows, median) from the committed results; the README quotes them verbatim."""
    out = ["| task | tuned AdamW (of 35) | AdamW final valid | LHOPT final valid | LHOPT / AdamW final | speedup | "
           "wall-clock speedup | AdamW configs better than LHOPT | LHOPT optimizer share |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    speedups = []
    for task in HELD_OUT_TASKS:
        path = RESULTS / task / "results.json"
        if not path.exists():
            out.append(f"| {task} | not run | | | | | | | |")
            continue
        entries = json.loads(path.read_text())["optimizers"]
        adamw = entries["adamw"]
        lhopt = next(e for name, e in entries.items() if name.split(":")[0] == "lhopt")
        hyper = adamw["hyperparameters"]
        ratio = lhopt["final_loss_ratio_vs_tuned_adamw"]
        speedups.append(lhopt["speedup_vs_tuned_adamw"] or 0.0)
        out.append(f"| `{task}` | lr {hyper['lr']:.3g}, {hyper['schedule']} | {_loss(adamw)} | {_loss(lhopt)} | "
                   f"{'-' if ratio is None else f'{ratio:.3f}'} | {_x(lhopt['speedup_vs_tuned_adamw'])} | "
                   f"{_x(lhopt['wallclock_speedup_vs_tuned_adamw'])} | "
                   f"{lhopt['adamw_configs_better']} of {lhopt['adamw_configs']} | "
                   f"{100 * lhopt['optimizer_seconds_fraction']:.0f}% |")  # fmt: skip
    if speedups:
        out.append(f"median step speedup over tuned AdamW ({len(speedups)} tasks, never = 0): "
                   f"{statistics.median(speedups):.2f}x")  # fmt: skip
    return out


def main() -> None:
    print("\n".join(lines()))


if __name__ == "__main__":
    main()
