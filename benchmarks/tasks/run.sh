#!/usr/bin/env bash
# Tuned Adam on every task of the suite: 7 learning rates, constant schedule, 3 seeds (a budget choice: the full
# 49-configuration grid on the 500-step tasks costs hours on 2 cores). Results: benchmarks/tasks/results/TASK/.
set -euo pipefail
cd "$(dirname "$0")/../.."
for task in ${TASKS:-quadratic mnist-mlp mnist-mlp-40 mnist-mlp-2layer mnist-mlp-relu fashion-mlp mnist-cnn fashion-cnn movielens-gmf movielens-neumf mobydick-char shakespeare-char}; do
  loptim bench "$task" --optimizers adam --seeds 3 --schedules constant --no-cache ${WORKERS:+--workers $WORKERS} \
    --out "benchmarks/tasks/results/$task" | grep -v "^\s*$"
done
