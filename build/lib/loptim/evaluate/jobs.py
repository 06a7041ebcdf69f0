"""Runs as data (task, optimizer, hyperparameters, steps, seed), executed serially or by a pool of processes.

Every run of a bench, baselines and learned optimizers alike, goes through the same executor with the same
threads per run, so wall-clock comparisons stay fair (single-thread runs side by side do more work than one run on
all cores: docs/design.md, performance facts).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from loptim.evaluate.harness import Curve, run_one
from loptim.tasks.base import Task


@dataclass(frozen=True)
class Job:
    """One training run; `hyperparameters` is {} for a learned optimizer run with its shipped defaults."""

    task: str
    optimizer: str
    steps: int
    seed: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        return (self.task, self.optimizer, self.steps, self.seed, tuple(sorted(self.hyperparameters.items())))


@lru_cache(maxsize=8)
def _task(name: str) -> Task:
    from loptim.tasks import get_task

    return get_task(name)


def execute(job: Job, threads: int | None = None) -> Curve:
    """Run one job in this process (tasks are cached per process, so data loads once)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return run_one(_factory(job), _task(job.task), job.steps, job.seed)
    finally:
        torch.set_num_threads(previous)


def _factory(job: Job):
    from loptim.optimizers.baselines import make_baseline
    from loptim.optimizers.competitors import is_competitor, make_competitor
    from loptim.optimizers.registry import is_baseline, learned_factory

    if is_baseline(job.optimizer):
        return make_baseline(job.optimizer, **job.hyperparameters)
    if is_competitor(job.optimizer):
        return make_competitor(job.optimizer)
    return learned_factory(job.optimizer, **job.hyperparameters)


PARENT_POLL_SECONDS = 0.5


def exit_with_parent(parent_pid: int, poll_seconds: float = PARENT_POLL_SECONDS) -> threading.Thread:
    """Start a daemon thread that ends this process as soon as `parent_pid` is no longer its parent.

    A killed parent (kill -9 of `loptim bench`) cannot shut its pool down; its workers are then re-parented,
    which this notices within `poll_seconds`. Portable, unlike prctl(PR_SET_PDEATHSIG), which also fires when the
    parent's spawning thread (not the process) exits.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn pool whose workers exit when this process dies, however it dies."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
    )


def _execute_json(job: Job, threads: int) -> dict:
    return execute(job, threads).to_json()


def run_jobs(
    jobs: Sequence[Job],
    workers: int = 1,
    threads: int | None = None,
    on_done: Callable[[Job, Curve], None] | None = None,
) -> list[Curve]:
    """Execute `jobs` (in order of results); `workers` > 1 uses a spawn pool with `threads` per worker."""
    if workers <= 1 or len(jobs) <= 1:
        curves = []
        for job in jobs:
            curve = execute(job, threads)
            if on_done is not None:
                on_done(job, curve)
            curves.append(curve)
        return curves
    with worker_pool(workers) as pool:
        futures = [pool.submit(_execute_json, job, threads or 1) for job in jobs]
        curves = []
        for job, future in zip(jobs, futures):
            curve = Curve.from_json(future.result())
            if on_done is not None:
                on_done(job, curve)
            curves.append(curve)
        return curves
