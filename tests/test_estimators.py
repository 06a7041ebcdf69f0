"""The Metz 2019 estimators through real unrolls: ES and backprop agree in expectation with the closed-form
gradient of the Gaussian-smoothed meta-loss, the validation objective never trains on validation batches, and the
antithetic pair cancels what it should exactly."""

import math

import torch
from es_objectives import antithetic_samples

from loptim.meta.es import sample_perturbations
from loptim.meta.estimators import SmoothedEstimator, TruncatedBackprop
from loptim.meta.unroll import MetaObjective, Truncation, UnrollState, draw_truncation, run_truncation
from loptim.tasks.base import Task

A, THETA0, STEPS = 2.0, 1.5, 4
OBJECTIVE = MetaObjective("train", None, "sum")


class ScalarQuadratic(Task):
    """f(theta) = 0.5 a theta^2 (a batch is a multiplier on the loss: 1 for train batches)."""

    name = "scalar-quadratic"

    def init(self, generator):
        return {"theta": torch.tensor([THETA0], dtype=torch.float64)}

    def loss(self, params, batch):
        return batch * 0.5 * A * (params["theta"] ** 2).sum()

    def batches(self, split, generator):
        while True:
            yield 1.0

    def eval_batches(self, split):
        return [(1.0, 1.0)]


class LearnedSGD:
    """theta <- theta - lr * g with the learning rate as the only meta-parameter: the meta-loss is a polynomial."""

    def init_state(self, params):
        return {}

    def update(self, meta_params, state, params, grads, **kw):
        return {k: p - meta_params["lr"] * grads[k] for k, p in params.items()}, state


def _gaussian_moment(k: int, sigma: float) -> float:
    return 0.0 if k % 2 else sigma**k * math.prod(range(k - 1, 0, -2))


def smoothed_gradient(lr: float, sigma: float) -> float:
    """d/dlr E[sum_t 0.5 a theta_t^2] at lr + eps, eps ~ N(0, sigma^2), theta_t = (1 - (lr + eps) a)^t theta0.

    E[f'(lr + eps)] with f'(x) = sum_t 0.5 a theta0^2 2t (1 - x a)^(2t-1) (-a), expanded binomially in eps."""
    total, c = 0.0, 1.0 - lr * A
    for t in range(1, STEPS):
        n = 2 * t - 1
        expectation = sum(math.comb(n, k) * c ** (n - k) * (-A) ** k * _gaussian_moment(k, sigma) for k in range(n + 1))
        total += 0.5 * A * THETA0**2 * 2 * t * (-A) * expectation
    return total


def _unrolls(count):
    task = ScalarQuadratic()
    unroll = UnrollState(task, task.init(None), {}, 0, STEPS, seed=0)
    return [unroll] * count, [draw_truncation(unroll, STEPS, with_valid=False)] * count


def test_es_and_backprop_agree_with_the_closed_form_smoothed_gradient():
    # sigma 0.15 makes smoothing matter: the smoothed gradient differs from the plain one by far more than the
    # tolerance, so an estimator of the unsmoothed gradient would fail. Tolerance: 4 standard errors of the sample
    # mean (CLT), each estimator's own empirical variance as reported in its stats.
    lr, sigma = 0.2, 0.15
    meta = {"lr": torch.tensor(lr, dtype=torch.float64)}
    exact = smoothed_gradient(lr, sigma)
    plain = smoothed_gradient(lr, 0.0)
    for mode, samples in (("es", 1500), ("rp", 300)):  # ES needs more samples for the same standard error
        unrolls, truncations = _unrolls(samples)
        estimator = SmoothedEstimator(mode, sigma, OBJECTIVE, second_order=True)
        estimate = estimator.estimate(LearnedSGD(), meta, unrolls, truncations, torch.Generator().manual_seed(1))
        standard_error = math.sqrt(estimate.stats[f"{mode}_variance"])
        assert abs(float(estimate.grads["lr"]) - exact) < 4 * standard_error, mode
        assert abs(plain - exact) > 6 * standard_error, mode  # the check can tell smoothed from plain
    zero_sigma = TruncatedBackprop(OBJECTIVE, second_order=True).estimate(LearnedSGD(), meta, *_unrolls(1), None)
    torch.testing.assert_close(float(zero_sigma.grads["lr"]), plain)  # backprop at phi is the plain gradient


def test_combined_estimate_reports_variances_and_weights_them_by_inverse_variance():
    meta = {"lr": torch.tensor(0.2, dtype=torch.float64)}
    unrolls, truncations = _unrolls(50)
    estimate = SmoothedEstimator("combined", 0.1, OBJECTIVE, True).estimate(
        LearnedSGD(), meta, unrolls, truncations, torch.Generator().manual_seed(2)
    )
    stats = estimate.stats
    w_es, w_rp = 1 / stats["es_variance"], 1 / stats["rp_variance"]
    assert abs(stats["es_weight"] - w_es / (w_es + w_rp)) < 1e-9  # one element: the share is exactly this
    assert stats["rp_variance"] < stats["es_variance"]  # a smooth, short unroll: backprop is the better estimator


def test_antithetic_pair_cancels_a_constant_offset_and_keeps_only_the_odd_part_of_the_loss():
    phi = {"x": torch.tensor([0.3, -0.2], dtype=torch.float64)}
    eps = sample_perturbations(phi, 0.01, 3, torch.Generator().manual_seed(3))

    def odd(p):  # odd about phi: odd(phi + e) == -odd(phi - e)
        d = p["x"] - phi["x"]
        return (d**3).sum() + d[0]

    shifted = antithetic_samples(lambda p: odd(p) + 123.0, phi, eps, 0.01)
    for e, plain, offset in zip(eps, antithetic_samples(odd, phi, eps, 0.01), shifted):
        value = odd({"x": phi["x"] + e["x"]})
        torch.testing.assert_close(plain["x"], value * e["x"] / 0.01**2, rtol=1e-12, atol=0)
        torch.testing.assert_close(offset["x"], plain["x"], rtol=1e-9, atol=0)  # the offset cancels in the pair


class SplitTagged(ScalarQuadratic):
    """Train batches multiply the loss by 1; validation batches by a different, recognisable factor."""

    def __init__(self, valid_factor):
        self.valid_factor = valid_factor

    def batches(self, split, generator):
        while True:
            yield 1.0 if split == "train" else self.valid_factor


def test_validation_objective_never_feeds_validation_batches_to_the_inner_optimizer():
    meta = {"lr": torch.tensor(0.1, dtype=torch.float64)}
    ends, losses = [], []
    for factor in (3.0, 7.0):
        task = SplitTagged(factor)
        unroll = UnrollState(task, task.init(None), {}, 0, STEPS, seed=0)
        truncation = draw_truncation(unroll, STEPS, with_valid=True)
        assert truncation.train == [1.0] * STEPS and truncation.valid == [factor] * STEPS
        loss, end = run_truncation(LearnedSGD(), meta, unroll, truncation, MetaObjective("valid", None, "mean"))
        ends.append(end.params["theta"])
        losses.append(float(loss.detach()))
    assert torch.equal(ends[0], ends[1])  # the trajectory does not depend on the validation data at all
    assert losses[1] / losses[0] == 7.0 / 3.0  # but the meta-loss is measured on it
    trained, _ = run_truncation(LearnedSGD(), meta, unroll, Truncation([1.0] * STEPS), OBJECTIVE)
    expected = sum(0.5 * A * (THETA0 * (1 - 0.1 * A) ** t) ** 2 for t in range(STEPS))
    assert abs(float(trained.detach()) - expected) < 1e-12
