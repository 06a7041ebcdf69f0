"""The pathology of Metz et al. 2019 (Sec. 2-3, Fig. 2-4): as the unroll grows, the backprop (reparameterization)
meta-gradient's norm and variance explode while antithetic ES stays bounded.

For each unroll length T, S inner runs of a fixed task (fresh initialization and batches per sample) are unrolled
from step 0 with the MLP optimizer at phi + eps, eps ~ N(0, sigma^2): the full second-order backprop gradient of
the validation meta-objective, the first-order one (inner gradients as constants), and the antithetic ES estimate
from the same pair of meta-losses. Reported per T: the mean sample norm and the mean per-element variance of each.

    python benchmarks/metz2019/pathology.py [--weights mlp-mnist] [--task mnist-mlp] [--samples 8] [--step-scale K]

`--step-scale K` multiplies the optimizer's direction output d by K (its steps K times longer): the paper's
explosion appears where the inner dynamics turn unstable, which a well-trained, cautious optimizer avoids.
Writes benchmarks/metz2019/results/pathology[-xK].json and .png. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from loptim.meta.es import sample_perturbations
from loptim.meta.estimators import backprop_truncation, perturbed_leaves
from loptim.meta.unroll import METZ_OBJECTIVE, draw_truncation, run_truncation, start_seeded_unroll
from loptim.optimizers.mlp import MLPOptimizerNet
from loptim.pretrained import load_learned
from loptim.tasks import get_task

RESULTS = Path(__file__).parent / "results"


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def summarize(samples: list[torch.Tensor]) -> dict[str, float]:
    stacked = torch.stack(samples)
    finite = torch.isfinite(stacked).all(dim=1)
    good = stacked[finite]
    return {
        "mean_norm": float(good.norm(dim=1).mean()) if len(good) else float("nan"),
        "variance": float(good.var(dim=0, unbiased=True).mean()) if len(good) > 1 else float("nan"),
        "nonfinite_samples": int((~finite).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mlp-mnist", help="shipped name, .safetensors path, or 'init'")
    parser.add_argument("--task", default="mnist-mlp")
    parser.add_argument("--lengths", default="1,3,10,30,100,300")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--step-scale", type=float, default=1.0, help="multiply the direction output d by this")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = MLPOptimizerNet(generator=torch.Generator().manual_seed(0)) if args.weights == "init" else \
        load_learned("mlp", args.weights)  # fmt: skip
    meta = {k: v.detach().clone() for k, v in net.meta_params().items()}
    meta["w3"][0] *= args.step_scale  # row 0 of the output layer is the direction d
    meta["b3"][0] *= args.step_scale
    task = get_task(args.task)
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(length)
        full, first, es, losses = [], [], [], []
        for sample in range(args.samples):
            unroll = start_seeded_unroll(task, net, length, seed=1_000 + sample)
            truncation = draw_truncation(unroll, length, with_valid=True)
            eps = sample_perturbations(meta, args.sigma, 1, generator)[0]
            plus, grads, _ = backprop_truncation(
                net, perturbed_leaves(meta, eps, 1.0), unroll, truncation, METZ_OBJECTIVE, True
            )
            full.append(flat(grads))
            first.append(
                flat(
                    backprop_truncation(
                        net, perturbed_leaves(meta, eps, 1.0), unroll, truncation, METZ_OBJECTIVE, False
                    )[1]
                )
            )
            with torch.no_grad():
                minus, _ = run_truncation(net, perturbed_leaves(meta, eps, -1.0), unroll, truncation, METZ_OBJECTIVE)
            es.append(flat(eps) * (float(plus) - float(minus)) / (2 * args.sigma**2))
            losses.append(float(plus))
        row = {
            "length": length,
            "meta_loss": sum(losses) / len(losses),
            "backprop": summarize(full),
            "backprop_first_order": summarize(first),
            "es": summarize(es),
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(f"T={length:>4}  meta-loss {row['meta_loss']:.3f}  backprop |g| {row['backprop']['mean_norm']:.3g} "
              f"var {row['backprop']['variance']:.3g}  first-order |g| {row['backprop_first_order']['mean_norm']:.3g}"
              f" var {row['backprop_first_order']['variance']:.3g}  ES |g| {row['es']['mean_norm']:.3g} "
              f"var {row['es']['variance']:.3g}  ({row['seconds']} s)", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"weights": args.weights, "task": args.task, "samples": args.samples, "sigma": args.sigma,
              "step_scale": args.step_scale, "objective": "mean valid loss along the unroll, clip 10"}  # fmt: skip
    stem = "pathology" if args.step_scale == 1.0 else f"pathology-x{args.step_scale:g}"
    (args.out / f"{stem}.json").write_text(json.dumps({"config": config, "rows": rows}, indent=1) + "\n")
    plot(rows, args.out / f"{stem}.png", args)
    print(f"wrote {args.out / stem}.json and .png")


def plot(rows: list[dict], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [r["length"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("backprop", "backprop (2nd order)"), ("backprop_first_order", "backprop (1st order)"),
                       ("es", "antithetic ES")):  # fmt: skip
        axes[0].plot(lengths, [r[key]["mean_norm"] for r in rows], marker="o", label=label)
        axes[1].plot(lengths, [r[key]["variance"] for r in rows], marker="o", label=label)
    for ax, title in zip(axes, ("mean norm of one gradient sample", "per-element variance across samples")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("unroll length (inner steps)")
        ax.set_title(title)
        ax.legend()
    scale = "" if args.step_scale == 1.0 else f", steps x{args.step_scale:g}"
    fig.suptitle(f"MLP optimizer ({args.weights}{scale}) on {args.task}: meta-gradient estimators vs unroll length")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
