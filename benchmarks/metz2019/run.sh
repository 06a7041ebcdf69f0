#!/usr/bin/env bash
# Every figure of benchmarks/metz2019/README.md, in order (about 50 minutes on 2 idle cores; tuning runs are cached
# under $LOPTIM_CACHE/runs/, so an interrupted run resumes). The shipped weights come from
#   loptim --threads 1 meta-train mlp --recipe mlp-mnist-hot --out runs/mlp-mnist-hot   (card: loptim/pretrained/mlp-mnist.json)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/metz2019/results
# (c) held-out task: tuned Adam over 7 learning rates x 7 schedules (the reference), then SGD+momentum and RMSprop
# over learning rates with a constant schedule (the paper tuned learning rates), 3 seeds each.
loptim bench fashion-cnn --optimizers adam,mlp:mlp-mnist --seeds 3 --workers 2 --out "$out/fashion-cnn"
loptim bench fashion-cnn --optimizers adam,momentum,rmsprop,mlp:mlp-mnist --seeds 3 --schedules constant --workers 2 \
  --out "$out/fashion-cnn-constant"
# (b) meta-training curves of backprop-only, ES-only and combined at equal minutes
python benchmarks/metz2019/compare_estimators.py --minutes "${MINUTES:-5}" --parallel 2
# (a) meta-gradient norm and variance against unroll length, at the shipped step size and 10x longer steps
python benchmarks/metz2019/pathology.py --weights mlp-mnist --samples 6
python benchmarks/metz2019/pathology.py --weights mlp-mnist --samples 6 --step-scale 10
