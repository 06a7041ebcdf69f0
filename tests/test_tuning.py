"""Baseline tuning: selection by validation (never test) or training loss, the run cache, parallel determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator

import pytest
import torch

from loptim.evaluate import tuning
from loptim.evaluate.harness import Curve
from loptim.evaluate.jobs import Job, run_jobs
from loptim.evaluate.tuning import cache_path, grid_jobs, run_cached, select_best, tune
from loptim.tasks.base import Params, Task
from loptim.tasks.registry import TASKS

SPLIT_TASK = "test-split-optima-1d"


class SplitOptimaTask(Task):
    """theta in R^1, loss (theta - target)^2 with a different target per split: train 100, valid 0, test 20.

    Adam moves theta by about lr per step towards 100, so after 20 steps theta ~ 20 * lr: the smallest
    learning rate is best on valid and worst on test, and the largest is best on train and on test.
    """

    name = SPLIT_TASK
    default_steps = 20
    batch_size = 1
    targets = {"train": 100.0, "valid": 0.0, "test": 20.0}

    def init(self, generator: torch.Generator) -> Params:
        return {"theta": 1e-3 * torch.randn(1, generator=generator)}

    def loss(self, params: Params, batch: float) -> torch.Tensor:
        return (params["theta"] - batch).pow(2).sum()

    def batches(self, split: str, generator: torch.Generator) -> Iterator[float]:
        while True:
            yield self.targets[split]

    def eval_batches(self, split: str) -> Iterable[tuple[float, float]]:
        return [(self.targets[split], 1.0)]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Runs cache under tmp_path; torch threads restored (the in-process executor sets them)."""
    monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def split_task(monkeypatch):
    monkeypatch.setitem(TASKS._factories, SPLIT_TASK, SplitOptimaTask)
    return SPLIT_TASK


def mean_test_loss(curves: list[Curve]) -> float:
    return sum(c.test_loss for c in curves) / len(curves)


def test_tuning_picks_by_validation_never_by_test(split_task):
    seeds, lrs = [0, 1], [1e-4, 1e-2, 1.0]
    jobs = grid_jobs("adam", split_task, 20, seeds, ["constant"], lr_points=3)
    assert sorted({job.hyperparameters["lr"] for job in jobs}) == lrs and len(jobs) == 6
    curves = run_cached(jobs, use_cache=False)
    by_lr = {lr: [curves[j.key()] for j in jobs if j.hyperparameters["lr"] == lr] for lr in lrs}
    valid = {lr: sum(c.valid_loss[-1] for c in runs) / 2 for lr, runs in by_lr.items()}
    test = {lr: mean_test_loss(runs) for lr, runs in by_lr.items()}
    # The constructed task really does put the valid and test optima at opposite ends of the grid.
    assert min(valid, key=valid.get) == 1e-4 and max(test, key=test.get) == 1e-4 and min(test, key=test.get) == 1.0

    result = select_best("adam", jobs, curves, "valid")
    assert result.hyperparameters == {"lr": 1e-4, "schedule": "constant"}
    assert result.curves == by_lr[1e-4]
    assert [g["lr"] for g in result.grid] == lrs and result.grid[0]["score"] == pytest.approx(valid[1e-4])
    assert select_best("adam", jobs, curves, "train").lr == 1.0  # closest to the training target

    end_to_end = tune("adam", split_task, 20, seeds, ["constant"], lr_points=3, use_cache=False)
    assert end_to_end.lr == 1e-4 and end_to_end.schedule == "constant"
    with pytest.raises(ValueError, match="select"):
        select_best("adam", jobs, curves, "test")


def constructed(seed: int, valid: float, train: float, test: float) -> Curve:
    return Curve(
        seed=seed,
        step=[0, 1],
        train_loss=[5.0, train],
        valid_step=[0, 1, 2],
        valid_loss=[5.0, 4.0, valid],
        seconds=[0.0, 0.1, 0.2],
        test_loss=test,
    )


def test_select_best_on_constructed_curves():
    # (lr, schedule) -> per-seed (valid, train, test) finals. The test winner has a worse valid loss, and the
    # train winner is a third configuration, so each selection rule has its own answer.
    table = {
        (0.1, "constant"): [(1.0, 0.9, 0.1), (1.2, 0.9, 0.1)],  # best test
        (0.01, "cosine"): [(0.5, 0.8, 3.0), (0.9, 0.8, 3.0)],  # best seed-mean valid (0.7)
        (1.0, "constant"): [(0.2, 0.01, 2.0), (math.inf, math.inf, math.inf)],  # one seed diverged
        (0.01, "linear"): [(0.8, 0.5, 1.0), (0.8, 0.05, 1.0)],  # best mean train (0.275)
    }
    jobs, curves = [], {}
    for (lr, schedule), seeds in table.items():
        for seed, finals in enumerate(seeds):
            job = Job("fake", "sgd", 2, seed, {"lr": lr, "schedule": schedule})
            jobs.append(job)
            curves[job.key()] = constructed(seed, *finals)
    jobs.append(Job("fake", "adam", 2, 0, {"lr": 0.5, "schedule": "constant"}))  # another baseline: ignored
    curves[jobs[-1].key()] = constructed(0, 0.0, 0.0, 0.0)

    best = select_best("sgd", jobs, curves, "valid")
    assert (best.lr, best.schedule) == (0.01, "cosine")
    scores = {(g["lr"], g["schedule"]): g["score"] for g in best.grid}
    assert scores[(1.0, "constant")] is None and scores[(0.01, "cosine")] == pytest.approx(0.7)
    train = select_best("sgd", jobs, curves, "train")
    assert (train.lr, train.schedule) == (0.01, "linear")
    assert [c.seed for c in train.curves] == [0, 1]
    with pytest.raises(ValueError, match="no jobs"):
        select_best("rmsprop", jobs, curves)


