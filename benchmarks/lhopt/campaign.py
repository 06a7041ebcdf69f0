"""Plot an LHOPT meta-training campaign from its JSONL log (one line per PPO epoch, written by the trainer to
OUT/log.jsonl), against inner steps of experience.

    python benchmarks/lhopt/campaign.py --log OUT/log.jsonl --out campaign.png

Panels: sampled reward (and its 10-epoch mean) with the meta-validation score; critic explained variance;
approx-KL and policy entropy; wall seconds. Prints one summary line per block of epochs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

FIELDS = ("epoch", "mean_reward", "explained_variance", "approx_kl", "entropy", "inner_steps", "seconds")


def read_log(path: Path) -> list[dict]:
    """The log's records in epoch order; a missing field is an error naming it."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        missing = [field for field in FIELDS if field not in record]
        if missing:
            raise ValueError(f"{path}: epoch {record.get('epoch')} lacks {missing}")
    return sorted(records, key=lambda r: r["epoch"])


def plot(records: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["inner_steps"] for r in records], dtype=float) / 1e6
    reward = np.array([r["mean_reward"] for r in records])
    window = min(10, len(reward))
    smooth = np.convolve(reward, np.ones(window) / window, mode="valid")
    valid = [(r["inner_steps"] / 1e6, r["eval_reward"]) for r in records if "eval_reward" in r]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    axes[0].plot(steps, reward, alpha=0.3, label="sampled episodes")
    axes[0].plot(steps[window - 1 :], smooth, label=f"{window}-epoch mean")
    if valid:
        axes[0].plot(*zip(*valid), "o-", label="meta-validation (greedy)")
    axes[0].axhline(0.0, color="k", lw=0.5)
    axes[0].set_ylabel("reward: log(L_ref / L_policy)")
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, [r["explained_variance"] for r in records])
    axes[1].set_ylabel("critic explained variance")
    axes[2].plot(steps, [r["approx_kl"] for r in records], label="approx-KL")
    axes[2].set_yscale("log")
    twin = axes[2].twinx()
    twin.plot(steps, [r["entropy"] for r in records], color="C1", label="entropy")
    axes[2].set_ylabel("approx-KL (log)")
    twin.set_ylabel("entropy")
    axes[3].plot(steps, np.array([r["seconds"] for r in records]) / 3600)
    axes[3].set_ylabel("wall hours")
    for axis in axes:
        axis.set_xlabel("inner steps of experience (millions)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def summary(records: list[dict], block: int) -> None:
    print("epochs | mean reward | explained var | meta-valid | inner steps | hours")
    for start in range(0, len(records), block):
        rows = records[start : start + block]
        valid = [r["eval_reward"] for r in rows if "eval_reward" in r]
        print(
            f"{rows[0]['epoch']}-{rows[-1]['epoch']} | {np.mean([r['mean_reward'] for r in rows]):+.3f} | "
            f"{np.nanmean([r['explained_variance'] for r in rows]):+.2f} | "
            f"{(max(valid) if valid else math.nan):+.3f} | {rows[-1]['inner_steps']:,} | "
            f"{rows[-1]['seconds'] / 3600:.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, type=Path, help="the run's log.jsonl")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--block", type=int, default=20, help="epochs per summary line")
    args = parser.parse_args(argv)
    records = read_log(args.log)
    if not records:
        raise SystemExit(f"{args.log} holds no epochs yet")
    plot(records, args.out)
    summary(records, args.block)


if __name__ == "__main__":
    main()
