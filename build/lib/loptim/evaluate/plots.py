"""curves.png: train loss vs steps, validation loss vs steps and vs seconds; mean and spread over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.shape[-1] < window:
        return values
    kernel = np.ones(window) / window
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -1, values)


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Draw every optimizer of a results dict (schema 1 or 2) into one three-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    window = max(1, results["steps"] // 50)
    for name, entry in results["optimizers"].items():
        curves = entry["curves"]
        label = name + (f" ({_hyper(entry['hyperparameters'])})" if entry["hyperparameters"] else "")
        train = np.array([[np.inf if v is None else v for v in c["train_loss"]] for c in curves], dtype=float)
        train = _smooth(train, window)
        steps = np.arange(train.shape[1]) + window - 1
        (line,) = axes[0].plot(steps, train.mean(0), label=label)
        valid = np.array([[np.inf if v is None else v for v in c["valid_loss"]] for c in curves], dtype=float)
        valid_step = np.array(curves[0]["valid_step"])
        if entry.get("timing") is not None:  # schema 2: steps x seconds per step measured side by side
            seconds = valid_step * entry["timing"]["per_step_ms"] / 1e3
        else:  # schema 1: seconds recorded during the runs
            seconds = np.array([c["seconds"] for c in curves], dtype=float).mean(0)
        mean, std = valid.mean(0), valid.std(0)
        for ax, x in ((axes[1], valid_step), (axes[2], seconds)):
            ax.plot(x, mean, color=line.get_color())
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    titles = ("train loss (minibatch, smoothed)", "validation loss", "validation loss")
    for ax, title, xlabel in zip(axes, titles, ("step", "step", "training seconds")):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{results['task']}: {len(results['seeds'])} seeds, mean +- std")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _hyper(hyperparameters: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyperparameters.items())
