"""LHOPT's deployment overhead (issue 15, item 5): `loptim.LHOPT.step()` against `torch.optim.AdamW.step()` in the
same process, interleaved, on MLPs of ~100K and ~1M parameters (batch 128 of random MNIST-shaped data).

    python benchmarks/lhopt/deployment_overhead.py [--threads 1] [--reps 5] [--steps 128]

For each model, alternating blocks of `steps` training steps with each optimizer (LHOPT with total_steps = 32 x
`steps`, so a block holds one decision on average, features every 4 steps as deployed), timing forward+backward
and step separately; medians over `reps` blocks. Overhead = (LHOPT step - AdamW step) / (forward+backward +
LHOPT step): the share of a training step LHOPT adds over torch's default AdamW (issue 15's bar: <= 10% at
100K+ parameters), and over AdamW(fused=True), the fastest torch.optim has. Also times LHOPT's inner optimizer
alone (published mode, no policy, no features) to split the overhead into the published update rule and the
policy's features and decisions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import loptim
from loptim.optimizers.lhopt.inner import PUBLISHED, InnerHParams, init_inner_state, inner_step


def model_of(hidden: tuple[int, ...]) -> nn.Module:
    sizes = (784, *hidden, 10)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InnerOnly:
    """The published inner optimizer with fixed hyperparameters: what LHOPT costs without its policy."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.state = init_inner_state(params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, loss: torch.Tensor | None = None) -> None:
        inner_step(InnerHParams(), PUBLISHED, self.state, self.params, [p.grad for p in self.params])


def time_block(model: nn.Module, optimizer, data: tuple[torch.Tensor, torch.Tensor], steps: int) -> tuple[float, float]:
    """(forward+backward ms, step ms) per step, mean over `steps` steps."""
    inputs, targets = data
    forward_backward = stepping = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        middle = time.perf_counter()
        optimizer.step(loss=loss) if not isinstance(optimizer, torch.optim.AdamW) else optimizer.step()
        end = time.perf_counter()
        forward_backward += middle - start
        stepping += end - middle
    return 1e3 * forward_backward / steps, 1e3 * stepping / steps


def measure(hidden: tuple[int, ...], reps: int, steps: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    data = (torch.randn(128, 784, generator=generator), torch.randint(10, (128,), generator=generator))
    torch.manual_seed(0)
    models = {name: model_of(hidden) for name in ("adamw", "adamw_fused", "lhopt", "inner")}
    count = sum(p.numel() for p in models["adamw"].parameters())
    optimizers = {
        "adamw": torch.optim.AdamW(models["adamw"].parameters(), lr=1e-3),  # torch's default implementation
        "adamw_fused": torch.optim.AdamW(models["adamw_fused"].parameters(), lr=1e-3, fused=True),
        "lhopt": loptim.LHOPT(models["lhopt"].parameters(), "lhopt-small", total_steps=32 * steps * (reps + 1)),
        "inner": InnerOnly(list(models["inner"].parameters())),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in optimizers}
    for rep in range(reps + 1):  # the first round warms up
        for name, optimizer in optimizers.items():
            result = time_block(models[name], optimizer, data, steps)
            if rep > 0:
                times[name].append(result)
    row = {"params": count}
    for name, values in times.items():
        row[f"{name}_fwd_bwd_ms"] = statistics.median(v[0] for v in values)
        row[f"{name}_step_ms"] = statistics.median(v[1] for v in values)
    step_time = row["lhopt_fwd_bwd_ms"] + row["lhopt_step_ms"]
    row["overhead_vs_adamw"] = (row["lhopt_step_ms"] - row["adamw_step_ms"]) / step_time
    row["overhead_vs_fused_adamw"] = (row["lhopt_step_ms"] - row["adamw_fused_step_ms"]) / step_time
    row["policy_share"] = (row["lhopt_step_ms"] - row["inner_step_ms"]) / step_time
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("params | fwd+bwd ms | AdamW step ms | fused AdamW step ms | LHOPT step ms | inner-only step ms | "
          "LHOPT - AdamW | LHOPT - fused AdamW | policy part")  # fmt: skip
    for hidden in ((128,), (1024, 256)):
        r = measure(hidden, args.reps, args.steps)
        print(
            f"{r['params']:,} | {r['lhopt_fwd_bwd_ms']:.3f} | {r['adamw_step_ms']:.3f} | "
            f"{r['adamw_fused_step_ms']:.3f} | {r['lhopt_step_ms']:.3f} | {r['inner_step_ms']:.3f} | "
            f"{100 * r['overhead_vs_adamw']:.1f}% | {100 * r['overhead_vs_fused_adamw']:.1f}% | "
            f"{100 * r['policy_share']:.1f}%"
        )


if __name__ == "__main__":
    main()