def quadratic_jobs(steps: int = 5) -> list[Job]:
    return [
        Job("quadratic", "sgd", steps, seed, {"lr": lr, "schedule": "linear"}) for lr in (0.01, 0.1) for seed in (0, 1)
    ]


def test_run_cache_round_trips_and_recomputes_corrupt_entries(monkeypatch, tmp_path):
    jobs = quadratic_jobs()
    ran: list[Job] = []
    real_run_jobs = tuning.run_jobs

    def spy(todo, **kwargs):
        ran.extend(todo)
        return real_run_jobs(todo, **kwargs)

    monkeypatch.setattr(tuning, "run_jobs", spy)
    first = run_cached(jobs, threads=1)
    assert ran == jobs
    for job in jobs:
        path = cache_path(job)
        assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "runs")
    assert len({cache_path(job) for job in jobs}) == len(jobs), "cache keys must separate lr and seed"

    ran.clear()
    again = run_cached(jobs, threads=1)
    assert ran == [] and again == first  # every curve read back, identical to the run that wrote it

    cache_path(jobs[0]).write_text('{"seed": 0, "step": [0, 1')  # truncated write
    cache_path(jobs[1]).write_text(json.dumps([1, 2, 3]))  # valid JSON, not a curve
    ran.clear()
    repaired = run_cached(jobs, threads=1)
    assert ran == jobs[:2]
    assert [repaired[j.key()].train_loss for j in jobs] == [first[j.key()].train_loss for j in jobs]
    assert Curve.from_json(json.loads(cache_path(jobs[0]).read_text())).valid_loss == first[jobs[0].key()].valid_loss

    ran.clear()
    run_cached(jobs, threads=1, use_cache=False)
    assert ran == jobs  # --no-cache reruns everything


def test_cache_path_separates_every_key_field():
    base = Job("quadratic", "sgd", 5, 0, {"lr": 0.01, "schedule": "linear"})
    variants = [
        base,
        Job("mnist-mlp", "sgd", 5, 0, {"lr": 0.01, "schedule": "linear"}),
        Job("quadratic", "adam", 5, 0, {"lr": 0.01, "schedule": "linear"}),
        Job("quadratic", "sgd", 6, 0, {"lr": 0.01, "schedule": "linear"}),
        Job("quadratic", "sgd", 5, 1, {"lr": 0.01, "schedule": "linear"}),
        Job("quadratic", "sgd", 5, 0, {"lr": 0.0100001, "schedule": "linear"}),
        Job("quadratic", "sgd", 5, 0, {"lr": 0.01, "schedule": "cosine"}),
    ]
    assert len({cache_path(job) for job in variants}) == len(variants)
    assert cache_path(base) == cache_path(Job("quadratic", "sgd", 5, 0, {"schedule": "linear", "lr": 0.01}))


def test_parallel_workers_give_the_same_curves_as_one():
    jobs = quadratic_jobs() + [Job("quadratic", "adam", 5, 0, {"lr": 0.1, "schedule": "cosine"})]
    serial = run_jobs(jobs, workers=1, threads=1)
    parallel = run_jobs(jobs, workers=2, threads=1)
    assert len(serial) == len(parallel) == len(jobs)
    for one, two in zip(serial, parallel, strict=True):
        assert one.seed == two.seed and one.train_loss == two.train_loss and one.valid_loss == two.valid_loss
        assert one.test_loss == two.test_loss and len(one.train_loss) == 5
    assert serial[0].train_loss != serial[2].train_loss  # different learning rates really ran


def test_the_harness_observer_sees_the_optimizer_after_every_step():
    from loptim.evaluate.harness import run_one
    from loptim.optimizers.baselines import make_baseline

    seen: list[tuple[int, float]] = []
    task = SplitOptimaTask()
    factory = make_baseline("adam", 0.5, "linear")
    curve = run_one(factory, task, 20, 0, observer=lambda k, o: seen.append((k, o.param_groups[0]["lr"])))
    assert [k for k, _ in seen] == list(range(1, 21)) and len(curve.train_loss) == 20
    assert seen[0][1] == pytest.approx(0.5) and seen[-1][1] == pytest.approx(0.5 * (1 - 19 / 20))  # as stepped


def test_cache_path_names_a_learned_optimizers_options():
    """A suite's cached LHOPT runs are keyed by the cooldown they ran with: a changed default is a new run."""
    from loptim.optimizers.lhopt.shell import DEFAULT_COOLDOWN

    default = Job("quadratic", "lhopt", 5, 0, {"weights": "lhopt-small"})
    off = Job("quadratic", "lhopt", 5, 0, {"weights": "lhopt-small", "cooldown": 0.0})
    assert f"cooldown={DEFAULT_COOLDOWN}" in cache_path(default).parent.name
    assert cache_path(default) != cache_path(off)
    mlp = Job("quadratic", "mlp", 5, 0, {"weights": "mlp-mnist"})
    assert "=" not in cache_path(mlp).parent.name  # no options: the weights' digest alone
