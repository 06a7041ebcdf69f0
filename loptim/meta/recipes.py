"""Meta-training recipes by name: frozen configurations whose exact command and seed go into the weights' card."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from loptim.meta.curriculum import TruncationCurriculum
from loptim.meta.estimators import SmoothedEstimator, TruncatedBackprop
from loptim.meta.parts import (
    CarriedRuns,
    FinalTrainLoss,
    FinalValidLoss,
    FixedTruncation,
    FreshRuns,
    LogRatioToAdam,
    OneTask,
    OuterOptimizer,
    Parts,
    UniformTruncation,
    family_tasks,
    mixture_tasks,
)
from loptim.meta.pes import PES
from loptim.meta.ppo import PPOConfig
from loptim.meta.unroll import MetaObjective
from loptim.optimizers.lhopt.actions import ACTION_HEADS, DEFAULT_NOOP_BIAS
from loptim.optimizers.lhopt.inner import PUBLISHED, InnerConfig
from loptim.optimizers.lstm import LSTMConfig
from loptim.optimizers.mlp import MLPConfig, generalist_config
from loptim.registry import Registry


@dataclass(frozen=True)
class L2LRecipe:
    """Truncated-BPTT meta-training of the LSTM optimizer (Andrychowicz et al. 2016, Sec. 3 and official code).

    One epoch = one inner run of `horizon` steps split into truncations of `truncation` steps, one Adam update of
    the meta-parameters per truncation (official code: 100 steps, unrolls of 20). The best checkpoint by mean
    final training loss on held-out initializations (seeds never used by `loptim bench`) is kept, as the official
    code evaluates every so often and keeps the best.
    """

    name: str
    task: str
    horizon: int = 100
    truncation: int = 20
    epochs: int = 1000
    meta_lr: float = 3e-3  # paper: random search; official code 1e-3; 3e-3: docs/design.md, L2L deviations
    clip_norm: float = 1.0  # not in the paper: clipping the meta-gradient at norm 1 kept the probe run stable
    eval_every: int = 25
    eval_runs: int = 8
    seed: int = 0
    core: LSTMConfig = field(default_factory=LSTMConfig)
    meta_batch: int = 1  # inner runs per epoch, in lockstep, gradients averaged (the paper: 1); split across ranks

    def __post_init__(self) -> None:
        if min(self.horizon, self.truncation, self.epochs, self.eval_every, self.eval_runs, self.meta_batch) < 1:
            raise ValueError(f"horizon, truncation, epochs, eval_every, eval_runs, meta_batch must be >= 1 in {self}")

    def parts(self) -> Parts:
        return Parts(
            core=self.core,
            tasks=OneTask(self.task, self.horizon),
            estimator=TruncatedBackprop(),
            schedule=FixedTruncation(self.truncation),
            runs=FreshRuns(self.meta_batch),
            score=FinalTrainLoss(self.eval_runs),
            outer=OuterOptimizer(self.meta_lr, 0.9, self.clip_norm),
            card={
                "optimizer": "lstm (Andrychowicz et al. 2016)",
                "meta_trained_on": [self.task],
                "selection_score": {"runs": self.eval_runs},
            },
        )


@dataclass(frozen=True)
class MetzRecipe:
    """Meta-training of the per-parameter MLP optimizer (Metz et al. 2019, Sec. 4-5), scaled to 2 CPU cores.

    One epoch = one outer step: `unrolls` inner runs (tasks sampled from `family`, each of its sampled length,
    carried across epochs and restarted when they end) each advance by one truncation whose length follows the
    curriculum; the estimator turns those truncations into one meta-gradient. Paper: sigma 0.01, validation
    objective clipped at 10, Adam with beta1 0.5 as the outer optimizer; lr 1e-3 here (paper's 1e-5 suits its
    far longer meta-training), meta-gradient clipped at norm `clip_norm`.
    """

    name: str
    family: str = "mnist-mix"
    inner_steps: tuple[int, int] = (100, 600)
    unrolls: int = 4
    estimator: str = "combined"  # "combined" | "rp" | "es" (loptim.meta.estimators.SmoothedEstimator) | "backprop"
    sigma: float = 0.01
    objective: str = "valid"  # "valid" | "train"
    loss_clip: float | None = 10.0  # per-step min(L, 10) of the official code
    second_order: bool = False  # True: backprop through the inner gradients too (docs/design.md, performance facts)
    curriculum: TruncationCurriculum = field(default_factory=lambda: TruncationCurriculum(10, 25, 300))
    epochs: int = 600
    meta_lr: float = 1e-3
    meta_beta1: float = 0.5
    clip_norm: float = 1.0
    eval_every: int = 50
    eval_tasks: int = 4
    seed: int = 0
    core: MLPConfig | LSTMConfig = field(default_factory=MLPConfig)  # any core: `lstm-es-quadratic` uses the LSTM

    def parts(self) -> Parts:
        estimator = (
            TruncatedBackprop(self.meta_objective, self.second_order)
            if self.estimator == "backprop"
            else SmoothedEstimator(self.estimator, self.sigma, self.meta_objective, self.second_order)
        )
        return Parts(
            core=self.core,
            tasks=family_tasks(self.family, self.inner_steps, keep=4 * self.unrolls),
            estimator=estimator,
            schedule=self.curriculum,
            runs=CarriedRuns(self.unrolls),
            score=FinalValidLoss(self.eval_tasks),
            outer=OuterOptimizer(self.meta_lr, self.meta_beta1, self.clip_norm),
            card={
                "optimizer": f"{self.core.kind} (Metz et al. 2019)",
                "meta_trained_on": [
                    f"family {self.family}, {self.inner_steps[0]}-{self.inner_steps[1]} steps, train split"
                ],
                "selection_score": {"tasks": self.eval_tasks},
            },
        )

    @property
    def meta_objective(self) -> MetaObjective:
        return MetaObjective(self.objective, self.loss_clip, "mean")


@dataclass(frozen=True)
class LHOPTRecipe:
    """PPO meta-training of LHOPT's policy (Almeida et al. 2021; docs/design.md, LHOPT), scaled to 2 CPU cores.

    One epoch (a PPO iteration) = `rollouts` episodes, each a whole inner run of a task drawn from `families`
    (names in loptim.meta.lhopt_families.TRAIN_FAMILIES, with weights) of a log-uniform length in `inner_steps`,
    with `decisions` (log-uniform; the paper: 8-64) policy decisions and randomized initial hyperparameters,
    then one `ppo_update`. Reward (docs/lhopt.md), against a `reference` run: "fixed" (the
    episode's initial hyperparameters held) or "tuned" (plain AdamW, warm-up and cosine, at a learning rate swept
    per family and length bucket: loptim.meta.lhopt_reference). The best checkpoint is chosen by the greedy
    policy's mean reward on `eval_rollouts` fixed episodes, evaluated every `eval_every` epochs: episodes of the
    training mixture on evaluation seeds, or, with `valid_families`, meta-validation episodes of task variants no
    training entry draws (lhopt_rollout.meta_valid_spec).
    """

    name: str
    families: tuple[tuple[str, float], ...] = (
        ("noisy-quadratic", 1.0),
        ("mnist-mlp", 1.0),
        ("mnist-cnn", 1.0),
        ("char-lm", 1.0),
    )
    inner_steps: tuple[int, int] = (48, 192)  # paper: 1-5 epochs of real data sets; short runs here
    decisions: tuple[int, int] = (8, 64)  # docs/design.md, LHOPT (decisions); capped at steps // 2 per episode
    rollouts: int = 16
    workers: int = 2  # parallel episode processes (spawn, one torch thread each); 1 runs in-process
    valid_batches: int = 8  # valid-split minibatches per episode, drawn once: the final loss behind the reward
    observe_valid_batches: int = 1  # the first of them, evaluated before each decision (the policy's valid loss)
    reward_clip: float = 3.0  # example config: reward clipped to [-3, 3]
    epochs: int = 120
    eval_every: int = 10
    eval_rollouts: int = 8
    seed: int = 0
    hidden: int = 64  # example config 256; scaled down (loptim.optimizers.lhopt.policy.PolicyConfig)
    # The config's lr 2e-4 moved the policy by approx-KL < 3e-4 per update (first run); 1e-3 by ~1e-3.
    # Entropy bonus 1e-3 (config 1e-2): at 1e-2 the entropy rose every epoch (4.7 -> 5.6 in 15) and undid the
    # no-op bias, while noisy advantages averaged out.
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(lr=2e-3, entropy_coef=1e-3))
    inner: InnerConfig = PUBLISHED  # the published inner optimizer, as loptim.LHOPT uses by default
    # Initial logit of each head's no-op, in ACTION_HEADS order (loptim.optimizers.lhopt.actions.DEFAULT_NOOP_BIAS).
    noop_bias: tuple[float, ...] = DEFAULT_NOOP_BIAS
    # Which action heads the policy steers (ACTION_HEADS names); the others always take their no-op.
    controlled: tuple[str, ...] = ("lr", "weight_decay", "eps", "one_minus_beta1", "one_minus_beta2", "clip_ratio",
                                   "restart")  # fmt: skip
    reference: str = "fixed"  # "fixed" | "tuned" (the strong reference: docs/lhopt.md, Reward)
    length_buckets: tuple[int, ...] = ()  # episode-length edges: one swept reference lr per family and bucket
    warmup_fraction: float = 0.05  # the tuned reference's linear warm-up, then cosine to 0
    sweep_lrs: tuple[float, ...] = (1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1, 10**-0.5)  # half-decades, 1e-3..0.32
    sweep_seeds: int = 3  # task variants (and initializations) per swept learning rate
    valid_families: tuple[str, ...] = ()  # META_VALID_FAMILIES entries; empty: evaluate on the training mixture
    valid_steps: tuple[int, ...] = (300, 1000)  # meta-validation lengths, cycled
    valid_decisions: int = 32  # the shell's deployment default
    init_from: str | None = None  # LHOPT weights to start from (the curriculum of heads; lhopt_trainer.make_policy)
    # The deployment's cooldown inside every policy run (training and meta-validation episodes; not the reference):
    # the policy's learning rate times shell.cooldown_factor over the last `cooldown` of the run (docs/lhopt.md,
    # Cooldown in episodes); 0: the policy alone, as before.
    cooldown: float = 0.0

    def __post_init__(self) -> None:
        from loptim.meta.lhopt_families import check_families

        check_families(self.families)
        for label, (low, high), floor in (("inner_steps", self.inner_steps, 2), ("decisions", self.decisions, 1)):
            if not floor <= low <= high:
                raise ValueError(f"{label} must be a range ({floor} <= low <= high), got {(low, high)}")
        unknown = set(self.controlled) - {head.name for head in ACTION_HEADS}
        if unknown or not self.controlled:
            raise ValueError(
                f"controlled must name action heads ({[h.name for h in ACTION_HEADS]}), got {self.controlled}"
            )
        if len(self.noop_bias) != len(ACTION_HEADS):
            raise ValueError(f"noop_bias needs one value per action head ({len(ACTION_HEADS)}), got {self.noop_bias}")
        from loptim.meta.lhopt_families import META_VALID_FAMILIES

        if self.reference not in ("fixed", "tuned"):
            raise ValueError(f"reference must be 'fixed' or 'tuned', got '{self.reference}'")
        edges = self.length_buckets
        if list(edges) != sorted(set(edges)) or any(not self.inner_steps[0] < e <= self.inner_steps[1] for e in edges):
            raise ValueError(f"length_buckets must be ascending edges inside inner_steps {self.inner_steps}: {edges}")
        unknown_valid = set(self.valid_families) - set(META_VALID_FAMILIES)
        if unknown_valid:
            raise ValueError(f"no meta-validation family {sorted(unknown_valid)}; known: {list(META_VALID_FAMILIES)}")
        if not 0.0 <= self.cooldown < 1.0:
            raise ValueError(f"cooldown is a fraction of an episode's steps in [0, 1), got {self.cooldown}")
        if not self.sweep_lrs or self.sweep_seeds < 1 or not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"sweep_lrs non-empty, sweep_seeds >= 1, 0 <= warmup_fraction < 1 in {self}")
        sizes = (self.rollouts, self.workers, self.epochs, self.eval_every, self.eval_rollouts, self.hidden)
        if min(sizes) < 1 or not 1 <= self.observe_valid_batches <= self.valid_batches:
            raise ValueError(
                f"rollouts, workers, epochs, eval_every, eval_rollouts, hidden must be >= 1 and "
                f"1 <= observe_valid_batches <= valid_batches in {self}"
            )


@dataclass(frozen=True)
class GeneralistRecipe:
    """PES meta-training of the generalist design (docs/generalist.md), sized for CPU cores."""

    name: str
    # Meta-train data only (loptim/tasks/partition.py): tiny images, texts, tables and series, MNIST MLPs/CNNs,
    # Moby-Dick transformers and noisy quadratics.
    families: tuple[tuple[str, float], ...] = (
        ("tiny-mixed", 4.0),
        ("mnist-mix", 1.0),
        ("char-lm", 1.0),
        ("noisy-quadratic", 0.5),
    )
    augment: float = 0.5  # probability of a reparameterized task (Celo)
    log10_scales: tuple[float, float] = (-1.0, 1.0)  # Celo: -3..3; narrowed while the design cannot see 1e3x
    inner_steps: tuple[int, int] = (100, 1000)  # whole runs, log-uniform
    truncation: tuple[int, int] = (25, 50)  # PES truncation length, uniform per outer step
    slots: int = 8
    sigma: float = 0.01
    epochs: int = 100_000
    # 3e-3 for the campaign's first 1,201 outer steps; 1e-3 since: the meta-valid score had stalled from step 500
    # with a spike at 1,100 while the meta-gradient norm grew (campaigns/mlp-generalist/README.md).
    meta_lr: float = 1e-3
    meta_beta1: float = 0.9
    clip_norm: float = 10.0
    eval_every: int = 100
    eval_tasks: tuple[str, ...] = ("spam-gru", "doctor-contacts-mlp")  # meta-valid data (tasks.suite.META_VALID_TASKS)
    seed: int = 0
    core: MLPConfig = field(default_factory=generalist_config)
    init_from: str | None = None  # shipped weights to warm-start from (loptim.meta.trainer.warm_start)
    perturbed: tuple[str, ...] | None = None  # the meta-parameters PES trains (None: all; the others stay as they are)
    late: float = 0.0  # PES.late: each truncation's score weighted by the run's progress to this power (0: uniform)

    def parts(self) -> Parts:
        return Parts(
            core=self.core,
            tasks=mixture_tasks(
                self.families, self.augment, self.log10_scales, self.inner_steps, self.name, keep=4 * self.slots
            ),
            estimator=PES(self.sigma, perturbed=self.perturbed, late=self.late),
            schedule=UniformTruncation(*self.truncation),
            runs=CarriedRuns(self.slots, in_checkpoint=False),  # a campaign checkpoint stays a few KB
            score=LogRatioToAdam(self.eval_tasks),
            outer=OuterOptimizer(self.meta_lr, self.meta_beta1, self.clip_norm),
            card={
                "optimizer": "mlp, generalist design (docs/generalist.md)",
                "meta_trained_on": [f"mixture {self.families}, reparameterized with p={self.augment}"],
                "selection_score": {"tasks": list(self.eval_tasks)},
                **({} if self.init_from is None else {"warm_started_from": self.init_from}),
                **({} if self.perturbed is None else {"meta_trained_only": list(self.perturbed)}),
                **({} if not self.late else {"objective_weight": f"run progress ** {self.late:g}"}),
            },
            init_from=self.init_from,
        )


RECIPES: Registry[L2LRecipe | MetzRecipe | LHOPTRecipe | GeneralistRecipe] = Registry("recipe")
RECIPES.add("lstm-mnist", lambda: L2LRecipe(name="lstm-mnist", task="mnist-mlp", epochs=600))
# lstm-mnist with 2 inner runs per epoch (gradients averaged), so that 2 ranks split every epoch (torchrun
# --nproc_per_node=2); the paper's setting is 1 run per meta-iteration.
RECIPES.add("lstm-mnist-mb2", lambda: L2LRecipe(name="lstm-mnist-mb2", task="mnist-mlp", epochs=600, meta_batch=2))
# lstm-mnist-mb2 for 1,000 epochs (the recipe's default length): its 600-epoch run kept its best checkpoint at
# epoch 575 and scored 0.336 on its held-out seeds against lstm-mnist's 0.317 at epoch 475: had it converged? No:
# the same run through epoch 600, nothing better after (benchmarks/l2l/results/lstm-mnist-mb2-long.json).
RECIPES.add(
    "lstm-mnist-mb2-long",
    lambda: L2LRecipe(name="lstm-mnist-mb2-long", task="mnist-mlp", epochs=1000, meta_batch=2),
)
# lstm-mnist-mb2 at the official code's meta learning rate, 1e-3 (Andrychowicz et al. 2016, code): the 3e-3 run's
# evaluations after epoch 600 swung from 0.356 to chance (lstm-mnist-mb2-long), a sign of too large a step.
RECIPES.add(
    "lstm-mnist-mb2-slow",
    lambda: L2LRecipe(name="lstm-mnist-mb2-slow", task="mnist-mlp", epochs=1000, meta_batch=2, meta_lr=1e-3),
)
# lstm-mnist-mb2 from meta-training seed 1: is its gap to lstm-mnist (0.336 against 0.317 selection score) the
# meta-batch or the seed? Which ships is chosen by the selection score, not the bench. Its one run so far stopped
# with its session at epoch 408, best selection score 0.377 (not committed; not rerun).
RECIPES.add(
    "lstm-mnist-mb2-seed1",
    lambda: L2LRecipe(name="lstm-mnist-mb2-seed1", task="mnist-mlp", epochs=600, meta_batch=2, seed=1),
)
RECIPES.add("lstm-quadratic", lambda: L2LRecipe(name="lstm-quadratic", task="quadratic", epochs=300))
RECIPES.add(
    "tiny-quadratic",
    lambda: L2LRecipe(
        name="tiny-quadratic", task="quadratic", horizon=20, truncation=5, epochs=6, eval_every=3, eval_runs=2
    ),
)
RECIPES.add("mlp-mnist", lambda: MetzRecipe(name="mlp-mnist"))
# The same with a 3x larger meta learning rate: the output scale 0.001 * d makes weight growth the bottleneck of
# short meta-training (the paper trains ~1000x longer at lr 1e-5).
RECIPES.add("mlp-mnist-hot", lambda: MetzRecipe(name="mlp-mnist-hot", meta_lr=3e-3))
RECIPES.add(
    "tiny-metz",
    lambda: MetzRecipe(
        name="tiny-metz",
        family="quadratic",
        inner_steps=(8, 8),
        unrolls=2,
        loss_clip=None,
        curriculum=TruncationCurriculum(start=3, end=5, grow_epochs=4),
        epochs=6,
        eval_every=3,
        eval_tasks=1,
    ),
)
# lhopt-small steers the learning rate only: with all seven heads, PPO's signal drowned on this budget (entropy
# rose every epoch, the critic's explained variance stayed below 0, the greedy policy scored -0.33 at epoch 20).
RECIPES.add("lhopt-small", lambda: LHOPTRecipe(name="lhopt-small", controlled=("lr",)))
# lhopt-wide (campaigns/lhopt-wide/README.md): a strong reference (tuned AdamW, warm-up + cosine), episodes of
# 200-2,000 steps with 16-32 decisions whatever the length, MLPs (1-3 layers of 16-256), CNNs, char LMs and noisy
# quadratics on meta-train data, learning-rate head only (the curriculum of heads comes later), checkpoints chosen
# on meta-validation variants. Sized by measured episode cost (campaigns/lhopt-wide/README.md).
LHOPT_WIDE = LHOPTRecipe(
    name="lhopt-wide",
    families=(("noisy-quadratic", 1.0), ("mnist-mlp-wide", 2.0), ("mnist-cnn-wide", 2.0), ("char-lm-wide", 2.0)),
    inner_steps=(200, 2000),
    decisions=(16, 32),
    rollouts=16,
    epochs=2000,
    eval_every=5,
    eval_rollouts=8,
    controlled=("lr",),
    reference="tuned",
    length_buckets=(632,),  # two buckets, 200-631 and 632-2000 steps (sweeps at 200 and 632)
    valid_families=("valid/mnist-mlp-deep", "valid/mnist-cnn-6", "valid/char-lm-24", "valid/noisy-quadratic"),
    valid_steps=(300, 1000),
)
RECIPES.add("lhopt-wide", lambda: LHOPT_WIDE)
# lhopt-wider: lhopt-wide's mixture plus three more modalities of meta-train data (tabular MLPs, time-series GRUs,
# character LMs of three architectures on two corpora; issue 15, item 2: task families varied in modality),
# meta-validated on two more variants on meta-valid data; starts from the shipped lhopt-wide policy.
RECIPES.add(
    "lhopt-wider",
    lambda: dataclasses.replace(
        LHOPT_WIDE,
        name="lhopt-wider",
        families=(*LHOPT_WIDE.families, ("tiny-tabular", 1.5), ("tiny-series", 1.0), ("tiny-text", 1.5)),
        valid_families=(*LHOPT_WIDE.valid_families, "valid/tiny-tabular-doctor", "valid/tiny-text-spam"),
        eval_rollouts=12,
        init_from="lhopt-wide",
    ),
)
# The curriculum of heads (issue 15, item 4): lhopt-wide's policy with weight decay freed too, kept only if the
# meta-validation score improves on lhopt-wide's at equal compute (campaigns/lhopt-wide/README.md).
RECIPES.add(
    "lhopt-wide-wd",
    lambda: dataclasses.replace(
        LHOPT_WIDE, name="lhopt-wide-wd", controlled=("lr", "weight_decay"), init_from="lhopt-wide"
    ),
)
# The curriculum of heads on the current default (issue 15, item 4): lhopt-wider's recipe from its shipped epoch-285
# policy with the weight-decay head freed, kept only if its meta-validation score beats that policy's +0.044
# (campaigns/lhopt-wider-wd/README.md); lhopt-wider's own campaign had found no better policy in the 96 epochs after it.
RECIPES.add(
    "lhopt-wider-wd",
    lambda: dataclasses.replace(
        RECIPES.get("lhopt-wider"),
        name="lhopt-wider-wd",
        controlled=("lr", "weight_decay"),
        init_from="lhopt-wider-e285",
    ),
)
# Trained as deployed: lhopt-wider's recipe with loptim.LHOPT's default cooldown inside every policy run, from the
# default lhopt-wider-e285 (campaigns/lhopt-wider-cool/README.md): the policy has only ever seen runs it had to
# anneal itself, while the shell anneals the last 20% for it.
RECIPES.add(
    "lhopt-wider-cool",
    lambda: dataclasses.replace(
        RECIPES.get("lhopt-wider"), name="lhopt-wider-cool", cooldown=0.2, init_from="lhopt-wider-e285"
    ),
)
RECIPES.add(
    "tiny-lhopt-wide",
    lambda: dataclasses.replace(
        LHOPT_WIDE,
        name="tiny-lhopt-wide",
        families=(("noisy-quadratic", 1.0),),
        inner_steps=(16, 32),
        decisions=(4, 6),
        length_buckets=(24,),
        sweep_lrs=(1e-2, 1e-1),
        sweep_seeds=2,
        rollouts=2,
        workers=1,
        epochs=3,
        eval_every=2,
        eval_rollouts=2,
        valid_families=("valid/noisy-quadratic",),
        valid_steps=(20, 30),
        valid_decisions=4,
        hidden=16,
        ppo=PPOConfig(epochs=2, minibatch_trajectories=2),
    ),
)
RECIPES.add(
    "tiny-lhopt",
    lambda: LHOPTRecipe(
        name="tiny-lhopt",
        families=(("noisy-quadratic", 1.0),),
        inner_steps=(16, 24),
        decisions=(4, 8),
        rollouts=2,
        workers=1,
        epochs=3,
        eval_every=2,
        eval_rollouts=1,
        hidden=16,
        ppo=PPOConfig(epochs=2, minibatch_trajectories=2),
    ),
)
# The LSTM core (L2L) meta-trained by antithetic ES (Metz et al. 2019, Sec. 3) on the L2L quadratic: a new
# combination of parts, no new trainer code.
RECIPES.add(
    "lstm-es-quadratic",
    lambda: MetzRecipe(
        name="lstm-es-quadratic",
        family="quadratic",
        inner_steps=(100, 100),
        unrolls=8,
        estimator="es",
        objective="train",
        loss_clip=None,
        curriculum=TruncationCurriculum(start=20, end=20, grow_epochs=1, jitter=0.0),
        epochs=300,
        meta_lr=3e-3,
        core=LSTMConfig(),
    ),
)
RECIPES.add("mlp-generalist", lambda: GeneralistRecipe(name="mlp-generalist"))
# The oracle of docs/generalist.md (Next) found the gap to tuned Adam is step-size selection, and the schedule head
# sees only the run's progress: this adds the loss history (Celo's step-size network reads loss features),
# starting from the shipped mlp-generalist with the new weights at zero (it is that optimizer at first).
RECIPES.add(
    "mlp-generalist-loss",
    lambda: GeneralistRecipe(
        name="mlp-generalist-loss",
        core=MLPConfig(hidden=8, design="generalist", loss_features=True),
        init_from="mlp-generalist",
    ),
)
# Celo's second stage (Moudgil et al. 2025, two-stage meta-training): the per-coordinate network frozen, only
# the step-size head meta-trained: a 12-dimensional problem, where PES over all 286 meta-parameters barely moved
# the loss-feature weights (campaigns/mlp-generalist-loss/README.md). It starts as exactly the shipped
# mlp-generalist: it is mlp-generalist-loss with only the head perturbed.
RECIPES.add(
    "mlp-generalist-schedule",
    lambda: dataclasses.replace(
        RECIPES.get("mlp-generalist-loss"),
        name="mlp-generalist-schedule",
        perturbed=("w_schedule",),
        # 3e-3: a first start at 1e-2 took the doctor-contacts evaluation to +1.79 at outer step 200
        # (campaigns/mlp-generalist-schedule/log-aborted-lr1e-2.jsonl)
        meta_lr=3e-3,
    ),
)
# The scale-only design (docs/generalist.md, Scale-only design): the network's additive correction d dropped, so
# each coordinate moves the way Adam moves it, by a learned positive factor. The unbounded d is what blew up the
# shipped mlp-generalist on runs wider and longer than meta-training's (the dev set of benchmarks/generalist/
# devset.py, on meta-train and meta-valid data); it starts from the shipped weights, d's row ignored.
RECIPES.add(
    "mlp-generalist-scale",
    lambda: GeneralistRecipe(
        name="mlp-generalist-scale",
        core=MLPConfig(hidden=8, design="generalist", correction=False),
        init_from="mlp-generalist",
    ),
)
# The schedule prior (docs/generalist.md, Schedule prior): the scale-only design with a cosine decay of its nominal
# step over the run, since the learned schedule head stayed flat where tuned Adam anneals; it starts from the
# shipped mlp-generalist-scale, whose per-coordinate factors were learned without the decay.
RECIPES.add(
    "mlp-generalist-cosine",
    lambda: GeneralistRecipe(
        name="mlp-generalist-cosine",
        core=MLPConfig(hidden=8, design="generalist", correction=False, schedule_prior="cosine"),
        init_from="mlp-generalist-scale",
    ),
)
# The warm-up (docs/generalist.md, Warm-up): the cosine prior after a linear warm-up over the first 5% of the run,
# since Adam's first steps move every coordinate by the full learning rate and, on a ResNet of meta-train data
# (mnist-resnet, seed 3), killed every ReLU within 25 steps, the shipped cosine weights' and Adam's at 1e-2 alike;
# it starts from the shipped mlp-generalist-cosine, whose factors were learned without the warm-up.
RECIPES.add(
    "mlp-generalist-warmup",
    lambda: GeneralistRecipe(
        name="mlp-generalist-warmup",
        core=MLPConfig(hidden=8, design="generalist", correction=False, schedule_prior="cosine", warmup=0.05),
        init_from="mlp-generalist-cosine",
    ),
)
# The per-tensor scale input folded (docs/generalist.md, Per-tensor scale input): its learned response ran opposite
# to a tensor's scale and gave zero-initialized biases and 0.02-std transformer weights 40-55x the nominal step; it
# starts from the shipped mlp-generalist-fold (mlp-generalist-half with that input held at one log-RMS) and PES
# leaves the input's weights at zero. Its selection score adds a wider MLP, a longer GRU and a transformer on
# meta-valid data, where the shipped generalists' failures showed (the dev set, docs/generalist.md).
RECIPES.add(
    "mlp-generalist-fold",
    lambda: GeneralistRecipe(
        name="mlp-generalist-fold",
        core=MLPConfig(
            hidden=8, design="generalist", correction=False, schedule_prior="cosine", warmup=0.05, nominal_lr=5e-4
        ),
        init_from="mlp-generalist-fold",
        perturbed=("w1", "w1_time", "b1", "w2", "b2", "w3", "b3", "w_schedule"),
        eval_tasks=("spam-gru", "doctor-contacts-mlp", "doctor-contacts-mlp-wide", "spam-gru-long", "spam-char"),
    ),
)
# mlp-generalist-fold at a third of the outer step and a 100-step momentum: its first segment's meta-gradient was
# clipped at every step (norm 13-45 against 10) and the selection score drifted from -0.119 to -0.077 while the
# sampled meta-loss stayed flat, the signature of noise-dominated steps (campaigns/mlp-generalist-fold/README.md).
RECIPES.add(
    "mlp-generalist-fold-slow",
    lambda: dataclasses.replace(
        RECIPES.get("mlp-generalist-fold"), name="mlp-generalist-fold-slow", meta_lr=3e-4, meta_beta1=0.99
    ),
)
# mlp-generalist-fold with the late-weighted objective (PES.late = 2; docs/generalist.md, Late-weighted objective):
# the campaigns are selected, and the suite judges, by the final validation loss, while PES minimized the area under
# the whole run's curve, which pays as much for a fast start as for the end; in both fold segments the score drifted
# from the final-loss side while the meta-loss stayed flat. Same outer step as mlp-generalist-fold, so its first
# segment compares with that campaign's.
RECIPES.add(
    "mlp-generalist-fold-late",
    lambda: dataclasses.replace(RECIPES.get("mlp-generalist-fold"), name="mlp-generalist-fold-late", late=2.0),
)
# mlp-generalist-fold-late meta-trained on tasks shaped like its selection score's and the suite's (docs/generalist.md,
# Shaped mixture): the fold campaigns drifted away from the wide, long meta-valid tasks while the tiny mixture's
# meta-loss stayed flat; `wide-mixed` (wide MLPs, ResNets, GRU forecasters, 2-layer transformers, recommenders, all
# on meta-train data) takes 4 of the mixture's 7.25 weight. Same seed, outer step and objective as fold-late.
RECIPES.add(
    "mlp-generalist-shaped",
    lambda: dataclasses.replace(
        RECIPES.get("mlp-generalist-fold-late"),
        name="mlp-generalist-shaped",
        families=(
            ("tiny-mixed", 2.0),
            ("wide-mixed", 4.0),
            ("mnist-mix", 0.5),
            ("char-lm", 0.5),
            ("noisy-quadratic", 0.25),
        ),
    ),
)
# mlp-generalist-shaped with twice the PES slots per outer step (issue 16, "Not yet tried"): each meta-gradient
# averages 16 antithetic pairs instead of 8, so it carries less noise at the same outer step; the shaped campaign's
# score stayed between -0.109 and -0.116 (its start: -0.118) for 943 steps, as noise-dominated steps do. Half the
# outer steps per core-hour.
RECIPES.add(
    "mlp-generalist-slots",
    lambda: dataclasses.replace(RECIPES.get("mlp-generalist-shaped"), name="mlp-generalist-slots", slots=16),
)
# The ablation table of docs/generalist.md: each removes one fix, all on the same budget (`--max-minutes 60`, one
# core) and seed, beside the full design retrained on that budget (`generalist-ablation-control`).
ABLATION_RECIPES = {
    "generalist-ablation-control": {},
    "generalist-ablation-no-horizon": {"inner_steps": (25, 50)},  # runs as long as one truncation (25-50 steps)
    "generalist-ablation-no-normalization": {
        "core": MLPConfig(hidden=8, design="generalist", ablation="normalization")
    },
    "generalist-ablation-no-schedule": {"core": MLPConfig(hidden=8, design="generalist", ablation="schedule")},
    "generalist-ablation-no-augmentation": {"augment": 0.0},
}
for _name, _changes in ABLATION_RECIPES.items():
    RECIPES.add(_name, lambda name=_name, changes=_changes: GeneralistRecipe(name=name, **changes))
RECIPES.add(
    "tiny-generalist",
    lambda: GeneralistRecipe(
        name="tiny-generalist",
        meta_lr=3e-3,  # as when its golden campaign (tests/golden/campaign) was recorded
        families=(("noisy-quadratic", 1.0),),
        inner_steps=(12, 20),
        truncation=(4, 6),
        slots=2,
        epochs=6,
        eval_every=3,
        eval_tasks=("quadratic",),
    ),
)
