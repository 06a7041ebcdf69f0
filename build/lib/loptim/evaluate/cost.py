"""Tuning counted: what an approach spends to deliver one model at the target loss, its tuning grid included.

A tuned baseline pays for every run of its grid (each to its full length: the grid cannot know the winner before
it ends) plus the winner's steps to the target; an untuned optimizer pays for one run, up to the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from loptim.evaluate.speedup import MeanCurve, first_reach


@dataclass(frozen=True)
class Cost:
    """Runs started, and training steps and seconds spent, to a model at the target; None if never reached."""

    runs: int
    steps: float | None
    seconds: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {"runs": self.runs, "steps": self.steps, "seconds": self.seconds}


def cost_to_target(
    curve: MeanCurve,
    target: float,
    run_steps: int,
    grid_runs: int = 0,
    step_seconds: float | None = None,
) -> Cost:
    """`grid_runs` full runs of `run_steps` each (0 for an untuned optimizer), then `curve`'s steps to `target`,
    linear between validation points as for the speedup; seconds = steps x measured seconds per step."""
    to_target = first_reach(curve.valid_step, curve.valid_loss, target)
    steps = None if to_target is None else grid_runs * run_steps + to_target
    seconds = None if steps is None or step_seconds is None else steps * step_seconds
    return Cost(runs=grid_runs + 1, steps=steps, seconds=seconds)


def cost_ratio(reference: Cost, candidate: Cost) -> float | None:
    """How many times less the candidate spends than the reference (in steps); None if either never reaches."""
    if reference.steps is None or candidate.steps is None or candidate.steps <= 0:
        return None
    return reference.steps / candidate.steps
