"""The shipped policy's PPO meta-training curves, from the run's history (copied from the run directory to
results/meta_training_history.json when the policy was shipped).

    python benchmarks/lhopt/meta_training.py

Writes results/meta_training.png (mean reward of the sampled episodes per epoch and its 10-epoch moving average,
the greedy policy's evaluation reward, approx-KL and explained variance) and prints a summary by blocks of 20
epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads((RESULTS / "meta_training_history.json").read_text())
    epochs = np.array([h["epoch"] for h in history])
    reward = np.array([h["mean_reward"] for h in history])
    smooth = np.convolve(reward, np.ones(10) / 10, mode="valid")
    evals = [(h["epoch"], h["eval_reward"]) for h in history if "eval_reward" in h]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(epochs, reward, alpha=0.3, label="sampled episodes (16/epoch)")
    axes[0].plot(epochs[9:], smooth, label="10-epoch mean")
    axes[0].plot(*zip(*evals), "o-", label="greedy, 8 fixed eval episodes")
    axes[0].axhline(0.0, color="k", lw=0.5)
    axes[0].set_ylabel("reward: log(L_ref / L_policy)")
    axes[0].legend(fontsize=7)
    axes[1].plot(epochs, [h["approx_kl"] for h in history])
    axes[1].set_ylabel("approx-KL per update")
    axes[2].plot(epochs, [h["explained_variance"] for h in history])
    axes[2].set_ylim(-2, 1)
    axes[2].set_ylabel("critic explained variance")
    for ax in axes:
        ax.set_xlabel("PPO epoch")
    fig.tight_layout()
    fig.savefig(RESULTS / "meta_training.png", dpi=90)
    plt.close(fig)
    print("epochs    mean sampled reward   mean explained variance")
    for start in range(0, len(history), 20):
        block = history[start : start + 20]
        print(f"{start:3d}-{start + len(block) - 1:3d}   {np.mean([h['mean_reward'] for h in block]):+.3f}"
              f"                {np.mean([h['explained_variance'] for h in block]):+.3f}")  # fmt: skip
    print("greedy evaluation reward: " + ", ".join(f"epoch {e}: {r:+.3f}" for e, r in evals))


if __name__ == "__main__":
    main()
