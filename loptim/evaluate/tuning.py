"""Tune a baseline over learning rate x schedule on the validation split (never the test split), with a run cache."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loptim.evaluate.harness import Curve
from loptim.evaluate.jobs import Job, run_jobs
from loptim.evaluate.speedup import mean_curve
from loptim.io import atomic_write_text
from loptim.optimizers.baselines import BASELINES, baseline_spec
from loptim.optimizers.competitors import competitor_spec, is_competitor
from loptim.optimizers.registry import learned_options
from loptim.tasks.data.paths import cache_dir

CACHE_VERSION = 1  # bump when a change to tasks or the harness invalidates cached curves (losses, not seconds)
SELECT = ("valid", "train")


def _weights_digest(job: Job) -> str:
    """The first 12 hex digits of the SHA-256 of the weights file a learned optimizer's job runs with."""
    from loptim.pretrained import resolve

    weights = job.hyperparameters.get("weights") or learned_options(job.optimizer)["weights"]
    return hashlib.sha256(resolve(weights).read_bytes()).hexdigest()[:12]


def _optimizer_dir(job: Job) -> str:
    """Runs are keyed by what else decides them: a competitor's installed package version, a learned optimizer's
    weights (their digest: retrained weights under the same name are new runs)."""
    if job.optimizer in BASELINES:
        return job.optimizer
    if is_competitor(job.optimizer):
        return f"{job.optimizer}@{competitor_spec(job.optimizer).installed_version()}"
    return f"{job.optimizer}@{_weights_digest(job)}{_learned_options(job)}"


def _learned_options(job: Job) -> str:
    """A learned optimizer's factory options besides its weights (LHOPT's cooldown), as its cache folder names them:
    a run under another default is another run. Empty for an optimizer without such options."""
    options = learned_options(job.optimizer)
    return "".join(f"-{k}={job.hyperparameters.get(k, v)}" for k, v in options.items() if k != "weights")


def cache_path(job: Job, root: Path | None = None) -> Path:
    """Where a run's curve is cached: keyed by task, optimizer, hyperparameters, steps and seed."""
    items = sorted(job.hyperparameters.items())
    hyper = "-".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in items) or "defaults"
    name = f"{hyper}-steps={job.steps}-seed={job.seed}.json".replace("/", "%")
    root = root if root is not None else cache_dir() / "runs" / f"tuning-v{CACHE_VERSION}"
    return root / job.task / _optimizer_dir(job) / name


def read_cached(job: Job, root: Path | None = None) -> Curve | None:
    """A cached curve, losses only: seconds that older entries recorded are dropped, never reported."""
    path = cache_path(job, root)
    if not path.exists():
        return None
    try:
        curve = Curve.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)  # a corrupt cache entry is recomputed
        return None
    curve.seconds, curve.optimizer_seconds = [], 0.0
    return curve


def write_cached(job: Job, curve: Curve, root: Path | None = None) -> None:
    atomic_write_text(cache_path(job, root), json.dumps(curve.losses_json()))


def run_cached(
    jobs: Sequence[Job],
    workers: int = 1,
    threads: int | None = None,
    use_cache: bool = True,
    progress: Callable[[], None] | None = None,
    root: Path | None = None,
) -> dict[tuple, Curve]:
    """Curves of `jobs` by job key: cached ones read back, the rest run (and cached as each finishes); `root`
    puts the cache elsewhere than $LOPTIM_CACHE/runs (a suite keeps its own, in its output folder)."""
    results: dict[tuple, Curve] = {}
    todo = []
    for job in jobs:
        curve = read_cached(job, root) if use_cache else None
        if curve is None:
            todo.append(job)
        else:
            results[job.key()] = curve
            if progress is not None:
                progress()

    def done(job: Job, curve: Curve) -> None:
        if use_cache:
            write_cached(job, curve, root)
        results[job.key()] = curve
        if progress is not None:
            progress()

    run_jobs(todo, workers=workers, threads=threads, on_done=done)
    return results


def score(curves: Sequence[Curve], select: str) -> float:
    """Final validation loss of the seed-mean curve, or mean final training loss (select='train')."""
    if select == "valid":
        value = mean_curve(curves).final_loss
    elif select == "train":
        value = sum(c.final_train_loss() for c in curves) / len(curves)
    else:
        raise ValueError(f"select must be one of {SELECT}, not '{select}'")
    return value if math.isfinite(value) else math.inf


@dataclass
class TuneResult:
    """The winning configuration, its curves, and every configuration's score."""

    name: str
    lr: float
    schedule: str
    curves: list[Curve]
    grid: list[dict]

    @property
    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "schedule": self.schedule}


def grid_jobs(
    name: str, task: str, steps: int, seeds: Sequence[int], schedules: Sequence[str], lr_points: int = 7
) -> list[Job]:
    """Every (learning rate, schedule, seed) of baseline `name`'s grid as a job."""
    return [
        Job(task, name, steps, seed, {"lr": lr, "schedule": schedule})
        for lr in baseline_spec(name).lr_grid(lr_points)
        for schedule in schedules
        for seed in seeds
    ]


def select_best(name: str, jobs: Sequence[Job], curves: dict[tuple, Curve], select: str = "valid") -> TuneResult:
    """Group `jobs` of one baseline by configuration and pick the lowest score (ties: first in grid order)."""
    if select not in SELECT:
        raise ValueError(f"select must be one of {SELECT}, not '{select}'")
    configs: dict[tuple, list[Curve]] = {}
    for job in jobs:
        if job.optimizer == name:
            config = (job.hyperparameters["lr"], job.hyperparameters["schedule"])
            configs.setdefault(config, []).append(curves[job.key()])
    if not configs:
        raise ValueError(f"no jobs of baseline '{name}' to select from")
    grid, best = [], None
    for (lr, schedule), runs in configs.items():
        value = score(runs, select)
        grid.append({"lr": lr, "schedule": schedule, "score": value if math.isfinite(value) else None})
        if best is None or value < best[0]:
            best = (value, lr, schedule, runs)
    return TuneResult(name=name, lr=best[1], schedule=best[2], curves=best[3], grid=grid)


def tune(
    name: str,
    task: str,
    steps: int,
    seeds: Sequence[int],
    schedules: Sequence[str],
    select: str = "valid",
    lr_points: int = 7,
    use_cache: bool = True,
    workers: int = 1,
) -> TuneResult:
    """Run baseline `name`'s whole grid on every seed and return the best configuration by `select`."""
    jobs = grid_jobs(name, task, steps, seeds, schedules, lr_points)
    return select_best(name, jobs, run_cached(jobs, workers=workers, use_cache=use_cache), select)
