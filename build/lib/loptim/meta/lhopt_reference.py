"""The strong reference of LHOPT's reward (docs/lhopt.md, Reward): a good hand-designed run of the episode's task
and seed.

Textbook AdamW (the inner optimizer's plain mode, `PLAIN_ADAMW`, with torch.optim.AdamW's defaults: betas
0.9/0.999, eps 1e-8, decoupled weight decay 0.01) with a linear warm-up over the first `warmup_fraction` of the
steps and a cosine decay to 0, at a learning rate chosen per task family and length bucket by a small sweep
(loptim.meta.lhopt_sweep, cached on disk). Plain mode rather than the published one because the policy is judged
against tuned `torch.optim.AdamW` (docs/design.md, Evaluation protocol): the reward should pay it for beating what
it will be compared with, and the published mode's trust ratio rescales the learning rate per tensor, so a learning
rate swept for it would not be a schedule anyone tunes in practice.
"""

from __future__ import annotations

import math

from loptim.optimizers.lhopt.inner import PLAIN_ADAMW, InnerConfig, InnerHParams

REFERENCE_CONFIG: InnerConfig = PLAIN_ADAMW
# torch.optim.AdamW's defaults in LHOPT's parametrization (1 - beta); lr is set per family by the sweep.
REFERENCE_HPARAMS = InnerHParams(lr=1e-3, one_minus_beta1=0.1, one_minus_beta2=1e-3, eps=1e-8, weight_decay=1e-2)
WARMUP_FRACTION = 0.05
REFERENCE_VERSION = 1  # bump when the reference run changes: it keys the sweep cache


def warmup_cosine(step: int, steps: int, warmup_fraction: float = WARMUP_FRACTION) -> float:
    """The learning-rate multiplier of inner step `step` (0-based) of `steps`: linear warm-up (step + 1) / W over
    the first W = max(1, round(warmup_fraction * steps)) steps, then 0.5 (1 + cos(pi (step - W) / (steps - W)))."""
    warmup = max(1, round(warmup_fraction * steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def length_bucket(steps: int, edges: tuple[int, ...]) -> int:
    """The bucket of an episode length: the number of `edges` at or below `steps` (edges ascending)."""
    return sum(steps >= edge for edge in edges)


def bucket_steps(bucket: int, inner_steps: tuple[int, int], edges: tuple[int, ...]) -> int:
    """The sweep's run length for a bucket: its shortest episode (the sweep runs are short runs)."""
    return (inner_steps[0], *edges)[bucket]


def reference_key(family: str, bucket: int) -> str:
    """The key of a family's reference learning rate in a table: 'family/bucket'."""
    return f"{family}/{bucket}"
