"""`loptim bench`: tune the named baselines, run competitors and learned optimizers untuned, compare against tuned
Adam; per-step seconds are measured side by side after the runs, and tuning is counted in each one's cost."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loptim.evaluate.cost import cost_ratio, cost_to_target
from loptim.evaluate.jobs import Job
from loptim.evaluate.plots import plot_results
from loptim.evaluate.results import build_results, summarize, versus, write_results
from loptim.evaluate.speedup import mean_curve
from loptim.evaluate.timing import time_task
from loptim.evaluate.tuning import grid_jobs, run_cached, score, select_best
from loptim.optimizers.competitors import is_competitor
from loptim.optimizers.registry import (
    check_optimizer_label,
    check_optimizer_name,
    is_baseline,
    label_factory,
    parse_label,
)
from loptim.tasks import get_task

REFERENCE = "adam"
LHOPT_REFERENCE = (
    "adamw"  # docs/design.md, evaluation protocol: LHOPT's speedups are over tuned AdamW, the optimizer it steers
)


@dataclass(frozen=True)
class BenchConfig:
    """What `loptim bench` runs; defaults follow the evaluation protocol of docs/design.md."""

    task: str
    optimizers: tuple[str, ...]
    seeds: int = 3
    steps: int | None = None
    schedules: tuple[str, ...] = ("constant",)
    select: str = "valid"
    lr_points: int = 7
    use_cache: bool = True
    out: Path | None = None
    progress: bool = True
    workers: int = os.cpu_count() or 1
    threads_per_worker: int = 1
    timing_rounds: int = 5


def _has_lhopt(names: Sequence[str]) -> bool:
    return any(n.split(":", 1)[0] == "lhopt" for n in names)


def optimizer_order(names: tuple[str, ...]) -> list[str]:
    """The reference (tuned Adam) always runs first, even if not asked for; duplicates dropped.

    A learned optimizer may name its weights after a colon: `lstm:lstm-quadratic` or `lstm:path/to.safetensors`.
    With `lhopt` among them, tuned AdamW (LHOPT's reference) runs second.
    """
    ordered = [REFERENCE, *([LHOPT_REFERENCE] if _has_lhopt(names) else [])] + [n for n in names if n != REFERENCE]
    for name in ordered:
        check_optimizer_name(name.split(":", 1)[0])
    return list(dict.fromkeys(ordered))


def checked_labels(names: tuple[str, ...]) -> list[str]:
    """`optimizer_order`, then every label checked before any run: named weights must load and fit the optimizer,
    a competitor's package must be installed (a grid of hours must not fail at its last run)."""
    ordered = optimizer_order(names)
    for label in ordered:
        check_optimizer_label(label)
    return ordered


def learned_job(task: str, label: str, steps: int, seed: int) -> Job:
    """A run of an untuned optimizer: a learned one (with its weights, if named) or a competitor."""
    name, options = parse_label(label)
    return Job(task, name, steps, seed, options)


def bench(config: BenchConfig) -> dict[str, Any]:
    task = get_task(config.task)
    task.num_params()  # fail early (missing data) before spawning workers
    steps = config.steps or task.default_steps
    seeds = list(range(config.seeds))
    names = checked_labels(config.optimizers)
    jobs: list[Job] = []
    for name in names:
        if is_baseline(name):
            jobs += grid_jobs(name, task.name, steps, seeds, config.schedules, config.lr_points)
        else:  # learned optimizers and competitors run untuned
            jobs += [learned_job(task.name, name, steps, seed) for seed in seeds]
    # Learned optimizers' runs are never cached: they depend on shipped weights that change between versions.
    # Competitors' runs are, keyed by their package version. No cache holds seconds (evaluate/timing.py).
    cacheable = [j for j in jobs if is_baseline(j.optimizer) or is_competitor(j.optimizer)]
    fresh = [j for j in jobs if not (is_baseline(j.optimizer) or is_competitor(j.optimizer))]
    bar = tqdm(total=len(jobs), desc=f"bench {task.name}", unit="run", disable=not config.progress, leave=False)
    try:
        workers, threads = config.workers, config.threads_per_worker
        curves = run_cached(cacheable, workers, threads, config.use_cache, lambda: bar.update())
        curves.update(run_cached(fresh, workers, threads, False, lambda: bar.update()))
    finally:
        bar.close()
    tuned: dict[str, tuple[dict[str, Any], list]] = {}
    grids: dict[str, list[dict]] = {}
    grid_runs: dict[str, int] = {}
    for name in names:
        if is_baseline(name):
            result = select_best(name, jobs, curves, config.select)
            tuned[name] = (result.hyperparameters, result.curves)
            grids[name] = result.grid
            grid_runs[name] = sum(1 for j in jobs if j.optimizer == name)
        else:
            tuned[name] = ({}, [curves[learned_job(task.name, name, steps, seed).key()] for seed in seeds])
            grid_runs[name] = 0
    # Seconds per step, measured now, side by side in this process, on the same model (never from a cache).
    factories = {name: label_factory(name, hyper) for name, (hyper, _) in tuned.items()}
    times = time_task(task, factories, steps, rounds=config.timing_rounds, threads=config.threads_per_worker)
    reference = tuned[REFERENCE][1]
    entries = {name: summarize(hyper, runs, reference, times, name, REFERENCE) for name, (hyper, runs) in tuned.items()}
    target = mean_curve(reference).final_loss
    costs = {
        name: cost_to_target(mean_curve(runs), target, steps, grid_runs[name], times.per_step(name))
        for name, (_, runs) in tuned.items()
    }
    for name, cost in costs.items():
        entries[name]["tuning_runs"] = grid_runs[name]
        entries[name]["cost_to_target"] = cost.to_json()
        entries[name]["cost_ratio_vs_tuned_adam"] = cost_ratio(costs[REFERENCE], cost)
    if _has_lhopt(names):
        grid = grids[LHOPT_REFERENCE]
        for name, (_, runs) in tuned.items():
            adamw_runs, adamw_seconds = tuned[LHOPT_REFERENCE][1], times.per_step(LHOPT_REFERENCE)
            entries[name].update(versus(runs, adamw_runs, LHOPT_REFERENCE, times.per_step(name), adamw_seconds))
            # How many of AdamW's configurations end below this optimizer (0: as good as the best of them).
            mine = score(runs, config.select)
            better = sum(1 for g in grid if g["score"] is not None and g["score"] < mine)
            entries[name][f"{LHOPT_REFERENCE}_configs_better"] = better
            entries[name][f"{LHOPT_REFERENCE}_configs"] = len(grid)
    for name, grid in grids.items():
        entries[name]["grid"] = grid  # every configuration's score (final valid loss of the seed mean)
    results = build_results(
        task.name,
        steps,
        seeds,
        entries,
        select=config.select,
        schedules=list(config.schedules),
        lr_points=config.lr_points,
        threads_per_run=config.threads_per_worker,
        timing={"rounds": times.rounds, "block": times.block, "threads": config.threads_per_worker},
    )
    if config.out is not None:
        config.out.mkdir(parents=True, exist_ok=True)
        write_results(config.out / "results.json", results)
        plot_results(results, config.out / "curves.png")
    return results


def _fmt(stats: dict[str, float | None]) -> str:
    mean, std = stats["mean"], stats["std"]
    return "diverged" if mean is None else f"{mean:.4f}±{std:.4f}"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "never" if value is None else fmt.format(value)


def _hyper(hyperparameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyperparameters.items())


def _cost(entry: dict[str, Any]) -> str:
    cost = entry.get("cost_to_target")  # schema 2 only
    if cost is None:
        return "-"
    if cost["steps"] is None:
        return f"{cost['runs']} run{'s' * (cost['runs'] != 1)}, never"
    seconds = "" if cost["seconds"] is None else f", {cost['seconds']:.3g} s"
    return f"{cost['runs']} run{'s' * (cost['runs'] != 1)}, {cost['steps']:.0f} steps{seconds}"


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table of one bench run (schema 1 or 2), plus each optimizer's final-loss ratios to tuned Adam."""
    header = ["optimizer", "tuned hyperparameters", "final train*", "final valid", "final test", "speedup",
              "wall speedup", "ms/step", "opt share", "cost to target (tuning incl.)"]  # fmt: skip
    versus_adamw = f"speedup_vs_tuned_{LHOPT_REFERENCE}" in next(iter(results["optimizers"].values()))
    if versus_adamw:
        header += ["vs AdamW", "wall vs AdamW"]
    rows = [header]
    for name, e in results["optimizers"].items():
        extra = []
        if versus_adamw:
            extra = [
                _num(e[f"speedup_vs_tuned_{LHOPT_REFERENCE}"]),
                _num(e[f"wallclock_speedup_vs_tuned_{LHOPT_REFERENCE}"]),
            ]
        timing = e.get("timing")
        if timing is not None:
            per_step = f"{timing['per_step_ms']:.2f}"
        else:  # schema 1: seconds recorded during the runs
            per_step = f"{1e3 * e['seconds'] / max(results['steps'], 1):.2f}"
        share = e["optimizer_seconds_fraction"]
        rows.append(
            [
                name,
                _hyper(e["hyperparameters"]) or "(untuned)",
                _fmt(e["final_train_loss"]),
                _fmt(e["final_valid_loss"]),
                _fmt(e["final_test_loss"]),
                _num(e["speedup_vs_tuned_adam"]),
                _num(e["wallclock_speedup_vs_tuned_adam"]),
                per_step,
                "-" if share is None else f"{100 * share:.0f}%",
                _cost(e),
                *extra,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"task {results['task']}, {results['steps']} steps, seeds {results['seeds']}; baselines tuned by final "
        f"{results['select']} loss over {results['lr_points']} learning rates x schedules "
        f"{','.join(results['schedules'])}; {results['threads_per_run']} thread(s) per run"
    )
    timed = results.get("timing")
    lines.append(
        "* final train = mean minibatch training loss over the last 10% of steps; speedup = tuned Adam's steps "
        "(or training seconds) to reach its final mean validation loss / the optimizer's; 'never' = not reached"
    )
    if timed is not None:
        lines.append(
            f"ms/step = forward+backward + step(), measured side by side in this run ({timed['rounds']} rounds of "
            f"{timed['block']} steps, medians, {timed['threads']} thread); wall speedup and seconds use it; cost to "
            "target = every run of a tuned baseline's grid (full length) + the winner's steps to tuned Adam's final "
            "loss; 1 run for an untuned optimizer"
        )
    ref = results["optimizers"][REFERENCE]
    for name, e in results["optimizers"].items():
        if name == REFERENCE:
            continue
        for key, label in (("final_train_loss", "train"), ("final_valid_loss", "valid")):
            mine, theirs = e[key]["mean"], ref[key]["mean"]
            if mine is not None and theirs:
                lines.append(f"ratio {name} / tuned adam, final {label} loss: {mine / theirs:.3f}")
    return "\n".join(lines)
