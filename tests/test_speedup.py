"""The LHOPT speedup metric on constructed curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loptim.evaluate.bench import optimizer_order
from loptim.evaluate.harness import Curve, validation_steps
from loptim.evaluate.results import summarize, versus
from loptim.evaluate.speedup import first_reach, mean_curve, speedup

STEPS = [0, 10, 20, 30, 40]


def curve(valid_loss: list[float], seconds: list[float] | None = None, seed: int = 0) -> Curve:
    return Curve(
        seed=seed,
        step=list(range(40)),
        train_loss=[1.0] * 40,
        valid_step=list(STEPS),
        valid_loss=list(valid_loss),
        seconds=list(seconds if seconds is not None else [s / 10 for s in STEPS]),
        test_loss=valid_loss[-1],
    )


def test_first_reach_interpolates_linearly_between_records():
    x = np.array([0.0, 10.0, 20.0, 30.0])
    losses = np.array([4.0, 3.0, 2.0, 1.0])
    assert first_reach(x, losses, 2.5) == pytest.approx(15.0)
    assert first_reach(x, losses, 2.0) == pytest.approx(20.0)
    assert first_reach(x, losses, 1.2) == pytest.approx(28.0)
    assert first_reach(x, losses, 1.0) == pytest.approx(30.0)
    assert first_reach(x, losses, 5.0) == 0.0  # already there at the first record
    assert first_reach(x, losses, 0.99) is None
    # The first crossing counts, not a later one; seconds work as x just like steps.
    assert first_reach(np.array([0.0, 1.0, 3.0, 7.0]), np.array([4.0, 2.0, 5.0, 1.0]), 3.0) == pytest.approx(0.5)
    # After a non-finite record there is nothing to interpolate from: the reaching record itself counts.
    assert first_reach(x, np.array([4.0, math.inf, 2.0, 1.0]), 2.5) == pytest.approx(20.0)


def test_speedup_of_a_candidate_reaching_the_target_in_half_the_steps():
    reference = curve([4.0, 3.0, 2.0, 1.5, 1.0], seconds=[0.0, 1.0, 2.0, 3.0, 4.0])
    candidate = curve([4.0, 2.0, 1.0, 0.8, 0.5], seconds=[0.0, 4.0, 8.0, 12.0, 16.0])  # 4x slower per step
    result = speedup(mean_curve([reference]), mean_curve([candidate]))
    assert result.target == 1.0
    assert result.steps == pytest.approx(2.0)  # 40 steps / 20 steps
    assert result.wallclock == pytest.approx(0.5)  # 4 s / 8 s: the wall-clock version uses seconds
    assert result.reached is True
    assert result.final_loss_ratio == pytest.approx(0.5)
    itself = speedup(mean_curve([reference]), mean_curve([reference]))
    assert itself.steps == itself.wallclock == 1.0 and itself.final_loss_ratio == 1.0 and itself.reached


def test_speedup_interpolates_the_candidates_steps():
    reference = curve([4.0, 3.0, 2.0, 1.5, 1.0])
    candidate = curve([4.0, 3.0, 1.5, 0.5, 0.5])  # crosses 1.0 halfway between steps 20 and 30
    assert speedup(mean_curve([reference]), mean_curve([candidate])).steps == pytest.approx(40 / 25)


def test_a_candidate_that_never_reaches_the_target():
    reference = curve([4.0, 3.0, 2.0, 1.5, 1.0])
    candidate = curve([4.0, 3.5, 3.0, 2.5, 2.0])
    result = speedup(mean_curve([reference]), mean_curve([candidate]))
    assert result.steps is None and result.wallclock is None
    assert result.reached is False
    assert result.final_loss_ratio == pytest.approx(2.0)  # candidate final / L*


def test_seeds_are_averaged_before_the_speedup():
    reference = [curve([4.0, 3.0, 2.0, 1.5, 1.0], seed=0), curve([4.0, 3.0, 2.0, 1.5, 1.0], seed=1)]
    fast = curve([4.0, 0.5, 0.5, 0.5, 0.5], seed=0)  # alone: reaches 1.0 at 10 * 3 / 3.5 steps
    slow = curve([4.0, 3.0, 2.0, 1.5, 1.0], seed=1)  # alone: reaches 1.0 at step 40
    mean = mean_curve([fast, slow])
    np.testing.assert_allclose(mean.valid_loss, [4.0, 1.75, 1.25, 1.0, 0.75])
    np.testing.assert_allclose(mean.valid_step, STEPS)
    per_seed = [speedup(mean_curve(reference), mean_curve([c])).steps for c in (fast, slow)]
    assert per_seed == pytest.approx([40 / (30 / 3.5), 1.0])
    result = speedup(mean_curve(reference), mean)
    assert result.steps == pytest.approx(40 / 30)  # the mean curve reaches 1.0 at step 30
    assert result.steps != pytest.approx(np.mean(per_seed)) and result.steps != pytest.approx(np.median(per_seed))
    assert result.final_loss_ratio == pytest.approx(0.75)


def test_mean_curve_averages_seconds_and_rejects_mismatched_steps():
    a = curve([4.0, 3.0, 2.0, 1.0, 0.5], seconds=[0.0, 1.0, 2.0, 3.0, 4.0])
    b = curve([2.0, 1.0, 1.0, 1.0, 1.5], seconds=[0.0, 3.0, 4.0, 5.0, 6.0], seed=1)
    mean = mean_curve([a, b])
    np.testing.assert_allclose(mean.seconds, [0.0, 2.0, 3.0, 4.0, 5.0])
    assert mean.final_loss == pytest.approx(1.0)
    shorter = Curve(seed=2, valid_step=[0, 10, 20], valid_loss=[1.0, 1.0, 1.0], seconds=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="different steps"):
        mean_curve([a, shorter])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # std of [x, inf]
def test_a_diverged_seed_makes_the_mean_infinite():
    reference = curve([4.0, 3.0, 2.0, 1.5, 1.0])
    good = curve([4.0, 2.0, 1.0, 0.5, 0.5], seed=0)
    diverged = curve([4.0, 3.0, math.inf, math.inf, math.inf], seed=1)
    mean = mean_curve([good, diverged])
    assert mean.valid_loss[1] == pytest.approx(2.5) and np.isinf(mean.valid_loss[2:]).all()
    assert math.isinf(mean.final_loss)
    result = speedup(mean_curve([reference]), mean)
    assert result.steps is None and result.reached is False and math.isinf(result.final_loss_ratio)
    # In results.json the infinite ratio and mean loss become null (JSON has no inf).
    entry = summarize({}, [good, diverged], [reference])
    assert entry["final_loss_ratio"] is None and entry["final_valid_loss"]["mean"] is None
    assert entry["speedup_vs_tuned_adam"] is None and entry["reached"] is False


def test_final_train_loss_is_the_mean_of_the_last_tenth():
    losses = [float(v) for v in range(1, 101)]
    assert Curve(seed=0, train_loss=losses).final_train_loss() == pytest.approx(np.mean(losses[-10:]))  # 95.5
    assert Curve(seed=0, train_loss=losses[:20]).final_train_loss() == pytest.approx(19.5)
    assert Curve(seed=0, train_loss=[3.0, 2.0, 7.0]).final_train_loss() == 7.0  # fewer than 10 steps: the last
    assert math.isnan(Curve(seed=0).final_train_loss())


def test_validation_schedule():
    assert validation_steps(100) == list(range(101))  # every step for runs of <= 100 steps
    long = validation_steps(1000)
    assert long[0] == 0 and long[-1] == 1000 and len(long) >= 21
    assert np.allclose(np.diff(long), 50)  # 21 evenly spaced validations


def test_curve_json_round_trip():
    original = curve([4.0, 3.0, math.inf, math.inf, math.inf])
    original.metrics = {"accuracy": 0.5}
    original.diverged = True
    assert Curve.from_json(original.to_json()) == original


def test_lhopt_is_also_compared_with_tuned_adamw():
    assert optimizer_order(("lhopt",)) == ["adam", "adamw", "lhopt"]
    assert optimizer_order(("adamw", "lhopt:my.safetensors")) == ["adam", "adamw", "lhopt:my.safetensors"]
    assert optimizer_order(("sgd",)) == ["adam", "sgd"]
    adamw = curve([4.0, 3.0, 2.0, 1.5, 1.0])
    fast = curve([4.0, 2.0, 1.0, 0.8, 0.7])  # reaches AdamW's final 1.0 at step 20 of AdamW's 40
    extra = versus([fast], [adamw], "adamw")
    assert extra["speedup_vs_tuned_adamw"] == pytest.approx(2.0) and extra["reached_tuned_adamw"] is True
    assert extra["final_loss_ratio_vs_tuned_adamw"] == pytest.approx(0.7)
    slow = versus([curve([4.0, 3.5, 3.0, 2.0, 1.5])], [adamw], "adamw")
    assert slow["speedup_vs_tuned_adamw"] is None and slow["reached_tuned_adamw"] is False
