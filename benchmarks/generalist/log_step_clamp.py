"""How often the generalist's log step sits at its clamp's upper end on a dev task (docs/generalist.md, The log-step
clamp, re-checked): one run of the shipped weights, at ten points of the run, the quantiles of the per-coordinate
log step (schedule head + the network's s) and the fraction above the clamp's upper end.

    python benchmarks/generalist/log_step_clamp.py --task spam-gru
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from loptim.optimizers import mlp_generalist
from loptim.optimizers.mlp import MLPOptimizer

sys.path.insert(0, str(Path(__file__).parent))
from devset import TASKS  # noqa: E402  (the dev set's tasks, on meta-train and meta-valid data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="spam-gru", choices=sorted(TASKS))
    parser.add_argument("--weights", default="mlp-generalist-fold")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["LOPTIM_KERNELS"] = "0"  # the reference update: the fused kernel does not expose s
    task = TASKS[args.task]()
    steps = task.default_steps
    params = {k: v.clone().requires_grad_(True) for k, v in task.init(torch.Generator().manual_seed(args.seed)).items()}
    opt = MLPOptimizer(list(params.values()), weights=args.weights, total_steps=steps)
    meta, seen = opt.meta_params, {}
    network_outputs = mlp_generalist.network_outputs

    def recording(meta_params, first):  # the reference path's network, its magnitude kept for this step
        direction, magnitude = network_outputs(meta_params, first)
        seen["s"] = magnitude.detach()
        return direction, magnitude

    mlp_generalist.network_outputs = recording
    batches = task.batches("train", torch.Generator().manual_seed(args.seed))
    upper = mlp_generalist.LOG_STEP_RANGE[1]
    print(f"{args.task} | {args.weights} | step | log step q10 / q50 / q90 | fraction above {upper:g}")
    for t in range(steps):
        for p in params.values():
            p.grad = None
        task.loss(params, next(batches)).backward()
        opt.step()
        if t % (steps // 10) == 0 or t == steps - 1:
            progress = mlp_generalist.step_features(t, steps, torch.float32, torch.device("cpu"))
            log_step = seen["s"] + float(meta["w_schedule"] @ progress)
            sample = log_step[torch.randperm(log_step.numel(), generator=torch.Generator().manual_seed(0))[:100_000]]
            q = torch.quantile(sample, torch.tensor([0.1, 0.5, 0.9])).tolist()
            above = float((log_step > upper).float().mean())
            print(f"{args.task} | {args.weights} | {t} | {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} | {above:.3f}")


if __name__ == "__main__":
    main()
