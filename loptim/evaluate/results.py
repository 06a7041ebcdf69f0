"""results.json (schema version 1, DESIGN.md): per-optimizer finals, speedups and per-seed curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loptim.evaluate.harness import Curve
from loptim.evaluate.speedup import mean_curve, speedup
from loptim.evaluate.tuning import atomic_write_text

SCHEMA = 1


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


def summarize(hyperparameters: dict[str, Any], curves: Sequence[Curve], reference: Sequence[Curve]) -> dict[str, Any]:
    """One optimizer's entry: final losses (mean/std over seeds), metrics, speedups vs the reference curves."""
    result = speedup(mean_curve(reference), mean_curve(curves))
    total_seconds = [c.seconds[-1] for c in curves]
    optimizer_seconds = [c.optimizer_seconds for c in curves]
    metric_names = sorted({k for c in curves for k in c.metrics})
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
        "seconds": float(np.mean(total_seconds)),
        "optimizer_seconds_fraction": float(np.sum(optimizer_seconds) / max(np.sum(total_seconds), 1e-12)),
        "diverged_seeds": sum(c.diverged for c in curves),
        "curves": [_clean(c.to_json()) for c in curves],
    }


def versus(curves: Sequence[Curve], reference: Sequence[Curve], label: str) -> dict[str, Any]:
    """Speedups over another tuned reference (LHOPT's is AdamW): `speedup_vs_tuned_<label>`, its wall-clock
    twin, `reached_tuned_<label>` and `final_loss_ratio_vs_tuned_<label>`, defined as for tuned Adam."""
    result = speedup(mean_curve(reference), mean_curve(curves))
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
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: results schema {data.get('schema')} is not {SCHEMA}")
    return data
