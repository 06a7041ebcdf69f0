"""Generalist weights without the per-tensor scale input: the first layer's w1_tensor folded into its bias at one
fixed log-RMS, then zeroed, so every tensor gets the bias the network gave a tensor of parameter RMS exp(LOG_RMS)
(docs/generalist.md, Per-tensor scale input). The input's learned response runs opposite to the tensor's scale
(smaller RMS, larger step, up to the log-step clamp), which sends zero-initialized biases and 0.02-std transformer
weights 40-55x the nominal step.

    python benchmarks/generalist/fold_tensor_input.py --weights mlp-generalist-half --log-rms -2.3 \
        --out benchmarks/generalist/results/candidates/half-fold-2.3.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import torch

from loptim.optimizers.mlp import MLPOptimizerNet
from loptim.pretrained import load_learned, resolve, save_learned


def fold(net: MLPOptimizerNet, log_rms: float) -> MLPOptimizerNet:
    """A copy of `net` whose first-layer bias absorbs w1_tensor * log_rms and whose w1_tensor is zero."""
    folded = MLPOptimizerNet(net.config)
    folded.load_state_dict(net.state_dict())
    params = folded.meta_params()
    with torch.no_grad():
        params["b1"].add_(params["w1_tensor"][:, 0] * log_rms)
        params["w1_tensor"].zero_()
    return folded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mlp-generalist-half", help="generalist weights (a name or a path)")
    parser.add_argument("--log-rms", type=float, required=True, help="the natural log of the fixed parameter RMS")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="a line for the card: why these weights")
    args = parser.parse_args()
    net = load_learned("mlp", args.weights)
    if net.config.design != "generalist":
        raise SystemExit(f"{args.weights} is not a generalist design ({net.config.design}); pick generalist weights")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    original = resolve(args.weights).with_suffix(".json")  # the original's card (recipe, compute) carries over
    card = json.loads(original.read_text()) if original.exists() else {}
    for key in ("variant_of", "changes", "note", "dev_set"):  # the original's own variant fields, if any
        card.pop(key, None)
    if "optimizer" in card:  # the design is the original's; the weights no longer use the per-tensor input
        card["optimizer"] = "mlp, generalist design (docs/generalist.md, Per-tensor scale input, folded)"
    card |= {"variant_of": args.weights, "changes": {"w1_tensor folded into b1 at log_rms": args.log_rms},
             "fold_command": shlex.join(["python", *sys.argv])}  # fmt: skip
    if args.note:
        card["note"] = args.note
    save_learned(args.out, "mlp", fold(net, args.log_rms), dataclasses.asdict(net.config), card)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
