"""The LHOPT speedup metric: how much sooner a candidate first reaches the reference's final validation loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loptim.evaluate.harness import Curve


@dataclass(frozen=True)
class MeanCurve:
    """Validation loss (and, for schema-1 curves only, cumulative seconds) averaged over seeds at shared steps."""

    valid_step: np.ndarray
    valid_loss: np.ndarray
    seconds: np.ndarray

    @property
    def final_loss(self) -> float:
        return float(self.valid_loss[-1])


def mean_curve(curves: Sequence[Curve]) -> MeanCurve:
    """Average seeds first (docs/design.md, evaluation protocol); a seed that diverged makes the mean infinite from
    then on."""
    steps = curves[0].valid_step
    for curve in curves:
        if curve.valid_step != steps:
            raise ValueError("curves were validated at different steps; run them with the same number of steps")
    losses = np.array([c.valid_loss for c in curves], dtype=float)
    if all(len(c.seconds) == len(steps) for c in curves):
        seconds = np.array([c.seconds for c in curves], dtype=float).mean(axis=0)
    else:
        seconds = np.array([], dtype=float)  # losses-only curves: seconds come from measured per-step times
    return MeanCurve(np.array(steps, dtype=float), losses.mean(axis=0), seconds)


def first_reach(x: np.ndarray, losses: np.ndarray, target: float) -> float | None:
    """The x (steps or seconds) where `losses` first falls to `target`, linear between records; None if never."""
    hits = np.nonzero(losses <= target)[0]
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    x0, x1, l0, l1 = float(x[i - 1]), float(x[i]), float(losses[i - 1]), float(losses[i])
    if not math.isfinite(l0) or l0 == l1:
        return x1
    return x0 + (x1 - x0) * (l0 - target) / (l0 - l1)


@dataclass(frozen=True)
class Speedup:
    """Step and wall-clock speedups over the reference; null (None) when the candidate never reaches L*."""

    target: float
    steps: float | None
    wallclock: float | None
    reached: bool
    final_loss_ratio: float


def _ratio(reference: float | None, candidate: float | None) -> float | None:
    if reference is None or candidate is None:
        return None
    if candidate <= 0.0:
        return math.inf if reference > 0.0 else 1.0
    return reference / candidate


def speedup(
    reference: MeanCurve,
    candidate: MeanCurve,
    reference_step_seconds: float | None = None,
    candidate_step_seconds: float | None = None,
) -> Speedup:
    """Speedup = reference steps to L* / candidate steps to L*, L* = the reference's final mean validation loss.

    The wall-clock speedup is steps to L* times each one's seconds per step (forward+backward + step(), measured
    side by side: evaluate/timing.py); without them, the curves' own seconds (schema-1 curves) are used.
    """
    target = reference.final_loss
    ref_steps = first_reach(reference.valid_step, reference.valid_loss, target)
    cand_steps = first_reach(candidate.valid_step, candidate.valid_loss, target)
    if reference_step_seconds is not None and candidate_step_seconds is not None:
        ref_seconds = None if ref_steps is None else ref_steps * reference_step_seconds
        cand_seconds = None if cand_steps is None else cand_steps * candidate_step_seconds
    elif reference.seconds.size and candidate.seconds.size:
        ref_seconds = first_reach(reference.seconds, reference.valid_loss, target)
        cand_seconds = first_reach(candidate.seconds, candidate.valid_loss, target)
    else:
        ref_seconds = cand_seconds = None
    ratio = candidate.final_loss / target if target != 0 else math.inf
    return Speedup(
        target=target,
        steps=_ratio(ref_steps, cand_steps),
        wallclock=_ratio(ref_seconds, cand_seconds),
        reached=cand_steps is not None,
        final_loss_ratio=ratio,
    )
