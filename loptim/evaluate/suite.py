"""`loptim suite`: every optimizer on the held-out suite under one protocol (benchmarks/suite/README.md).

Tuned baselines (tuned Adam always; tuned AdamW with LHOPT) are tuned on seed 0 over learning rates x
{constant, cosine} and reported on fresh seeds 1-3; every other optimizer runs untuned on seeds 1-3. Every run is
cached in OUT/runs (losses only), so an interrupted suite resumes where it stopped; per-step seconds are measured
side by side in the run that writes the table. `tuned_from` (`--tuned-from FILE`) takes the tuned baselines'
hyperparameters from an earlier suite.json of the same protocol instead of re-running their grids (the run cache is
per machine; the grid is most of a suite's runs): their report seeds still run here, and the results name the file.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loptim.errors import LoptimError
from loptim.evaluate.bench import LHOPT_REFERENCE, REFERENCE, checked_labels, learned_job
from loptim.evaluate.jobs import Job
from loptim.evaluate.suite_report import SuiteTask, plot_profile, suite_results, summarize_suite, table_markdown
from loptim.evaluate.timing import time_task
from loptim.evaluate.tuning import grid_jobs, run_cached, select_best
from loptim.io import atomic_write_text
from loptim.optimizers.registry import is_baseline, label_factory
from loptim.tasks import get_task
from loptim.tasks.base import Task
from loptim.tasks.suite import META_VALID_TASKS, SUITE_CORE, SUITE_LARGE, SUITE_QUICK

# "meta-valid": the suite's protocol on the meta-valid tasks, for choosing between candidate weights without the
# held-out suite (the test split never selects; benchmarks/suite/README.md, The meta-valid tier).
TIERS = {"core": SUITE_CORE, "large": SUITE_LARGE, "meta-valid": META_VALID_TASKS}
DEFAULT_OPTIMIZERS = ("adam", "adamw", "adam-default", "schedulefree", "prodigy", "dadapt", "mlp", "lhopt")
# The modality of each data set the suite uses (docs/data.md); the architecture is the task's own business.
MODALITIES = {
    "fashion-mnist": "images",
    "shakespeare": "language (characters)",
    "brown": "language (words)",
    "movielens-100k": "recommendation",
    "diamonds": "tabular",
    "fsdd": "audio",
    "synthetic": "synthetic",
}


def modality(task: Task) -> str:
    """The task's own `modality` if it declares one, else its data set's (MODALITIES), else its data set's name."""
    declared = getattr(task, "modality", None)
    if declared:
        return declared
    return MODALITIES.get(task.data_source, task.data_source)


def check_data(task: Task) -> None:
    """Load the task's data now (DataMissingError names the install command) rather than in a worker."""
    task.eval_batches("valid")


def list_rows(tier: str | None = None) -> list[list[str]]:
    """name, tier, modality, params, steps for each suite task (params: '(data not installed)' when missing)."""
    rows = []
    for name, tasks in (*TIERS.items(), ("quick", SUITE_QUICK)):
        if tier is not None and name != tier:
            continue
        for task_name in tasks:
            task = get_task(task_name)
            try:
                check_data(task)
                params = str(task.num_params())
            except LoptimError:
                params = "(data not installed)"
            rows.append([task_name, name, modality(task), params, str(task.default_steps)])
    return rows


@dataclass(frozen=True)
class SuiteConfig:
    """What `loptim suite` runs; the defaults are the protocol of benchmarks/suite/README.md."""

    optimizers: tuple[str, ...] = DEFAULT_OPTIMIZERS
    out: Path = Path("out/suite")
    tier: str = "core"
    quick: bool = False
    tasks: tuple[str, ...] | None = None  # overrides the tier (tests, partial reruns)
    steps: int | None = None  # overrides each task's default_steps
    tuning_seeds: tuple[int, ...] = (0,)
    report_seeds: tuple[int, ...] = (1, 2, 3)
    lr_points: int = 7
    schedules: tuple[str, ...] = ("constant", "cosine")
    select: str = "valid"
    workers: int = os.cpu_count() or 1
    threads_per_worker: int = 1
    timing_rounds: int = 5
    progress: bool = True
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    tuned_from: Path | None = None  # an earlier suite.json whose tuned baselines' hyperparameters are taken

    @classmethod
    def quick_mode(cls, **overrides: Any) -> SuiteConfig:
        """Minutes on one core: 2 tasks, 40 steps, 3 learning rates, one tuning and one reporting seed."""
        settings = {"quick": True, "steps": 40, "lr_points": 3, "tuning_seeds": (0,), "report_seeds": (1,)}
        return cls(**{**settings, **overrides})

    def task_names(self) -> tuple[str, ...]:
        if self.tasks is not None:
            known = set(SUITE_QUICK).union(*TIERS.values())
            outside = [t for t in self.tasks if t not in known]
            if outside:
                raise LoptimError(f"not suite tasks: {', '.join(outside)} (the suite's tasks: loptim suite --list)")
            return self.tasks
        if self.quick:
            return SUITE_QUICK
        if self.tier not in TIERS:
            raise LoptimError(f"no suite tier '{self.tier}'; tiers: {', '.join(TIERS)}")
        if not TIERS[self.tier]:
            raise LoptimError(f"the suite's '{self.tier}' tier has no tasks yet (loptim/tasks/suite.py)")
        return TIERS[self.tier]


def _report_jobs(task: str, label: str, steps: int, seeds: Sequence[int], hyper: dict | None = None) -> list[Job]:
    if is_baseline(label):
        return [Job(task, label, steps, seed, dict(hyper or {})) for seed in seeds]
    return [learned_job(task, label, steps, seed) for seed in seeds]


