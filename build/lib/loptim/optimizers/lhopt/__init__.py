"""LHOPT (Almeida et al. 2021): a learned policy that steers an AdamW's hyperparameters a few times per run.

One concept per module: `inner` (the inner optimizer), `actions` (action space, restart registers), `features`
(unitless features), `policy` (the actor-critic and how it chooses), `controller` (observations, decisions and
the control loop that the shell and meta-training episodes share) and `shell` (`loptim.LHOPT`). Nothing here
imports `loptim.meta`: PPO and the episodes that train the policy live there (docs/lhopt.md).
"""

from loptim.optimizers.lhopt.actions import ACTION_HEADS, HEAD_SIZES, apply_action, randomize_hparams
from loptim.optimizers.lhopt.controller import (
    OBS_DIM,
    OBSERVATION_LAYOUT,
    ControlLoop,
    decide,
    init_controller,
    observe,
    record_step,
    wants_features,
)
from loptim.optimizers.lhopt.inner import PLAIN_ADAMW, PUBLISHED, InnerConfig, InnerHParams
from loptim.optimizers.lhopt.policy import ActorCritic, PolicyConfig, default_policy, noop_bias
from loptim.optimizers.lhopt.shell import LHOPT, MissingLossError, load_policy

__all__ = [
    "ACTION_HEADS",
    "HEAD_SIZES",
    "LHOPT",
    "OBSERVATION_LAYOUT",
    "OBS_DIM",
    "PLAIN_ADAMW",
    "PUBLISHED",
    "ActorCritic",
    "ControlLoop",
    "InnerConfig",
    "InnerHParams",
    "MissingLossError",
    "PolicyConfig",
    "apply_action",
    "decide",
    "default_policy",
    "init_controller",
    "load_policy",
    "noop_bias",
    "observe",
    "randomize_hparams",
    "record_step",
    "wants_features",
]
