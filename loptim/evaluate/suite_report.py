"""The suite's numbers: per task and seed, final-loss ratios and speedups against the tuned reference, a verdict
that claims "above 1" only when every seed is, the tuning-inclusive cost; summaries over tasks; the table and the
performance profile. Definitions: benchmarks/suite/README.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loptim.evaluate.cost import cost_ratio, cost_to_target
from loptim.evaluate.harness import Curve
from loptim.evaluate.results import SCHEMA
from loptim.evaluate.speedup import first_reach, mean_curve
from loptim.evaluate.timing import StepTimes


@dataclass
class SuiteTask:
    """One task's runs on the reporting seeds, by optimizer label, with what is needed to judge them."""

    name: str
    modality: str
    params: int
    steps: int
    hyperparameters: dict[str, dict]
    runs: dict[str, list[Curve]]
    grid_runs: dict[str, int]
    times: StepTimes


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _ratio(reference: float | None, candidate: float | None) -> float | None:
    if reference is None or candidate is None:
        return None
    return math.inf if candidate <= 0 else reference / candidate


def _interval(values: Sequence[float | None]) -> dict[str, Any]:
    """Per-seed values with their mean and [min, max] (never reached or diverged = None: the interval is None)."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    whole = len(known) == len(values) and bool(values)
    return {
        "per_seed": [_finite(v) for v in values],
        "mean": float(np.mean(known)) if whole else None,
        "min": min(known) if whole else None,
        "max": max(known) if whole else None,
    }


def verdict(per_seed: Sequence[float | None]) -> str:
    """'above 1' only when every seed is above 1, 'below 1' when every seed is below, 'never' when no seed reached
    the target, 'within noise' otherwise (the seeds disagree, or one sits at 1)."""
    if all(v is None for v in per_seed):
        return "never"
    values = [0.0 if v is None else v for v in per_seed]  # a seed that never reached counts as no speedup
    if all(v > 1 for v in values):
        return "above 1"
    if all(v < 1 for v in values):
        return "below 1"
    return "within noise"


def judge(task: SuiteTask, label: str, reference: str) -> dict[str, Any]:
    """`label` on `task` against tuned `reference`: L* = the reference's seed-mean final validation loss; per seed,
    final loss / L* and speedup = steps the reference's seed-mean curve needs to reach L* / steps this seed needs."""
    ref_curve = mean_curve(task.runs[reference])
    target = ref_curve.final_loss
    ref_steps = first_reach(ref_curve.valid_step, ref_curve.valid_loss, target)
    ref_seconds, seconds = task.times.per_step(reference), task.times.per_step(label)
    runs = task.runs[label]
    reach = [first_reach(np.array(c.valid_step, float), np.array(c.valid_loss, float), target) for c in runs]
    steps_speedup = [_ratio(ref_steps, r) for r in reach]
    wall_speedup = [None if s is None else s * ref_seconds / seconds for s in steps_speedup]
    finals = [c.valid_loss[-1] for c in runs]
    cost = cost_to_target(mean_curve(runs), target, task.steps, task.grid_runs[label], seconds)
    ref_cost = cost_to_target(ref_curve, target, task.steps, task.grid_runs[reference], ref_seconds)
    return {
        "reference": reference,
        "hyperparameters": task.hyperparameters[label],
        "target": _finite(target),
        "final_valid_loss": _interval(finals),
        "final_test_loss": _interval([c.test_loss for c in runs]),
        "final_loss_ratio": _interval([f / target if math.isfinite(f) and target > 0 else None for f in finals]),
        "speedup": _interval(steps_speedup),
        "wallclock_speedup": _interval(wall_speedup),
        "verdict": "reference" if label == reference else verdict(steps_speedup),
        "wallclock_verdict": "reference" if label == reference else verdict(wall_speedup),
        "tuning_runs": task.grid_runs[label],
        "cost_to_target": cost.to_json(),
        "cost_ratio_vs_reference": cost_ratio(ref_cost, cost),
        "timing": task.times.to_json(label),
        "diverged_seeds": sum(c.diverged for c in runs),
        "valid_curves": [{"seed": c.seed, "valid_step": c.valid_step, "valid_loss": c.valid_loss} for c in runs],
    }


def suite_results(
    tasks: Sequence[SuiteTask], references: dict[str, str], protocol: dict[str, Any], tier: str, command: str
) -> dict[str, Any]:
    """The suite's JSON (schema 2): protocol, and per task its size and every optimizer judged."""
    return {
        "schema": SCHEMA,
        "kind": "suite",
        "tier": tier,
        "command": command,
        "protocol": protocol,
        "tasks": {
            t.name: {
                "modality": t.modality,
                "params": t.params,
                "steps": t.steps,
                "timing": {"rounds": t.times.rounds, "block": t.times.block},
                "optimizers": {label: judge(t, label, references[label]) for label in t.runs},
            }
            for t in tasks
        },
    }


def interquartile_mean(values: Sequence[float]) -> float | None:
    """Mean of the middle 50% (drop int(n/4) values at each end; Agarwal et al. 2021's IQM, scipy trim_mean 0.25)."""
    ordered = sorted(values)
    cut = int(0.25 * len(ordered))
    middle = ordered[cut : len(ordered) - cut]
    return float(np.mean(middle)) if middle else None