def run_suite(config: SuiteConfig) -> dict[str, Any]:
    """Run (or resume) the suite and write OUT/suite.json, OUT/table.md and OUT/profile.png."""
    labels = checked_labels(config.optimizers)  # checks names, weights and packages before any run
    tasks = [get_task(name) for name in config.task_names()]
    for task in tasks:
        check_data(task)  # missing data fails here, before the grid
    steps = {task.name: config.steps or task.default_steps for task in tasks}
    baselines = [label for label in labels if is_baseline(label)]
    untuned = [label for label in labels if not is_baseline(label)]
    grid = {
        (task.name, name): grid_jobs(
            name, task.name, steps[task.name], config.tuning_seeds, config.schedules, config.lr_points
        )  # fmt: skip
        for task in tasks
        for name in baselines
    }

    def reported(task: str, label: str, hyper: dict | None = None) -> list[Job]:
        return _report_jobs(task, label, steps[task], config.report_seeds, hyper)

    taken = None if config.tuned_from is None else tuned_hyperparameters(config, list(grid), steps)
    first = [job for jobs in grid.values() for job in jobs] if taken is None else []
    first += [job for task in tasks for label in untuned for job in reported(task.name, label)]
    total = len(first) + len(tasks) * len(baselines) * len(config.report_seeds)
    root = config.out / "runs"
    bar = tqdm(total=total, desc="suite", unit="run", disable=not config.progress)
    try:
        workers, threads = config.workers, config.threads_per_worker
        curves = run_cached(first, workers, threads, True, lambda: bar.update(), root=root)
        winners = taken or {
            key: select_best(key[1], jobs, curves, config.select).hyperparameters for key, jobs in grid.items()
        }
        second = [job for (task, name), hyper in winners.items() for job in reported(task, name, hyper)]
        curves.update(run_cached(second, workers, threads, True, lambda: bar.update(), root=root))
        entries = []
        for task in tasks:
            bar.set_postfix_str(f"timing {task.name}")
            hyper = {label: winners.get((task.name, label), {}) for label in labels}
            runs = {label: [curves[j.key()] for j in reported(task.name, label, hyper[label])] for label in labels}
            factories = {label: label_factory(label, hyper[label]) for label in labels}
            times = time_task(task, factories, steps[task.name], rounds=config.timing_rounds,
                              threads=config.threads_per_worker)  # fmt: skip
            grid_runs = {label: len(grid.get((task.name, label), [])) for label in labels}
            entries.append(SuiteTask(task.name, modality(task), task.num_params(), steps[task.name], hyper, runs,
                                     grid_runs, times))  # fmt: skip
    finally:
        bar.close()
    references = {label: LHOPT_REFERENCE if label.split(":")[0] == "lhopt" else REFERENCE for label in labels}
    protocol = {
        "tasks": [task.name for task in tasks],
        **tuning_protocol(config),
        "report_seeds": list(config.report_seeds),
        "threads_per_run": config.threads_per_worker,
        "timing_rounds": config.timing_rounds,
        **({} if config.tuned_from is None else {"tuned_from": str(config.tuned_from)}),
    }
    results = suite_results(entries, references, protocol, tier="quick" if config.quick else config.tier,
                            command=config.command)  # fmt: skip
    results["summary"] = summarize_suite(results)
    config.out.mkdir(parents=True, exist_ok=True)
    from loptim.evaluate.results import write_results

    write_results(config.out / "suite.json", results)
    atomic_write_text(config.out / "table.md", table_markdown(results))
    plot_profile(results, config.out / "profile.png")
    return results


def tuning_protocol(config: SuiteConfig) -> dict[str, Any]:
    """What makes two tunings of the baselines the same: seeds, grid, schedules, selection (as results record it)."""
    return {"tuning_seeds": list(config.tuning_seeds), "lr_points": config.lr_points,
            "schedules": list(config.schedules), "select": config.select}  # fmt: skip


def tuned_hyperparameters(
    config: SuiteConfig, keys: Sequence[tuple[str, str]], steps: dict[str, int]
) -> dict[tuple[str, str], dict]:
    """The (task, baseline) hyperparameters of `config.tuned_from`, checked to come from the same protocol: the same
    tuning seeds, grid, schedules and selection, each task at the same number of steps, every baseline tuned there."""
    from loptim.evaluate.results import load_results

    path = Path(config.tuned_from)
    if not path.is_file():
        raise LoptimError(f"--tuned-from: no such file {path} (give an earlier run's OUT/suite.json)")
    earlier = load_results(path)
    protocol = earlier.get("protocol", {})
    differ = [k for k, ours in tuning_protocol(config).items() if protocol.get(k) != ours]
    if differ:
        raise LoptimError(f"--tuned-from {path}: tuned under another protocol ({', '.join(differ)} differ); rerun "
                          "without --tuned-from")  # fmt: skip
    taken = {}
    for task, label in keys:
        entry = earlier["tasks"].get(task)
        judged = None if entry is None else entry["optimizers"].get(label)
        if judged is None or not judged.get("hyperparameters"):
            raise LoptimError(f"--tuned-from {path}: {label} was not tuned on {task} there; rerun without it")
        if entry["steps"] != steps[task]:
            raise LoptimError(f"--tuned-from {path}: {task} ran {entry['steps']} steps there, {steps[task]} here")
        taken[(task, label)] = dict(judged["hyperparameters"])
    return taken


def command_line(argv: Sequence[str]) -> str:
    return " ".join(["loptim", *(shlex.quote(a) for a in argv)])
