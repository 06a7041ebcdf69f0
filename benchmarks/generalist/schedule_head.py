"""The generalist's learned schedule head h_t (its log-step bias, the same for every coordinate) over runs of a few
lengths, for shipped or saved weights: does the learned schedule anneal? (docs/generalist.md, Schedule prior)

    python benchmarks/generalist/schedule_head.py mlp-generalist-scale
"""

from __future__ import annotations

import argparse

import torch

from loptim.optimizers import mlp_generalist as generalist
from loptim.pretrained import load_learned

FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="shipped name or .safetensors path of generalist weights")
    parser.add_argument("--lengths", default="300,1000,3000", help="comma-separated run lengths")
    args = parser.parse_args()
    net = load_learned("mlp", args.weights)
    if net.config.design != "generalist" or net.config.loss_features:
        raise SystemExit(f"{args.weights}: a generalist without loss features has a schedule head of progress only")
    head = net.meta_params()["w_schedule"].detach()
    print("| run length | " + " | ".join(f"h at {f:g}" for f in FRACTIONS) + " |")
    print("|---|" + "---|" * len(FRACTIONS))
    for total in map(int, args.lengths.split(",")):
        steps = [min(round(f * total), total - 1) for f in FRACTIONS]
        values = [float(head @ generalist.step_features(s, total, torch.float32, torch.device("cpu"))) for s in steps]
        print(f"| {total} | " + " | ".join(f"{v:+.2f}" for v in values) + " |")


if __name__ == "__main__":
    main()
