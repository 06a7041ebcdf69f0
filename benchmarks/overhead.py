"""Per-step cost of each optimizer's update on MLPs of ~100K and ~800K parameters, against torch.optim.Adam,
this machine's fp32 matmul peak (2048^3) and its copy bandwidth, measured in the same run. Medians over alternating
repetitions. Rows ending in "-reference" run the pure PyTorch update with the fused kernels off (LOPTIM_KERNELS=0).

    python benchmarks/overhead.py [--reps 7] [--threads N]

Writes benchmarks/results/overhead.json (schema in docs/design.md, evaluation protocol) and prints the table.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from loptim.features import MOMENTUM_DECAYS, RMS_DECAY, RSQRT_EPS, time_features
from loptim.optimizers.lhopt import LHOPT
from loptim.optimizers.lstm import LSTMOptimizer, LSTMOptimizerNet, preprocess_gradient
from loptim.optimizers.mlp import MLPOptimizer, MLPOptimizerNet, generalist_config
from loptim.optimizers.mlp_generalist import DECAYS as GENERALIST_DECAYS
from loptim.pretrained import save_learned

RESULTS = Path(__file__).parent / "results" / "overhead.json"
# LHOPT acts once per `interval` steps (features on some steps, a policy decision at the end): one timed call runs
# a whole interval of a 512-step, 32-decision run, and the row reports the mean step of it (amortized).
LHOPT_INTERVAL = 16
LSTM_FLOPS_PER_COORDINATE = 2 * 80 * 22 + 2 * 80 * 40 + 2 * 20  # gate GEMMs of both layers + output = 9,960
MLP_FLOPS_PER_COORDINATE = 2 * (10 * 32 + 32 * 32 + 32 * 2)  # 2,816 (docs/design.md; time features are a bias)
GENERALIST_FLOPS_PER_COORDINATE = 2 * (9 * 8 + 8 * 8 + 8 * 2)  # 304: small, so the update is memory-bound
# The bytes a generalist update must move per coordinate: read g, p, three momenta and v; write them and the step.
GENERALIST_BYTES_PER_COORDINATE = 4 * (2 + 4) + 4 * (4 + 1)
SIZES = {"100K": (784, 128), "800K": (784, 1024)}  # MLP 784 -> width -> 10


def mlp_params(width: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(784, width), (width,), (width, 10), (10,)]
    params = [torch.randn(*s, generator=g).mul_(0.01).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return params


class NaiveLSTM:
    """The straightforward whole-batch version: torch.nn.LSTMCell x2 over every coordinate at once (same math)."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.cells = [torch.nn.LSTMCell(2, 20), torch.nn.LSTMCell(20, 20)]
        self.out = torch.nn.Linear(20, 1)
        n = sum(p.numel() for p in params)
        self.state = [(torch.zeros(n, 20), torch.zeros(n, 20)) for _ in self.cells]

    @torch.no_grad()
    def step(self) -> None:
        grad = torch.cat([p.grad.reshape(-1) for p in self.params])
        x = preprocess_gradient(grad).t()
        for i, cell in enumerate(self.cells):
            h, c = cell(x, self.state[i])
            self.state[i] = (h, c)
            x = h
        delta = 0.1 * self.out(x).squeeze(1)
        pieces = torch.split(delta, [p.numel() for p in self.params])
        torch._foreach_add_(self.params, [d.view_as(p) for d, p in zip(pieces, self.params)])


