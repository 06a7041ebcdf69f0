"""Plot a generalist campaign's log: the PES meta-loss (smoothed), the meta-gradient norm, and the
meta-validation score (mean log ratio of final validation loss to Adam at lr 1e-3; below 0 beats Adam).

    python benchmarks/generalist/campaign.py campaigns/mlp-generalist/log.jsonl --out benchmarks/generalist/campaign.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/generalist/campaign.png"))
    args = parser.parse_args()
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    train = [r for r in records if "meta_loss" in r]
    evals = [r for r in records if "eval_score" in r]
    experience = [r["experience"] / 1e6 for r in train]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(experience, smooth([r["meta_loss"] for r in train], 200))
    axes[0].set(xlabel="inner steps (millions)", ylabel="PES meta-loss, log(L / L0), smoothed", title="meta-training")
    axes[1].plot(experience, smooth([r["grad_norm"] for r in train if r["grad_norm"] == r["grad_norm"]], 200))
    axes[1].set(xlabel="inner steps (millions)", ylabel="meta-gradient norm, smoothed", yscale="log")
    by_epoch = {r["epoch"]: r["experience"] / 1e6 for r in train}
    axes[2].plot([by_epoch.get(r["epoch"] - 1, 0.0) for r in evals], [r["eval_score"] for r in evals], marker="o")
    axes[2].axhline(0.0, color="grey", linestyle="--", label="Adam at lr 1e-3 (the initialization)")
    axes[2].set(xlabel="inner steps (millions)", ylabel="meta-valid log(L / L_adam)", title="checkpoint selection")
    axes[2].legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}: {len(train)} outer steps, {len(evals)} evaluations")


if __name__ == "__main__":
    main()
