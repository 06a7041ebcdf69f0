"""How a generalist's learned step factor responds to a tensor's parameter scale, its per-tensor input: the factor
exp(clamp(h_t + s_i)) that multiplies the nominal Adam step, averaged over coordinates whose features are standard
normal draws (the features are RMS-normalized per tensor), at the start and halfway through a run, for tensors of
parameter RMS exp(log_rms) (docs/generalist.md, Per-tensor scale input). Zero-initialized tensors sit at the
input's floor, 0.5 log(NORMALIZER_EPS) = -5.76.

    python benchmarks/generalist/tensor_scale_response.py --weights mlp-generalist-half,mlp-generalist-fold
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from loptim.io import atomic_write_text
from loptim.optimizers import mlp_generalist
from loptim.pretrained import load_learned

LOG_RMS = (-5.76, -4.6, -3.9, -3.0, -2.3, -1.6, -0.7, 0.0, 1.0)


def mean_factor(weights: str, log_rms: float, fraction: float, coordinates: int = 4096, steps: int = 1000) -> float:
    """The mean step factor over `coordinates` standard-normal feature draws (seed 0) at `fraction` of a run."""
    meta = {k: v.detach() for k, v in load_learned("mlp", weights).meta_params().items()}
    progress = mlp_generalist.step_features(int(fraction * steps), steps, torch.float32, torch.device("cpu"))
    features = torch.randn(mlp_generalist.NUM_FEATURES, coordinates, generator=torch.Generator().manual_seed(0))
    bias = meta["b1"] + meta["w1_time"] @ progress + meta["w1_tensor"][:, 0] * log_rms
    _, magnitude = mlp_generalist.network_outputs(meta, torch.addmm(bias.unsqueeze(1), meta["w1"], features))
    log_step = torch.clamp(meta["w_schedule"] @ progress + magnitude, *mlp_generalist.LOG_STEP_RANGE)
    return float(log_step.exp().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="mlp-generalist-half,mlp-generalist-fold")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tensor-scale-response.json")
    args = parser.parse_args()
    result: dict = {"command": shlex.join(["python", *sys.argv]), "log_rms": list(LOG_RMS), "factor": {}}
    print("weights | run fraction | " + " | ".join(f"{x:g}" for x in LOG_RMS))
    for weights in args.weights.split(","):
        result["factor"][weights] = {}
        for fraction in (0.0, 0.5):
            row = [mean_factor(weights, x, fraction) for x in LOG_RMS]
            result["factor"][weights][str(fraction)] = row
            print(f"{weights} | {fraction} | " + " | ".join(f"{v:.1f}" for v in row))
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
