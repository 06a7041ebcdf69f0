"""Markdown table of tuned Adam on every task, from benchmarks/tasks/results/*/results.json (see run.sh)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def fmt(stats: dict) -> str:
    return "diverged" if stats["mean"] is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def table() -> str:
    """The markdown table from the committed results (the README quotes it verbatim; tests check that)."""
    lines = [
        "| task | steps | tuned Adam lr | final train (last 10%) | final valid | final test | test metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*/results.json")):
        results = json.loads(path.read_text())
        adam = results["optimizers"]["adam"]
        metrics = ", ".join(f"{k} {v['mean']:.3f}" for k, v in adam["metrics"].items() if v["mean"] is not None)
        lines.append(
            f"| {results['task']} | {results['steps']} | {adam['hyperparameters']['lr']:.3g} | "
            f"{fmt(adam['final_train_loss'])} | {fmt(adam['final_valid_loss'])} | {fmt(adam['final_test_loss'])} | "
            f"{metrics or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    text = table()
    (RESULTS / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
