"""Geometric means over dev tasks gathered from several devset.py results (benchmarks/generalist/devset.py): each
optimizer's ratio to tuned Adam, per task, from whichever file has it; an optimizer counts only where every file
it appears in together covers all `--tasks`. Labels are matched across files after `--alias OLD=NEW` renames (the
same weights run under two labels).

    python benchmarks/generalist/devset_summary.py RESULTS/devset-nominal.json RESULTS/devset-nominal-more.json \
        ... --out RESULTS/devset-nominal-summary.json     (RESULTS: benchmarks/generalist/results)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from loptim.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).parent))
from devset import geometric_mean  # noqa: E402


def gather(files: list[Path], aliases: dict[str, str]) -> dict[str, dict[str, float]]:
    """{optimizer: {task: ratio to tuned Adam}} over `files` (Adam's own rows left out)."""
    ratios: dict[str, dict[str, float]] = {}
    for path in files:
        for task, entry in json.loads(path.read_text())["tasks"].items():
            for label, ratio in entry["ratio_to_tuned_adam"].items():
                if not label.startswith("adam "):
                    ratios.setdefault(aliases.get(label, label), {})[task] = ratio
    return ratios


def geometric_means(ratios: dict[str, dict[str, float]], tasks: list[str]) -> dict[str, float]:
    """Each optimizer's geometric mean over `tasks` (inf if any is), for those that have them all."""
    return {
        label: geometric_mean([per_task[t] for t in tasks])
        for label, per_task in ratios.items()
        if all(t in per_task for t in tasks)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--tasks", help="comma-separated tasks every optimizer must have (default: all tasks seen)")
    parser.add_argument("--alias", action="append", default=[], help="OLD=NEW (split at the last '=')")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    aliases = dict(a.rsplit("=", 1) for a in args.alias)
    ratios = gather(args.files, aliases)
    tasks = args.tasks.split(",") if args.tasks else sorted({t for r in ratios.values() for t in r})
    summary = geometric_means(ratios, tasks)
    if not summary:
        raise SystemExit(f"no optimizer has all {len(tasks)} tasks: {', '.join(tasks)}")
    for label, value in sorted(summary.items(), key=lambda item: item[1]):
        print(f"{value:.4f} | {label}")
    if args.out:
        payload = {
            "command": shlex.join(["python", "benchmarks/generalist/devset_summary.py", *sys.argv[1:]]),
            "tasks": tasks,
            "geometric_mean_ratio_to_tuned_adam": summary,
            "ratio_to_tuned_adam": {label: {t: ratios[label][t] for t in tasks} for label in summary},
        }
        atomic_write_text(args.out, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
