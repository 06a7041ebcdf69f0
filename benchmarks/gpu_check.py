"""Every optimizer on a GPU for a few steps: parameters stay finite and on the device, and what a step costs.

Models of about 0.1M, 2M and 12M parameters (MLPs on random data); per model, the median time of the model's
forward+backward and of each optimizer's `step()` (fused Adam, the LSTM, the MLP in its Metz 2019 and generalist
designs, LHOPT), measured interleaved in one process with CUDA events. Writes `benchmarks/results/gpu.json` and
prints a table.

    python benchmarks/gpu_check.py                  # on a machine with CUDA
    python benchmarks/gpu_check.py --device cpu --sizes 0.1   # a dry run of the script itself
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import loptim

RESULTS = Path(__file__).parent / "results" / "gpu.json"
OPTIMIZERS = ("adam", "lstm", "mlp", "generalist", "lhopt")


def build(size_millions: float, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP of 4 square layers whose width gives about `size_millions` M parameters, and one batch."""
    width = int((size_millions * 1e6 / 4) ** 0.5)
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*layers[:-1]).to(device)
    x = torch.randn(256, width, device=device)
    return model, x, torch.randn(256, width, device=device)


def make(name: str, params: list[torch.Tensor], total_steps: int) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    if name == "lstm":
        return loptim.LSTMOptimizer(params)
    if name == "mlp":  # the Metz 2019 design
        return loptim.MLPOptimizer(params, weights="mlp-mnist")
    if name == "generalist":  # MLPOptimizer's default weights
        return loptim.MLPOptimizer(params, total_steps=total_steps)
    return loptim.LHOPT(params, total_steps=total_steps)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Milliseconds of one call (CUDA events on a GPU, perf_counter on the CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def check(size: float, device: torch.device, steps: int, reps: int) -> dict:
    model, x, y = build(size, device)
    params = list(model.parameters())
    count = sum(p.numel() for p in params)
    initial = [p.detach().clone() for p in params]
    row: dict = {"params": count, "forward_backward_ms": None, "step_ms": {}, "finite": {}, "on_device": {}}

    def forward_backward() -> torch.Tensor:
        for p in params:
            p.grad = None
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    times: dict[str, list[float]] = {name: [] for name in ("forward_backward", *OPTIMIZERS)}
    optimizers = {}
    for name in OPTIMIZERS:  # a few warm-up steps each, from the same start
        with torch.no_grad():
            for p, p0 in zip(params, initial):
                p.copy_(p0)
        optimizers[name] = make(name, params, total_steps=steps + reps + 1)
        for _ in range(steps):
            loss = forward_backward()
            optimizers[name].step(loss=loss) if name != "adam" else optimizers[name].step()
        row["finite"][name] = all(bool(torch.isfinite(p).all()) for p in params)
        row["on_device"][name] = all(p.device == device for p in params) and all(
            t.device == device for s in optimizers[name].state.values() for t in s.values() if t.dim() > 0
        )
    for _ in range(reps):  # interleaved: each optimizer's step on the same gradients, in turn
        loss = forward_backward()
        times["forward_backward"].append(timed(forward_backward, device))
        for name in OPTIMIZERS:
            opt = optimizers[name]
            times[name].append(timed(lambda o=opt, n=name, v=loss: o.step(loss=v) if n != "adam" else o.step(), device))
    row["forward_backward_ms"] = statistics.median(times["forward_backward"])
    row["step_ms"] = {name: statistics.median(times[name]) for name in OPTIMIZERS}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", default="0.1,2,12", help="model sizes in millions of parameters")
    parser.add_argument("--steps", type=int, default=5, help="warm-up steps per optimizer (checked for finiteness)")
    parser.add_argument("--reps", type=int, default=10, help="interleaved timed steps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run it on a GPU machine, or pass --device cpu for a dry run")
    rows = [check(float(size), device, args.steps, args.reps) for size in args.sizes.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = f"{'params':>10} {'fwd+bwd ms':>11} " + " ".join(f"{o + ' ms':>10} {'x adam':>7}" for o in OPTIMIZERS)
    print(f"device: {name}, torch {torch.__version__}\n{header}")
    for row in rows:
        adam = row["step_ms"]["adam"]
        cells = " ".join(f"{row['step_ms'][o]:>10.3f} {row['step_ms'][o] / adam:>7.1f}" for o in OPTIMIZERS)
        print(f"{row['params']:>10,} {row['forward_backward_ms']:>11.3f} {cells}")
        bad = [o for o in OPTIMIZERS if not (row["finite"][o] and row["on_device"][o])]
        if bad:
            print(f"  FAILED: {', '.join(bad)} left non-finite parameters or state off the device")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    if any(not (row["finite"][o] and row["on_device"][o]) for row in rows for o in OPTIMIZERS):
        sys.exit(1)


if __name__ == "__main__":
    main()
