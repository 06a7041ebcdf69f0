"""Meta-training curves of the three estimators at equal compute (Metz et al. 2019, Sec. 5, Fig. 5): the recipe
`mlp-mnist` run with backprop only ("rp"), ES only ("es") and their inverse-variance combination ("combined"),
each for the same number of single-thread minutes; ES outer steps are cheaper, so it takes more of them.

    python benchmarks/metz2019/compare_estimators.py [--minutes 8] [--parallel 2]

Each run checkpoints under $LOPTIM_CACHE/runs/metz-compare/ and resumes when re-run. Writes
benchmarks/metz2019/results/estimators.json and estimators.png. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = ("rp", "es", "combined")


def recipe_for(mode: str, eval_every: int):
    from loptim.meta.recipes import RECIPES

    base = RECIPES.get("mlp-mnist")
    return dataclasses.replace(base, name=f"mlp-mnist-{mode}", estimator=mode, eval_every=eval_every, eval_tasks=2)


def run_one(mode: str, minutes: float, eval_every: int) -> None:
    import torch

    from loptim.meta.trainer import MetaTrainer
    from loptim.tasks.data.paths import cache_dir

    torch.set_num_threads(1)
    out = cache_dir() / "runs" / "metz-compare" / mode
    trainer = MetaTrainer(recipe_for(mode, eval_every), out)
    if trainer.checkpoint_path.exists():
        trainer.resume()
    remaining = minutes - trainer.seconds / 60
    if remaining > 0:
        trainer.run(max_minutes=remaining, progress=False, command=" ".join(sys.argv))
    (out / "history.json").write_text(json.dumps(trainer.history))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="meta-training minutes per estimator")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2, help="estimators run side by side (one thread each)")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.only:
        run_one(args.only, args.minutes, args.eval_every)
        return
    pending = list(MODES)
    while pending:
        batch, pending = pending[: args.parallel], pending[args.parallel :]
        procs = [subprocess.Popen([sys.executable, __file__, "--only", mode, "--minutes", str(args.minutes),
                                   "--eval-every", str(args.eval_every)]) for mode in batch]  # fmt: skip
        for proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"estimator run failed: {proc.args}")
    from loptim.tasks.data.paths import cache_dir

    histories = {m: json.loads((cache_dir() / "runs" / "metz-compare" / m / "history.json").read_text()) for m in MODES}
    summary = {}
    for mode, history in histories.items():
        evals = [(h["seconds"], h["eval_score"]) for h in history if "eval_score" in h]
        summary[mode] = {
            "outer_steps": len(history),
            "seconds": history[-1]["seconds"] if history else 0.0,
            "outer_steps_per_minute": 60 * len(history) / max(history[-1]["seconds"], 1e-9) if history else 0.0,
            "best_eval_score": min((s for _, s in evals), default=None),
            "final_eval_score": evals[-1][1] if evals else None,
            "mean_es_weight": _mean([h["es_weight"] for h in history if "es_weight" in h]),
        }
        print(f"{mode:<9} {summary[mode]}")
    args.out.mkdir(parents=True, exist_ok=True)
    slim = {m: [{k: h[k] for k in ("epoch", "seconds", "meta_loss", "eval_score", "es_weight", "es_variance",
                                   "rp_variance", "truncation") if k in h} for h in hist]
            for m, hist in histories.items()}  # fmt: skip
    result = {"minutes_each": args.minutes, "summary": summary, "history": slim}
    (args.out / "estimators.json").write_text(json.dumps(result) + "\n")
    plot(histories, args.out / "estimators.png")
    print(f"wrote {args.out / 'estimators.json'} and estimators.png")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def plot(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, history in histories.items():
        evals = [(h["seconds"] / 60, h["eval_score"]) for h in history if "eval_score" in h]
        if evals:
            axes[0].plot(*zip(*evals), marker="o", label=mode)
        losses = [h["meta_loss"] for h in history]
        smooth = [sum(losses[max(0, i - 10) : i + 1]) / len(losses[max(0, i - 10) : i + 1]) for i in range(len(losses))]
        axes[1].plot([h["seconds"] / 60 for h in history], smooth, label=mode)
    axes[0].set_title("held-out family samples: final validation loss")
    axes[1].set_title("meta-loss (mean clipped validation loss), smoothed")
    for ax in axes:
        ax.set_xlabel("meta-training minutes (one thread)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
