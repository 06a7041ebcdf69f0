"""A learned optimizer's fused kernel at several git revisions of loptim/kernels/cpu.cpp, timed interleaved in one
process on the same optimizer and gradient (~800K parameters, overhead.py's MLP; the generalist design by default,
`--optimizer lstm` the L2L LSTM), so that a kernel change is measured against its predecessor in the same run rather
than across days.

    python benchmarks/kernel_revisions.py b8eafcb^ b8eafcb [--reps 7] [--steps 10] [--threads 1] [--optimizer lstm]

A revision may also be the path of a .cpp file (a draft of cpu.cpp), timed beside committed ones.

Each revision's cpu.cpp is built with the flags of loptim/kernels (a second or so each). Prints the median step
time per revision and writes benchmarks/results/kernel-revisions.json. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # noqa: E402  (this folder's script: the model and the untrained generalist weights)

from loptim import kernels  # noqa: E402
from loptim.kernels import fused  # noqa: E402
from loptim.optimizers.lstm import LSTMOptimizer  # noqa: E402
from loptim.optimizers.mlp import MLPOptimizer  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "kernel-revisions.json"


def build(revision: str, stem: Path) -> ctypes.CDLL:
    """cpu.cpp as of `revision` (a git revision, or the path of a .cpp file: a draft not yet committed), compiled
    with the package's flags into STEM.so."""
    if revision.endswith(".cpp") and Path(revision).is_file():
        source = Path(revision).read_text()
    else:
        source = subprocess.run(["git", "show", f"{revision}:loptim/kernels/cpu.cpp"], capture_output=True,
                                text=True, check=True).stdout  # fmt: skip
    src, lib = stem.with_suffix(".cpp"), stem.with_suffix(".so")
    src.write_text(source)
    subprocess.run([kernels._compiler() or "g++", *kernels.FLAGS, str(src), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("revisions", nargs="+")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--optimizer", choices=("generalist", "lstm"), default="generalist")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    revisions = list(dict.fromkeys(args.revisions))  # a revision named twice is timed once
    with tempfile.TemporaryDirectory() as tmp:
        libraries = {r: build(r, Path(tmp) / f"revision{i}") for i, r in enumerate(revisions)}
        params = overhead.mlp_params(overhead.SIZES["800K"][1])
        n = sum(p.numel() for p in params)
        if args.optimizer == "lstm":
            opt = LSTMOptimizer(params, weights=None)  # an untrained network costs the same
        else:
            opt = MLPOptimizer(params, weights=str(overhead._generalist_weights()), total_steps=100_000)
        times: dict[str, list[float]] = {revision: [] for revision in revisions}
        for _ in range(args.reps):
            for revision, library in libraries.items():  # alternate, so that drifts in load hit all alike
                kernels._loaded["cpu"] = library
                fused._entry.cache_clear()
                opt.step()  # warm-up with this library
                start = time.perf_counter()
                for _ in range(args.steps):
                    opt.step()
                times[revision].append((time.perf_counter() - start) / args.steps)
        kernels._loaded.pop("cpu")
        fused._entry.cache_clear()
    rows = [{"revision": r, "step_ms": 1e3 * statistics.median(t), "ns_per_coordinate": 1e9 * statistics.median(t) / n}
            for r, t in times.items()]  # fmt: skip
    command = "python benchmarks/kernel_revisions.py " + " ".join(sys.argv[1:])
    result = {"optimizer": args.optimizer, "params": n, "threads": args.threads, "reps": args.reps,
              "steps": args.steps, "rows": rows, "command": command}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        print(f"{row['revision']:>12}: {row['step_ms']:.2f} ms per step, {row['ns_per_coordinate']:.2f} ns/coordinate")


if __name__ == "__main__":
    main()