class NaiveMLP:
    """The straightforward whole-batch Metz update: (N, 21) features (10 per coordinate, normalized tensor by
    tensor, plus the 11 time features repeated) through nn.Sequential; the same math as loptim's MLP optimizer."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.net = torch.nn.Sequential(torch.nn.Linear(21, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                                       torch.nn.ReLU(), torch.nn.Linear(32, 2))  # fmt: skip
        n = sum(p.numel() for p in params)
        self.momenta = torch.zeros(n, len(MOMENTUM_DECAYS))
        self.rms = torch.zeros(n)
        self.step_count = 0

    @torch.no_grad()
    def step(self) -> None:
        grad = torch.cat([p.grad.reshape(-1) for p in self.params])
        param = torch.cat([p.reshape(-1) for p in self.params])
        decays = torch.tensor(MOMENTUM_DECAYS)
        self.momenta = decays * self.momenta + (1 - decays) * grad.unsqueeze(1)
        self.rms = RMS_DECAY * self.rms + (1 - RMS_DECAY) * grad**2
        rsqrt = torch.rsqrt(self.rms + RSQRT_EPS)
        raw = torch.cat([grad[:, None], param[:, None], self.momenta, (grad * rsqrt)[:, None],
                         (self.momenta[:, 2] * rsqrt)[:, None]], dim=1)  # fmt: skip
        pieces = torch.split(raw, [p.numel() for p in self.params])
        normalized = torch.cat([x * torch.rsqrt((x**2).mean(0) + 1e-5) for x in pieces])
        inputs = torch.cat([normalized, time_features(self.step_count).expand(len(raw), -1)], dim=1)
        out = self.net(inputs)
        delta = -1e-3 * out[:, 0] * torch.exp(1e-3 * out[:, 1])
        pieces = torch.split(delta, [p.numel() for p in self.params])
        torch._foreach_add_(self.params, [d.view_as(p) for d, p in zip(pieces, self.params)])
        self.step_count += 1


def reference(step: Callable[[], None]) -> Callable[[], None]:
    """`step` with the fused kernels off: the pure PyTorch update the kernels are tested against."""

    def call() -> None:
        os.environ["LOPTIM_KERNELS"] = "0"
        try:
            step()
        finally:
            os.environ.pop("LOPTIM_KERNELS")

    return call


def make(name: str, params: list[torch.Tensor]) -> Callable[[], None]:
    if name.endswith("-reference"):
        return reference(make(name.removesuffix("-reference"), params))
    if name == "adam":
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
        return opt.step
    if name == "lstm":
        return LSTMOptimizer(params, weights=None).step  # an untrained network costs the same
    if name == "lstm-naive":
        return NaiveLSTM(params).step
    if name == "mlp":
        return MLPOptimizer(params, weights=None).step
    if name == "generalist":  # an untrained generalist costs what a trained one does
        return MLPOptimizer(params, weights=str(_generalist_weights()), total_steps=1000).step
    if name == "mlp-naive":
        return NaiveMLP(params).step
    if name == "lhopt":
        lhopt = LHOPT(params, None, total_steps=LHOPT_INTERVAL * 32, decisions=32)  # untrained policy: same cost
        loss = torch.tensor(1.0)

        def interval() -> None:
            for _ in range(LHOPT_INTERVAL):
                lhopt.step(loss=loss)

        return interval
    raise ValueError(name)


def _generalist_weights() -> Path:
    """An untrained generalist-design weights file (written once to a temporary folder)."""
    path = Path(tempfile.gettempdir()) / "loptim-overhead-generalist.safetensors"
    if not path.exists():
        config = generalist_config()
        save_learned(path, "mlp", MLPOptimizerNet(config, torch.Generator().manual_seed(0)), vars(config), {})
    return path


def state_bytes_per_param(name: str, n: int) -> float:
    """Bytes of optimizer state per parameter (a "-reference" or "-naive" row holds its optimizer's state)."""
    base = name.split("-")[0]
    if base == "adam":
        return 8.0
    if base == "lstm":  # h and c of two layers of 20 units (LSTMCell's whole-batch version holds the same)
        state = LSTMOptimizerNet().zero_state(n)
        return sum(v.numel() * v.element_size() for v in state.values()) / n
    if base == "lhopt":
        return 4.0 * 2  # AdamW's m and v; the controller's state is per tensor, not per parameter
    if base == "generalist":
        return 4.0 * (len(GENERALIST_DECAYS) + 1)  # three momenta and v
    return 4.0 * (len(MOMENTUM_DECAYS) + 1)  # Metz design: six momenta and rms


def _high_water_kb() -> int:
    """Peak resident set of this address space (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _peak_worker(name: str, size: str, threads: int) -> float:
    torch.set_num_threads(threads)
    params = mlp_params(SIZES[size][1])
    before = _high_water_kb()
    step = make(name, params)
    step()
    return (_high_water_kb() - before) / 1024.0


def peak_mb(name: str, size: str, threads: int) -> float:
    """Growth of peak resident memory from building the optimizer and taking one step, in a fresh interpreter."""
    code = f"import overhead; print(overhead._peak_worker({name!r}, {size!r}, {threads}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def copy_gbs(n: int, reps: int) -> float:
    """Bytes read plus written per second by a copy of 6 floats per coordinate (the generalist's working set)."""
    source = torch.randn(6 * n)
    target = torch.empty_like(source)
    target.copy_(source)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - start)
    return 2 * source.numel() * 4 / statistics.median(times) / 1e9


def matmul_gflops(reps: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def meta_throughput(reps: int, task_name: str = "mnist-mlp", length: int = 20) -> list[dict]:
    """Inner steps advanced per second by each Metz estimator on one inner run of `task_name`, beside a
    forward-only unroll (the learned optimizer training the task, no meta-gradient) of the same truncation."""
    from loptim.meta.estimators import SmoothedEstimator, TruncatedBackprop
    from loptim.meta.unroll import METZ_OBJECTIVE, draw_truncation, run_truncation, start_seeded_unroll
    from loptim.optimizers.mlp import MLPOptimizerNet
    from loptim.tasks import get_task

    task = get_task(task_name)
    net = MLPOptimizerNet(generator=torch.Generator().manual_seed(0))
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    unroll = start_seeded_unroll(task, net, 10 * length, seed=0)
    truncation = draw_truncation(unroll, length, with_valid=True)

    def forward() -> None:
        with torch.no_grad():
            run_truncation(net, meta, unroll, truncation, METZ_OBJECTIVE)

    estimators = {
        "forward-only unroll": forward,
        "backprop (1st order)": TruncatedBackprop(METZ_OBJECTIVE, second_order=False),
        "backprop (2nd order)": TruncatedBackprop(METZ_OBJECTIVE, second_order=True),
        "ES (antithetic pair)": SmoothedEstimator("es"),
        "combined, 1st order (pair)": SmoothedEstimator("combined", second_order=False),
        "combined, 2nd order (pair)": SmoothedEstimator("combined", second_order=True),
    }
    rows = []
    for name, estimator in estimators.items():
        generator = torch.Generator().manual_seed(1)
        call = estimator if callable(estimator) else (
            lambda e=estimator, g=generator: e.estimate(net, meta, [unroll], [truncation], g))  # fmt: skip
        call()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append({"estimator": name, "task": task_name, "truncation": length, "seconds": seconds,
                     "inner_steps_per_second": length / seconds})  # fmt: skip
    return rows


NAMES = {
    "adam": "torch.optim.Adam (fused)",
    "lstm": "lstm (fused kernel)",
    "lstm-reference": "lstm (PyTorch reference)",
    "lstm-naive": "lstm-naive (LSTMCell x2, whole batch)",
    "mlp": "mlp, Metz design (fused kernel)",
    "mlp-reference": "mlp, Metz design (PyTorch reference)",
    "mlp-naive": "mlp-naive (nn.Sequential, whole batch)",
    "generalist": "mlp, generalist design (fused kernel)",
    "generalist-reference": "mlp, generalist design (PyTorch reference)",
    "lhopt": "lhopt (AdamW + policy, amortized; fused kernel)",
    "lhopt-reference": "lhopt (AdamW + policy, amortized; PyTorch reference)",
}


def table(result: dict | None = None) -> list[str]:
    """The README's overhead table, from `result` (default: the committed overhead.json)."""
    result = result or json.loads(RESULTS.read_text())
    header = "| optimizer | params | update ms | GFLOP/s | % of matmul | % of copy | state B/param | peak MB |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        update = f"{row['update_ms']:,.2f}" if row["update_ms"] < 10 else f"{row['update_ms']:,.1f}"
        gflops = "-" if row["gflops"] is None else f"{row['gflops']:.1f}"
        matmul = "-" if row["fraction_of_matmul"] is None else f"{100 * row['fraction_of_matmul']:.0f}%"
        copy = "-" if row.get("fraction_of_copy") is None else f"{100 * row['fraction_of_copy']:.0f}%"
        lines.append(f"| {NAMES.get(row['optimizer'], row['optimizer'])} | {row['params']:,} | {update} | {gflops} "
                     f"| {matmul} | {copy} | {row['state_bytes_per_param']:.0f} | {row['peak_mb']:.0f} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["adam", "lstm", "lstm-reference", "lstm-naive", "mlp", "mlp-reference", "mlp-naive", "generalist",
             "generalist-reference", "lhopt", "lhopt-reference"]  # fmt: skip
    rows = []
    peak = matmul_gflops(args.reps)
    for size, (_, width) in SIZES.items():
        steps = {}
        params = {}
        for name in names:
            params[name] = mlp_params(width)
            steps[name] = make(name, params[name])
            steps[name]()  # warm-up (allocations, first-call overheads)
        times: dict[str, list[float]] = {name: [] for name in names}
        matmul_times, copy_times = [], []
        n = sum(p.numel() for p in params["adam"])
        for _ in range(args.reps):  # alternate optimizers (and matmul, copy) so drifts in load hit all alike
            for name in names:
                start = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - start)
            matmul_times.append(matmul_gflops(1))
            copy_times.append(copy_gbs(n, 1))
        peak = max(peak, statistics.median(matmul_times))
        copy = statistics.median(copy_times)
        for name in names:
            seconds = statistics.median(times[name]) / (LHOPT_INTERVAL if name.startswith("lhopt") else 1)
            per_coordinate = {"lstm": LSTM_FLOPS_PER_COORDINATE, "mlp": MLP_FLOPS_PER_COORDINATE,
                              "generalist": GENERALIST_FLOPS_PER_COORDINATE}  # fmt: skip
            flops = per_coordinate[name.split("-")[0]] * n if name.split("-")[0] in per_coordinate else None
            moved = GENERALIST_BYTES_PER_COORDINATE * n / seconds / 1e9 if name.startswith("generalist") else None
            rows.append(
                {
                    "optimizer": name,
                    "params": n,
                    "update_ms": seconds * 1e3,
                    "gflops": flops / seconds / 1e9 if flops else None,
                    "fraction_of_matmul": None,
                    "bandwidth_gbs": moved,
                    "copy_gbs": copy,
                    "fraction_of_copy": moved / copy if moved else None,
                    "state_bytes_per_param": state_bytes_per_param(name, n),
                    "peak_mb": peak_mb(name, size, args.threads),
                }
            )
    for row in rows:
        if row["gflops"] is not None:
            row["fraction_of_matmul"] = row["gflops"] / peak
    meta_rows = meta_throughput(max(3, args.reps // 2))
    result = {"matmul_gflops": peak, "threads": args.threads, "reps": args.reps, "rows": rows,
              "meta_training": meta_rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"fp32 matmul 2048^3: {peak:.1f} GFLOP/s ({args.threads} threads); medians of {args.reps} alternating reps")
    print(f"{'optimizer':<22}{'params':>10}{'update ms':>12}{'GFLOP/s':>10}{'% matmul':>10}{'% copy':>8}"
          f"{'B/param':>9}{'peak MB':>9}")  # fmt: skip
    for row in rows:
        gf = f"{row['gflops']:.1f}" if row["gflops"] else "-"
        frac = f"{100 * row['fraction_of_matmul']:.0f}%" if row["fraction_of_matmul"] else "-"
        copy_frac = f"{100 * row['fraction_of_copy']:.0f}%" if row["fraction_of_copy"] else "-"
        print(f"{row['optimizer']:<22}{row['params']:>10}{row['update_ms']:>12.2f}{gf:>10}{frac:>10}{copy_frac:>8}"
              f"{row['state_bytes_per_param']:>9.0f}{row['peak_mb']:>9.1f}")  # fmt: skip
    by = {(r["optimizer"], r["params"]): r["update_ms"] for r in rows}
    for size, (_, width) in SIZES.items():
        n = 784 * width + width + width * 10 + 10
        for name in ("lstm", "mlp", "generalist"):
            naive = (
                f"{by[(name + '-naive', n)] / by[(name, n)]:.1f}x faster than {name}-naive, "
                if name != "generalist"
                else ""
            )
            print(f"{size}: {name} is {by[(name + '-reference', n)] / by[(name, n)]:.1f}x faster than its reference, "
                  f"{naive}{by[(name, n)] / by[('adam', n)]:.0f}x slower than fused Adam")  # fmt: skip
    forward = meta_rows[0]["inner_steps_per_second"]
    print(f"Metz meta-training throughput on {meta_rows[0]['task']} (truncations of {meta_rows[0]['truncation']} "
          "steps, one inner run, validation objective):")  # fmt: skip
    for row in meta_rows:
        print(f"  {row['estimator']:<28}{row['inner_steps_per_second']:>8.1f} inner steps/s"
              f"  ({forward / row['inner_steps_per_second']:.1f}x the forward-only cost)")  # fmt: skip
    print("\n".join(table(result)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
