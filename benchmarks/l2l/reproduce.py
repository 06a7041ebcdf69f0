"""Regenerate the L2L reproduction (Andrychowicz et al. 2016, Figures 4 and 5) from the shipped weights.

    python benchmarks/l2l/reproduce.py [--rows NAME,...] [--seeds 5]

Each row is one `loptim bench` run (its equivalent command is printed and stored); results and plots go to
benchmarks/l2l/results/ROW/, and the markdown table to benchmarks/l2l/results/table.md. Baselines are tuned by
final training loss, as the paper compared training-loss curves (docs/design.md, evaluation protocol).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from loptim.evaluate.bench import BenchConfig, bench, format_table
from loptim.optimizers.schedules import SCHEDULES

RESULTS = Path(__file__).parent / "results"
BASELINES = ("adam", "rmsprop", "sgd", "nesterov")


@dataclass(frozen=True)
class Row:
    name: str
    task: str
    learned: str
    steps: int | None = None
    schedules: tuple[str, ...] = ("constant",)
    lr_points: int = 13
    paper: str = ""


ROWS = [
    Row(
        "quadratic",
        "quadratic-heldout",
        "lstm:lstm-quadratic",
        paper="Fig. 4 left: LSTM below all baselines (here on functions it was not meta-trained on)",
    ),
    Row("mnist-mlp", "mnist-mlp", "lstm", paper="Fig. 4 middle: LSTM below all baselines"),
    Row(
        "mnist-mlp-all-schedules",
        "mnist-mlp",
        "lstm",
        schedules=tuple(SCHEDULES),
        lr_points=7,
        paper="(not in the paper: baselines also tuned over 7 schedules)",
    ),  # fmt: skip
    Row("mnist-mlp-200-steps", "mnist-mlp", "lstm", steps=200, paper="Fig. 5 left: keeps its advantage at 200 steps"),
    Row("mnist-mlp-40", "mnist-mlp-40", "lstm", paper="Fig. 5 middle: 40 hidden units, still better"),
    Row("mnist-mlp-2layer", "mnist-mlp-2layer", "lstm", paper="Fig. 5 middle: 2 hidden layers, still better"),
    Row("mnist-mlp-relu", "mnist-mlp-relu", "lstm", paper="Fig. 5 right: ReLU, the LSTM fails"),
    Row("fashion-mlp", "fashion-mlp", "lstm", paper="(not in the paper: a data set never seen)"),
    Row(
        "mnist-mlp-mb2",
        "mnist-mlp",
        "lstm:lstm-mnist-mb2",
        paper="(not in the paper: recipe lstm-mnist-mb2, 2 inner runs per meta-step, splits across 2 ranks)",
    ),
    Row(
        "mnist-mlp-mb2-slow",
        "mnist-mlp",
        "lstm:benchmarks/l2l/results/candidates/lstm-mnist-mb2-slow.safetensors",
        paper="(not in the paper: recipe lstm-mnist-mb2-slow, mb2 at meta lr 1e-3, 1,000 epochs; not shipped)",
    ),
]


def command(row: Row, seeds: int) -> str:
    steps = f" --steps {row.steps}" if row.steps else ""
    schedules = "all" if row.schedules == tuple(SCHEDULES) else ",".join(row.schedules)
    return (f"loptim bench {row.task} --optimizers {','.join(BASELINES)},{row.learned} --seeds {seeds}{steps} "
            f"--schedules {schedules} --select train --lr-points {row.lr_points} "
            f"--out benchmarks/l2l/results/{row.name}")  # fmt: skip


def table_line(row: Row, results: dict, seeds: int) -> str:
    entries = results["optimizers"]
    adam = entries["adam"]["final_train_loss"]["mean"]
    lstm = entries[row.learned]["final_train_loss"]
    best_other = min(
        (entries[n]["final_train_loss"]["mean"], n) for n in BASELINES if entries[n]["final_train_loss"]["mean"]
    )
    lstm_mean = lstm["mean"]
    verdict = "diverged" if lstm_mean is None else ("below all" if lstm_mean < best_other[0] else "not below all")
    ratio = "-" if lstm_mean is None else f"{lstm_mean / adam:.3f}"
    lstm_text = "diverged" if lstm_mean is None else f"{lstm_mean:.4f} ± {lstm['std']:.4f}"
    hyper = entries["adam"]["hyperparameters"]
    adam_text = f"{adam:.4f} (lr {hyper['lr']:.3g}, {hyper['schedule']})"
    return (f"| {row.name} | {results['steps']} | {lstm_text} | {adam_text} | "
            f"{best_other[1]} {best_other[0]:.4f} | {ratio} | {verdict} | {row.paper} |")  # fmt: skip


def committed_lines(seeds: int = 5) -> list[str]:
    """The table rows from the committed results (the README quotes them verbatim; tests check that)."""
    return [table_line(row, json.loads((RESULTS / row.name / "results.json").read_text()), seeds)
            for row in ROWS if (RESULTS / row.name / "results.json").exists()]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    wanted = args.rows.split(",")
    lines = []
    for row in ROWS:
        out = RESULTS / row.name
        if row.name in wanted:
            print(f"$ {command(row, args.seeds)}")
            config = BenchConfig(task=row.task, optimizers=(*BASELINES, row.learned), seeds=args.seeds,
                                 steps=row.steps, schedules=row.schedules, select="train", lr_points=row.lr_points,
                                 out=out)  # fmt: skip
            results = bench(config)
            results["command"] = command(row, args.seeds)
            (out / "results.json").write_text(json.dumps(results, indent=1))
            print(format_table(results))
        if (out / "results.json").exists():
            lines.append(table_line(row, json.loads((out / "results.json").read_text()), args.seeds))
    header = ("| row | steps | LSTM final train loss | tuned Adam (lr, schedule) | best other baseline | "
              "LSTM / Adam | LSTM vs all baselines | paper |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    table = header + "\n" + "\n".join(lines) + "\n"
    (RESULTS / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
