#!/usr/bin/env bash
# Every figure of benchmarks/lhopt/README.md, in order. Tuning runs are cached under $LOPTIM_CACHE/runs/, so an
# interrupted run resumes; the grids take hours on this 2-core machine (shakespeare-char is most of it).
# The reproduction's policy (lhopt-small, LHOPT's default before lhopt-wide) comes from
#   loptim --threads 1 meta-train lhopt --recipe lhopt-small --out runs/lhopt-small --workers 1
# (card: loptim/pretrained/lhopt-small.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/lhopt/results
# Held-out tasks (DESIGN.md): tuned Adam and tuned AdamW over 5 learning rates x 7 schedules each, 3 seeds, and
# the shipped policy untuned on the same seeds; speedups over tuned AdamW (and tuned Adam).
for task in movielens-gmf movielens-neumf fashion-cnn shakespeare-char; do
  loptim bench "$task" --optimizers adamw,lhopt:lhopt-small:cooldown=0:lr=0.001 --schedules all --lr-points 5 --seeds 3 --workers "${WORKERS:-2}" \
    --out "$out/$task"
done
# The learning rates the policy chooses on each held-out task, next to tuned AdamW's schedule.
python benchmarks/lhopt/schedules.py --cooldown 0 --weights lhopt-small --seeds 3
