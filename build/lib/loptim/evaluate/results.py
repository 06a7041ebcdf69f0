"""results.json: per-optimizer finals, speedups, measured per-step times, tuning-inclusive cost, per-seed curves.

Schema 2 (this code) differs from schema 1 (docs/design.md, evaluation protocol) in where seconds come from:
curves hold losses only, each entry has `timing` (forward+backward and step() milliseconds measured side by side in
the run that wrote the file) and `cost_to_target`; `seconds` is a whole run's steps x measured seconds per step.
Schema-1 files stay readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loptim.evaluate.harness import Curve
from loptim.evaluate.speedup import mean_curve, speedup
from loptim.evaluate.timing import StepTimes
from loptim.io import atomic_write_text

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)


def _finite(value: float) -> float | None:
    """JSON has no inf/NaN: non-finite numbers are written as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    array = np.array(values, dtype=float)
    if not np.isfinite(array).all():
        return {"mean": None, "std": None}
    return {"mean": _finite(array.mean()), "std": _finite(array.std())}


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def summarize(
    hyperparameters: dict[str, Any],
    curves: Sequence[Curve],
    reference: Sequence[Curve],
    times: StepTimes | None = None,
    label: str | None = None,
    reference_label: str = "adam",
) -> dict[str, Any]:
    """One optimizer's entry: final losses (mean/std over seeds), metrics, speedups vs the reference curves; with
    `times`, seconds are steps x the per-step times measured side by side for `label` and `reference_label`."""
    step_seconds = times.per_step(label) if times is not None else None
    reference_seconds = times.per_step(reference_label) if times is not None else None
    result = speedup(mean_curve(reference), mean_curve(curves), reference_seconds, step_seconds)
    metric_names = sorted({k for c in curves for k in c.metrics})
    steps = len(curves[0].step)
    return {
        "hyperparameters": hyperparameters,
        "final_train_loss": _stats([c.final_train_loss() for c in curves]),
        "final_valid_loss": _stats([c.valid_loss[-1] for c in curves]),
        "final_test_loss": _stats([c.test_loss for c in curves]),
        "metrics": {m: _stats([c.metrics.get(m, math.nan) for c in curves]) for m in metric_names},
        "speedup_vs_tuned_adam": _finite(result.steps),
        "wallclock_speedup_vs_tuned_adam": _finite(result.wallclock),
        "reached": result.reached,
        "final_loss_ratio": _finite(result.final_loss_ratio),
        "timing": times.to_json(label) if times is not None else None,
        "seconds": steps * step_seconds if step_seconds is not None else None,
        "optimizer_seconds_fraction": times.optimizer_share(label) if times is not None else None,
        "diverged_seeds": sum(c.diverged for c in curves),
        "curves": [_clean(c.losses_json()) for c in curves],
    }


def versus(
    curves: Sequence[Curve],
    reference: Sequence[Curve],
    label: str,
    step_seconds: float | None = None,
    reference_step_seconds: float | None = None,
) -> dict[str, Any]:
    """Speedups over another tuned reference (LHOPT's is AdamW): `speedup_vs_tuned_<label>`, its wall-clock
    twin, `reached_tuned_<label>` and `final_loss_ratio_vs_tuned_<label>`, defined as for tuned Adam."""
    result = speedup(mean_curve(reference), mean_curve(curves), reference_step_seconds, step_seconds)
    return {
        f"speedup_vs_tuned_{label}": _finite(result.steps),
        f"wallclock_speedup_vs_tuned_{label}": _finite(result.wallclock),
        f"reached_tuned_{label}": result.reached,
        f"final_loss_ratio_vs_tuned_{label}": _finite(result.final_loss_ratio),
    }


def build_results(
    task: str, steps: int, seeds: Sequence[int], entries: dict[str, dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "task": task,
        "steps": steps,
        "seeds": list(seeds),
        "reference": "adam",
        **extra,
        "optimizers": entries,
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_clean(results), indent=1))


def load_results(path: Path) -> dict[str, Any]:
    """A results file of any readable schema (1 or 2); its `schema` says which fields it has."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"{path}: results schema {data.get('schema')} is not one of {READABLE_SCHEMAS}")
    return data
