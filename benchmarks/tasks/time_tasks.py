"""Seconds per Adam run of each suite task on one thread, through the harness (init, default_steps steps, 21
validations, the test evaluation), and with --families, seconds per 50 inner steps of sampled family tasks.

    python benchmarks/tasks/time_tasks.py [--tasks a,b] [--families tiny-mixed --samples 16]

Prints a markdown table; the suite's budget is ~30 s per core run (docs/data.md, the suite tasks), families' well
under 1 s per 50 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from loptim.evaluate.harness import run_one
from loptim.optimizers.baselines import make_baseline
from loptim.tasks import get_family, get_task
from loptim.tasks.partition import part_of
from loptim.tasks.suite import META_VALID_TASKS, SUITE_CORE


def time_task(name: str, lr: float) -> dict:
    task = get_task(name)
    task.init(torch.Generator().manual_seed(0))  # loads the data (cached tensors) outside the timed run
    start = time.perf_counter()
    curve = run_one(make_baseline("adam", lr), task, task.default_steps, seed=1)
    seconds = time.perf_counter() - start
    first, last = curve.valid_loss[0], curve.valid_loss[-1]
    return {"task": name, "data": task.data_source, "part": part_of(task.data_source), "params": task.num_params(),
            "steps": task.default_steps, "seconds": seconds, "valid": f"{first:.3f} -> {last:.3f}"}  # fmt: skip


def time_family(name: str, samples: int) -> list[tuple[str, float]]:
    family, rows = get_family(name), []
    for seed in range(samples):
        task = family.sample(torch.Generator().manual_seed(seed))
        params = {k: v.requires_grad_(True) for k, v in task.init(torch.Generator().manual_seed(seed)).items()}
        optimizer = torch.optim.Adam(params.values(), 1e-3)
        batches = task.batches("train", torch.Generator().manual_seed(seed))
        task.loss(params, next(batches)).backward()  # untimed: loads the data, warms up the kernels
        start = time.perf_counter()
        for _ in range(50):
            loss = task.loss(params, next(batches))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rows.append((task.name, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(SUITE_CORE + META_VALID_TASKS))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--families", default="")
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.families:
        for family in args.families.split(","):
            rows = time_family(family, args.samples)
            print(f"| {family} sample | seconds per 50 steps |\n|---|---|")
            for task, seconds in rows:
                print(f"| {task} | {seconds:.2f} |")
            print(f"max {max(s for _, s in rows):.2f} s, mean {sum(s for _, s in rows) / len(rows):.2f} s\n")
        return
    print("| task | data | part | params | steps | s per Adam run | valid loss |\n|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        r = time_task(name, args.lr)
        print(f"| {r['task']} | {r['data']} | {r['part']} | {r['params']:,} | {r['steps']} | {r['seconds']:.1f} |"
              f" {r['valid']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