def summarize_suite(results: dict[str, Any]) -> dict[str, Any]:
    """Per optimizer over tasks: geometric mean and IQM of the final-loss ratio (IQM over every task x seed),
    median step and wall-clock speedups of the seed means (a task never reached counts as 0), verdict counts."""
    labels = list(next(iter(results["tasks"].values()))["optimizers"])
    summary = {}
    for label in labels:
        judged = [task["optimizers"][label] for task in results["tasks"].values()]
        ratios = [j["final_loss_ratio"]["mean"] for j in judged]
        finite = [r for r in ratios if r is not None and r > 0]
        per_seed = [r for j in judged for r in j["final_loss_ratio"]["per_seed"] if r is not None]
        summary[label] = {
            "tasks": len(judged),
            "tasks_diverged": sum(r is None for r in ratios),
            "final_loss_ratio_geomean": float(np.exp(np.mean(np.log(finite)))) if finite else None,
            "final_loss_ratio_iqm": interquartile_mean(per_seed),
            "median_speedup": statistics.median(j["speedup"]["mean"] or 0.0 for j in judged),
            "median_wallclock_speedup": statistics.median(j["wallclock_speedup"]["mean"] or 0.0 for j in judged),
            "tasks_above_1": sum(j["verdict"] == "above 1" for j in judged),
            "tasks_wallclock_above_1": sum(j["wallclock_verdict"] == "above 1" for j in judged),
        }
    return summary


def _x(stats: dict[str, Any], digits: int = 2) -> str:
    if stats["mean"] is None:
        known = [v for v in stats["per_seed"] if v is not None]
        return f"never ({len(known)}/{len(stats['per_seed'])} seeds reached)" if known else "never"
    if stats["min"] == stats["max"]:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} [{stats['min']:.{digits}f}, {stats['max']:.{digits}f}]"


def _cost(judged: dict[str, Any]) -> str:
    cost = judged["cost_to_target"]
    if cost["steps"] is None:
        return f"{cost['runs']} run{'s' * (cost['runs'] != 1)}, never"
    return f"{cost['runs']} run{'s' * (cost['runs'] != 1)}, {cost['steps']:.0f} steps, {cost['seconds']:.3g} s"


def _hyper(hyperparameters: dict[str, Any]) -> str:
    if not hyperparameters:
        return "untuned"
    return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in hyperparameters.values())


SUMMARY_HEADER = (
    "| optimizer | tasks | final-loss ratio, geometric mean | final-loss ratio, IQM | median speedup (steps) "
    "| median speedup (seconds) | tasks above 1 (all seeds) | tasks diverged |"
)


def summary_cells(label: str, s: dict[str, Any]) -> list[str]:
    """The cells of one optimizer's row of the summary table (SUMMARY_HEADER), from summarize_suite's entry."""
    geo, iqm = s["final_loss_ratio_geomean"], s["final_loss_ratio_iqm"]
    return [label, str(s["tasks"]), "-" if geo is None else f"{geo:.3f}", "-" if iqm is None else f"{iqm:.3f}",
            f"{s['median_speedup']:.2f}", f"{s['median_wallclock_speedup']:.2f}", str(s["tasks_above_1"]),
            str(s["tasks_diverged"])]  # fmt: skip


def table_markdown(results: dict[str, Any]) -> str:
    """One markdown table (a row per task and optimizer) and the summary table beneath it."""
    seeds = results["protocol"]["report_seeds"]
    lines = [
        f"Suite tier `{results['tier']}`: seeds {seeds} reported; values are seed means [min, max over seeds].",
        "",
        "| task | optimizer | vs tuned | tuned lr, schedule | final-loss ratio | speedup (steps) | speedup (seconds) "
        "| verdict | ms/step (opt share) | cost to target, tuning incl. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task_name, task in results["tasks"].items():
        for label, j in task["optimizers"].items():
            timing = j["timing"]
            cells = [task_name, label, j["reference"], _hyper(j["hyperparameters"]), _x(j["final_loss_ratio"], 3),
                     _x(j["speedup"]), _x(j["wallclock_speedup"]), j["verdict"],
                     f"{timing['per_step_ms']:.2f} ({100 * timing['optimizer_share']:.0f}%)", _cost(j)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", SUMMARY_HEADER, "|---|---|---|---|---|---|---|---|"]
    for label, s in results["summary"].items():
        lines.append("| " + " | ".join(summary_cells(label, s)) + " |")
    if results.get("command"):
        lines += ["", f"Command: `{results['command']}`"]
    return "\n".join(lines) + "\n"


def performance_profile(results: dict[str, Any], taus: np.ndarray) -> dict[str, np.ndarray]:
    """Dolan & More (2002): for each optimizer, the fraction of tasks whose seed-mean final validation loss is
    within a factor tau of the best optimizer's on that task (diverged: never within)."""
    labels = list(next(iter(results["tasks"].values()))["optimizers"])
    ratios = {label: [] for label in labels}
    for task in results["tasks"].values():
        finals = {label: task["optimizers"][label]["final_valid_loss"]["mean"] for label in labels}
        best = min((v for v in finals.values() if v is not None), default=None)
        for label, value in finals.items():
            ratios[label].append(math.inf if value is None or best is None or best <= 0 else value / best)
    return {label: np.array([[r <= tau for r in rs] for tau in taus]).mean(axis=1) for label, rs in ratios.items()}


def plot_profile(results: dict[str, Any], path: Path) -> None:
    """profile.png: the performance profile of every optimizer over the suite's tasks (small: well under 500 KB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.linspace(1.0, 2.0, 201)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, fractions) in enumerate(performance_profile(results, taus).items()):
        ax.step(taus, fractions, where="post", label=label, linestyle=("-", "--", ":", "-.")[i % 4], linewidth=1.5)
    ax.set_xlabel("tau: final validation loss within tau x the best optimizer's")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"performance profile, {len(results['tasks'])} tasks ({results['tier']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
