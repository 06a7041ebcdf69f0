"""Meta-training throughput on this machine's cores: outer steps per second for 1 process x 1 thread, 1 process x
2 threads and 2 processes x 1 thread (torchrun, gloo), the same recipe and global batch in each, on the L2L and
Metz recipes. Scaling efficiency = (2-process throughput) / (2 x 1-process-1-thread throughput); target >= 0.8.

    python benchmarks/scaling.py [--quick] [--steps N]

L2L's recipe gets meta_batch 2 (the shipped one has a single inner run per epoch, which nothing can split); an
L2L epoch is horizon / truncation outer steps, a Metz epoch one. The first epochs (data loading, task building) are
not timed. Each configuration also reports a checksum of its final meta-parameters: 2 x 1 must equal 1 x 1 bit
for bit (1 x 2 may differ in the last bits: a different thread count may reorder float sums).
Writes benchmarks/results/scaling.json and prints the table. A benchmark, not a test; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "scaling.json"
# recipe, changes, warm-up epochs, timed epochs (full run: about a minute per configuration here)
FULL = {
    "l2l": ("lstm", "lstm-mnist", {"meta_batch": 2}, 1, 4),
    "metz": ("mlp", "mlp-mnist", {}, 2, 12),
}
QUICK = {
    "l2l": ("lstm", "tiny-quadratic", {"meta_batch": 2, "epochs": 100}, 1, 4),
    "metz": ("mlp", "tiny-metz", {"epochs": 100}, 1, 4),
}
CONFIGS = (("1 x 1 thread", 1, 1), ("1 x 2 threads", 1, 2), ("2 x 1 thread", 2, 1))


def outer_steps_per_epoch(trainer: object) -> int:
    """Meta-parameter updates per epoch: L2L one per truncation, Metz one."""
    recipe = trainer.recipe
    if hasattr(recipe, "horizon"):
        return -(-recipe.horizon // recipe.truncation)
    return 1


def worker(kind: str, recipe_name: str, changes: dict, warmup: int, timed: int, out: Path) -> None:
    """One rank (or the single process): warm up, time `timed` epochs, rank 0 writes the result as JSON."""
    from loptim.meta import distributed as dist
    from loptim.meta.recipes import RECIPES
    from loptim.meta.trainer import MetaTrainer

    created = dist.init_from_env()
    try:
        recipe = dataclasses.replace(RECIPES.get(recipe_name), **changes)
        with tempfile.TemporaryDirectory() as directory:
            trainer = MetaTrainer(recipe, Path(directory))
            for _ in range(warmup):
                trainer.train_epoch()
                trainer.epoch += 1
            dist.barrier()
            start = time.perf_counter()
            for _ in range(timed):
                trainer.train_epoch()
                trainer.epoch += 1
            dist.barrier()
            seconds = time.perf_counter() - start
            if dist.is_main():
                steps = timed * outer_steps_per_epoch(trainer)
                result = {"outer_steps": steps, "seconds": seconds, "steps_per_second": steps / seconds,
                          "checksum": dist.checksum(trainer.meta)[:16]}  # fmt: skip
                out.write_text(json.dumps(result))
    finally:
        if created:
            dist.shutdown()


def measure(name: str, spec: tuple, processes: int, threads: int) -> dict:
    """Run one configuration in fresh processes (torchrun for several ranks); its result."""
    kind, recipe, changes, warmup, timed = spec
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "result.json"
        args = [__file__, "--worker", kind, recipe, json.dumps(changes), str(warmup), str(timed), str(out)]
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env["OMP_NUM_THREADS"] = str(threads)
        if processes == 1:
            command = [sys.executable, *args]
        else:
            launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
            command = [sys.executable, *launcher, *args]
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny recipes, a few seconds: checks the harness")
    parser.add_argument("--steps", type=int, default=None, help="timed epochs per configuration")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, recipe, changes, warmup, timed, out = args.worker
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        worker(kind, recipe, json.loads(changes), int(warmup), int(timed), Path(out))
        return
    specs = QUICK if args.quick else FULL
    if args.steps is not None:
        specs = {name: (*spec[:4], args.steps) for name, spec in specs.items()}
    rows, results = [], {"quick": args.quick, "cpu_count": os.cpu_count(), "recipes": {}}
    for name, spec in specs.items():
        runs = {label: measure(name, spec, processes, threads) for label, processes, threads in CONFIGS}
        single = runs["1 x 1 thread"]["steps_per_second"]
        two = runs["2 x 1 thread"]["steps_per_second"]
        efficiency = two / (2 * single)
        exact = runs["2 x 1 thread"]["checksum"] == runs["1 x 1 thread"]["checksum"]
        results["recipes"][name] = {"recipe": spec[1], "changes": spec[2], "runs": runs, "exact": exact,
                                    "ideal_steps_per_second": 2 * single, "scaling_efficiency": efficiency}  # fmt: skip
        for label, run in runs.items():
            rows.append([name, spec[1], label, f"{run['steps_per_second']:.3f}", run["checksum"]])
        rows.append([name, spec[1], "ideal (2 x 1x1)", f"{2 * single:.3f}", ""])
        rows.append([name, spec[1], "efficiency", f"{efficiency:.2f}", "target >= 0.8"])
    header = ["recipe", "name", "processes x threads", "outer steps/s", "meta checksum"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
