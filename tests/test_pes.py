"""PES (Vicol et al. 2021) against the exact gradient of a whole unrolled run, where truncated ES is biased."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from loptim.meta.pes import PES, start_run
from loptim.meta.unroll import MetaObjective, Truncation, UnrollState
from loptim.tasks.base import Task

DIM, TRUNCATIONS, LENGTH, SIGMA = 3, 3, 2, 0.1
WEIGHTS = torch.tensor([1.0, -2.0, 1.5], dtype=torch.float64)


class DriftOptimizer:
    """A 'learned optimizer' whose update adds its meta-parameters: x_{t+1} = x_t + theta (gradients ignored)."""

    def init_state(self, params):
        return {}

    def update(self, meta_params, state, params, grads, **options):
        return {"x": params["x"] + meta_params["theta"]}, state


class LinearTask(Task):
    """loss(x) = w . x + 10: linear, so the Gaussian-smoothed loss has the unsmoothed gradient."""

    def init(self, generator):
        return {"x": torch.zeros(DIM, dtype=torch.float64)}

    def loss(self, params, batch):
        return WEIGHTS @ params["x"] + 10.0

    def batches(self, split: str, generator: torch.Generator) -> Iterator:
        while True:
            yield None

    def eval_batches(self, split: str) -> Iterable:
        return [(None, 1.0)]


def _exact_gradient(theta: torch.Tensor, late: float = 0.0) -> torch.Tensor:
    """d/dtheta of the sum over truncations of each truncation's mean validation loss, by autograd; with `late`,
    each truncation's term weighted by the run's progress at its end to the power `late`."""
    theta = theta.clone().requires_grad_(True)
    x, total = torch.zeros(DIM, dtype=torch.float64), 0.0
    for j in range(TRUNCATIONS):
        losses = []
        for _ in range(LENGTH):
            x = x + theta
            losses.append(WEIGHTS @ x + 10.0)
        total = total + ((j + 1) / TRUNCATIONS) ** late * sum(losses) / LENGTH
    return torch.autograd.grad(total, theta)[0]


def _run_estimates(estimator: PES, theta: torch.Tensor, seed: int, persistent: bool) -> torch.Tensor:
    """The sum over one whole run's truncations of the estimator's samples (truncated ES: xi reset each time)."""
    task, lopt, meta = LinearTask(), DriftOptimizer(), {"theta": theta}
    unroll = UnrollState(task, task.init(torch.Generator()), {}, 0, TRUNCATIONS * LENGTH, seed=seed)
    run = start_run(unroll, meta, initial_loss=10.0)
    total = torch.zeros(DIM, dtype=torch.float64)
    for j in range(TRUNCATIONS):
        if not persistent:
            run.accumulated = {k: torch.zeros_like(v) for k, v in meta.items()}
        truncation = Truncation([None] * LENGTH, [None] * LENGTH)
        sample, run = estimator.sample(lopt, meta, run, truncation, seed * 100 + j)
        total += sample.grads[0]["theta"]
    return total


def test_pes_is_unbiased_for_the_whole_run_and_truncated_es_is_not():
    theta = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    estimator = PES(SIGMA, MetaObjective("valid", None, "mean"), normalize=False)
    exact = _exact_gradient(theta)
    runs = 400
    pes = torch.stack([_run_estimates(estimator, theta, seed, persistent=True) for seed in range(runs)])
    truncated = torch.stack([_run_estimates(estimator, theta, seed, persistent=False) for seed in range(runs)])
    standard_error = pes.std(0) / runs**0.5
    assert torch.all((pes.mean(0) - exact).abs() < 4 * standard_error), (pes.mean(0), exact)
    # truncated ES sees only the last truncation's perturbation: it misses the earlier truncations' effect
    assert torch.all((truncated.mean(0) - exact).abs() > 4 * truncated.std(0) / runs**0.5)


def test_late_weighted_pes_is_unbiased_for_the_late_weighted_run():
    """PES(late=2) estimates the gradient of the truncations' losses weighted by progress^2: unbiased for it, and
    measurably not for the uniform sum (whose gradient weighs the early truncations more)."""
    theta = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    estimator = PES(SIGMA, MetaObjective("valid", None, "mean"), normalize=False, late=2.0)
    runs = 400
    late = torch.stack([_run_estimates(estimator, theta, seed, persistent=True) for seed in range(runs)])
    standard_error = late.std(0) / runs**0.5
    assert torch.all((late.mean(0) - _exact_gradient(theta, late=2.0)).abs() < 4 * standard_error)
    # Both exact gradients lie along WEIGHTS (10.5x and 7.2x it): told apart on the estimates' projection onto it
    along = late @ WEIGHTS / (WEIGHTS @ WEIGHTS)
    uniform, weighted = (float(_exact_gradient(theta, w) @ WEIGHTS / (WEIGHTS @ WEIGHTS)) for w in (0.0, 2.0))
    assert abs(float(along.mean()) - weighted) < 4 * float(along.std()) / runs**0.5
    assert abs(float(along.mean()) - uniform) > 4 * float(along.std()) / runs**0.5


def test_pes_carries_both_trajectories_and_the_accumulated_perturbation():
    theta = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    estimator = PES(SIGMA, MetaObjective("valid", None, "mean"), normalize=False)
    task, lopt, meta = LinearTask(), DriftOptimizer(), {"theta": theta}
    unroll = UnrollState(task, task.init(torch.Generator()), {}, 0, 4, seed=0)
    run = start_run(unroll, meta, initial_loss=10.0)
    truncation = Truncation([None, None], [None, None])
    _, first = estimator.sample(lopt, meta, run, truncation, 1)
    _, second = estimator.sample(lopt, meta, first, truncation, 2)
    eps1, eps2 = first.accumulated["theta"], second.accumulated["theta"] - first.accumulated["theta"]
    torch.testing.assert_close(second.plus.params["x"], 4 * theta + 2 * eps1 + 2 * eps2)
    torch.testing.assert_close(second.minus.params["x"], 4 * theta - 2 * eps1 - 2 * eps2)
    assert second.done


class TwoDriftOptimizer(DriftOptimizer):
    """x_{t+1} = x_t + theta + phi: both meta-parameters move the loss the same way."""

    def update(self, meta_params, state, params, grads, **options):
        return {"x": params["x"] + meta_params["theta"] + meta_params["phi"]}, state


def test_pes_over_a_subset_is_unbiased_for_it_leaves_the_rest_and_has_less_variance():
    """perturbed=("theta",): theta's estimate is still the exact gradient of the whole run, phi's is exactly zero,
    and theta's estimate no longer carries the noise of phi's perturbation."""
    theta = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    meta = {"theta": theta, "phi": torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64)}
    task, lopt, exact = LinearTask(), TwoDriftOptimizer(), _exact_gradient(theta)
    estimates = {}
    for perturbed in (None, ("theta",)):
        estimator = PES(SIGMA, MetaObjective("valid", None, "mean"), normalize=False, perturbed=perturbed)
        runs = []
        for seed in range(200):
            unroll = UnrollState(task, task.init(torch.Generator()), {}, 0, TRUNCATIONS * LENGTH, seed=seed)
            run = start_run(unroll, meta, initial_loss=10.0)
            totals = {k: torch.zeros(DIM, dtype=torch.float64) for k in meta}
            truncation = Truncation([None] * LENGTH, [None] * LENGTH)
            for j in range(TRUNCATIONS):
                sample, run = estimator.sample(lopt, meta, run, truncation, j + 9 * seed)
                totals = {k: totals[k] + sample.grads[0][k] for k in meta}
            runs.append(totals)
        estimates[perturbed] = {k: torch.stack([r[k] for r in runs]) for k in meta}
    subset = estimates[("theta",)]
    assert torch.equal(subset["phi"], torch.zeros_like(subset["phi"]))
    assert torch.all((subset["theta"].mean(0) - exact).abs() < 4 * subset["theta"].std(0) / 200**0.5)
    assert torch.all(subset["theta"].std(0) < 0.9 * estimates[None]["theta"].std(0))
