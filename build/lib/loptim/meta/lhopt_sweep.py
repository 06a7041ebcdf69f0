"""The strong reference's learning-rate sweep (docs/lhopt.md, Reward): per training family and length bucket,
plain AdamW with warm-up and cosine decay (loptim.meta.lhopt_reference) at each of a recipe's `sweep_lrs`, on
`sweep_seeds` task variants of short runs (the bucket's shortest length); the learning rate with the lowest mean
log final validation loss wins (log: variants differ in scale; a diverged run counts as inf). When the winner is
at an edge of the grid, the grid is extended past it by the grid's own ratio, up to EXTEND points, so the choice is
interior where it can be (noisy quadratics kept improving up to the 0.32 of the default grid).

Computed once and cached as JSON under `$LOPTIM_CACHE/lhopt-reference/`, one file per (family, its size options,
length bucket, sweep settings, reference and package version): a later run with the same key reads it, a changed
family or code version sweeps again. Precompute with `loptim lhopt-reference --recipe NAME [--workers N]`.
Deterministic: sweep seeds are SWEEP_SEED_BASE + i, which no training or evaluation episode draws.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from loptim.evaluate.tuning import atomic_write_text
from loptim.meta.lhopt_families import family_options, sample_task
from loptim.meta.lhopt_reference import (
    REFERENCE_CONFIG,
    REFERENCE_HPARAMS,
    REFERENCE_VERSION,
    bucket_steps,
    reference_key,
    warmup_cosine,
)
from loptim.meta.lhopt_rollout import EpisodeSpec, inner_run
from loptim.tasks.data.paths import cache_dir
from loptim.version import __version__

if TYPE_CHECKING:
    from loptim.meta.recipes import LHOPTRecipe

SWEEP_SEED_BASE = 20_000_000  # training seeds come from derive_seed, evaluation seeds from 10,000,000 + 7 i
EXTEND = 2  # extra learning rates past an edge of the grid, each way


def sweep_key(recipe: LHOPTRecipe, family: str, bucket: int) -> dict[str, Any]:
    """Everything a family's swept learning rate depends on."""
    return {
        "family": family,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(family_options(family).items())},
        "bucket": bucket,
        "steps": bucket_steps(bucket, recipe.inner_steps, recipe.length_buckets),
        "lrs": list(recipe.sweep_lrs),
        "seeds": recipe.sweep_seeds,
        "extend": EXTEND,
        "warmup_fraction": recipe.warmup_fraction,
        "valid_batches": recipe.valid_batches,
        "reference_version": REFERENCE_VERSION,
        "loptim": __version__,
    }


def sweep_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "lhopt-reference" / f"{key['family']}-b{key['bucket']}-{digest}.json"


def sweep_run(job: tuple[dict[str, Any], float, int]) -> float:
    """log of the final validation loss of one reference run (inf if diverged)."""
    key, lr, index = job
    seed = SWEEP_SEED_BASE + index
    task = sample_task(key["family"], torch.Generator().manual_seed(seed))
    steps = key["steps"]
    spec = EpisodeSpec(seed, key["family"], task, steps, 1, replace(REFERENCE_HPARAMS, lr=lr))
    schedule = lambda step: warmup_cosine(step, steps, key["warmup_fraction"])  # noqa: E731
    loss = inner_run(spec, REFERENCE_CONFIG, key["valid_batches"], 1, lr_schedule=schedule).final_loss
    return math.log(loss) if 0 < loss < math.inf else (math.inf if loss > 0 else -math.inf)


def sweep_family(key: dict[str, Any], pool: Any = None) -> tuple[list[float], list[float]]:
    """(learning rates, mean log final validation loss of each) for one family and bucket, the grid extended past
    an edge that wins (EXTEND points at most each way)."""
    seeds = key["seeds"]

    def scores(lrs: list[float]) -> list[float]:
        jobs = [(key, lr, index) for lr in lrs for index in range(seeds)]
        runs = pool.map(sweep_run, jobs, chunksize=1) if pool else [sweep_run(job) for job in jobs]
        return [sum(runs[i * seeds : (i + 1) * seeds]) / seeds for i in range(len(lrs))]

    lrs = list(key["lrs"])
    per_lr = scores(lrs)
    for _ in range(key["extend"]):
        best = min(range(len(per_lr)), key=lambda i: per_lr[i])
        if len(lrs) < 2 or 0 < best < len(lrs) - 1:
            break
        if best == 0:
            lr = lrs[0] * lrs[0] / lrs[1]
            lrs, per_lr = [lr, *lrs], [*scores([lr]), *per_lr]
        else:
            lr = lrs[-1] * lrs[-1] / lrs[-2]
            lrs, per_lr = [*lrs, lr], [*per_lr, *scores([lr])]
    return lrs, per_lr


def _init_worker() -> None:
    torch.set_num_threads(1)


def reference_lrs(recipe: LHOPTRecipe, workers: int = 1, log: Any = None) -> dict[str, float]:
    """The recipe's table {'family/bucket': learning rate}, read from the cache or swept (and cached) now."""
    keys = [
        sweep_key(recipe, family, bucket)
        for family, _ in recipe.families
        for bucket in range(len(recipe.length_buckets) + 1)
    ]
    missing = [key for key in keys if not sweep_path(key).exists()]
    if missing and log:
        runs = sum(len(key["lrs"]) * key["seeds"] for key in missing)
        log(f"sweeping the reference learning rate: {len(missing)} family/bucket(s), {runs} runs")
    pool = (
        multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        if missing and workers > 1
        else None
    )
    try:
        for key in missing:  # one family/bucket at a time, cached as soon as it is done
            lrs, per_lr = sweep_family(key, pool)
            best = min(range(len(per_lr)), key=lambda i: per_lr[i])
            record = {"key": key, "lrs": lrs, "mean_log_valid_loss": per_lr, "lr": lrs[best]}
            atomic_write_text(sweep_path(key), json.dumps(record, indent=1))
            if log:
                edge = " (the extended grid's edge)" if best in (0, len(per_lr) - 1) else ""
                log(f"{key['family']} bucket {key['bucket']} ({key['steps']} steps): lr {lrs[best]:g}{edge}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    table = {}
    for key in keys:
        record = json.loads(sweep_path(key).read_text())
        table[reference_key(key["family"], key["bucket"])] = float(record["lr"])
    return table
