"""One summary table of rows taken from several committed suite runs of the same protocol (their tuned references'
runs are shared): the README's table of today's defaults beside the baselines and the untuned competitors.

    python benchmarks/suite/defaults.py core:adam,adamw,adam-default candidates-lr:lhopt

Each argument is FOLDER:LABEL[,LABEL...] (a folder of benchmarks/suite/results and the labels of its summary);
rows come out in the order given, with the folder they come from, the reference each is judged against, and the
final loss over tuned Adam's in the same run, so that rows judged against tuned AdamW (LHOPT) compare too.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from loptim.evaluate.suite_report import SUMMARY_HEADER, summary_cells

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = SUMMARY_HEADER + " judged against | results | final loss over tuned Adam's, geometric mean |"


def over_tuned_adam(results: dict[str, Any], label: str) -> float | None:
    """Geometric mean over tasks of the label's mean final validation loss over tuned Adam's in the same run (one
    currency for rows judged against tuned AdamW); None when a task diverged or the run has no `adam`."""
    ratios = []
    for task in results["tasks"].values():
        if "adam" not in task["optimizers"]:
            return None
        mine, adam = task["optimizers"][label]["final_valid_loss"]["mean"], task["optimizers"]["adam"]["target"]
        if mine is None or not math.isfinite(mine) or not adam:
            return None
        ratios.append(mine / adam)
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def rows(folder: str, labels: list[str], results_dir: Path = RESULTS) -> list[str]:
    """The summary rows of `labels` in `folder`'s suite.json (suite_report's cells), then each one's reference,
    folder and final loss over tuned Adam's."""
    results: dict[str, Any] = json.loads((results_dir / folder / "suite.json").read_text())
    lines = []
    for label in labels:
        if label not in results["summary"]:
            raise SystemExit(f"no optimizer '{label}' in {folder}; it has {', '.join(results['summary'])}")
        references = {task["optimizers"][label]["reference"] for task in results["tasks"].values()}
        against = "itself" if references == {label} else " and ".join(f"tuned {r}" for r in sorted(references))
        extra = [against, f"`{folder}`", _cell(over_tuned_adam(results, label))]
        cells = summary_cells(label, results["summary"][label]) + extra
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(specs: list[str], results_dir: Path = RESULTS) -> str:
    """The whole table for arguments FOLDER:LABEL[,LABEL...]."""
    lines = [HEADER, "|---" * HEADER.count(" | ") + "|---|"]
    for spec in specs:
        folder, sep, labels = spec.partition(":")
        if not sep or not labels:
            raise SystemExit(f"expected FOLDER:LABEL[,LABEL...], got '{spec}'")
        lines += rows(folder, labels.split(","), results_dir)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", help="FOLDER:LABEL[,LABEL...]")
    print(table(parser.parse_args().specs), end="")


if __name__ == "__main__":
    main()
