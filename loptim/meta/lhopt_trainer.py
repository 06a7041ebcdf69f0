"""PPO meta-training of LHOPT's policy (Almeida et al. 2021): collect episodes in parallel, one `ppo_update` per
epoch, atomic checkpoints after every epoch, exact resume, and the best greedy policy exported with its card.

Episodes (loptim.meta.lhopt_rollout) are pure functions of (recipe, policy, seed), with seeds derived from
(recipe seed, epoch, episode index), and the PPO minibatch order from (recipe seed, epoch): a resumed run repeats
the uninterrupted one bit for bit, whatever the number of workers (given the same torch thread count for the
update in the main process). Workers are spawned processes with one torch thread each; `workers=1` runs
in-process. The policy's input normalizer folds in an epoch's observations after that epoch's update, so the
update sees the statistics the episodes were collected with.

Under torchrun (loptim.meta.distributed) the episodes of an epoch are split across ranks and gathered, in seed
order, to every rank; every rank runs the same deterministic `ppo_update` (same torch thread count on every rank),
so all hold the same policy, and only rank 0 prints, checkpoints and exports. A machine's `workers` are shared by
its ranks.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from loptim.io import load_checkpoint, save_checkpoint
from loptim.meta import distributed as dist
from loptim.meta.lhopt_families import HELD_OUT_DATA, TRAIN_FAMILIES
from loptim.meta.lhopt_rollout import Episode, meta_valid_spec, run_episode
from loptim.meta.ppo import TrajectoryBatch, make_optimizer, ppo_update
from loptim.meta.recipes import LHOPTRecipe
from loptim.meta.trainer import EVAL_SEED_BASE, EpochLoop, derive_seed, git_commit
from loptim.optimizers.lhopt import ACTION_HEADS, HEAD_SIZES, OBS_DIM, ActorCritic, PolicyConfig, noop_bias

UPDATE_SALT = 0x51ED27  # the PPO minibatch order's seed part, distinct from every episode index
HELD_OUT_TASKS = ("fashion-cnn", "shakespeare-char", "movielens-gmf", "movielens-neumf")  # docs/design.md table
REFERENCE_RUNS = {
    "fixed": "initial hyperparameters held fixed",
    "tuned": "AdamW at a learning rate swept per family and length bucket, linear warm-up then cosine to 0",
}


def reward_definition(reference: str) -> str:
    """The reward, in words, for a recipe's `reference` ("fixed" or "tuned"), for the weights' card."""
    return (
        "return clip(log(L_ref / L_policy), -3, 3), gamma 1: final validation loss of a reference run (same task, "
        f"seed and batches, {REFERENCE_RUNS[reference]}) over the policy's; diverged = inf loss; paid out per "
        "decision by potential-based shaping on the paired window training-loss log-ratios (docs/lhopt.md)"
    )


def eval_seed(index: int) -> int:
    """Seeds of the fixed evaluation episodes (no training epoch draws them, `loptim bench` uses 0, 1, 2, ...)."""
    return EVAL_SEED_BASE + 7 * index


def policy_config(recipe: LHOPTRecipe) -> PolicyConfig:
    """The recipe's policy shape; heads it does not control are fixed at their no-op."""
    fixed = tuple(-1 if head.name in recipe.controlled else head.noop for head in ACTION_HEADS)
    return PolicyConfig(OBS_DIM, HEAD_SIZES, hidden=recipe.hidden, critic_extra_dim=1, fixed_choices=fixed)


def make_policy(recipe: LHOPTRecipe) -> ActorCritic:
    """The initial policy: near-uniform logits plus the recipe's `noop_bias` on each head's no-op, so that the
    greedy policy keeps the initial hyperparameters until trained while sampling still explores every choice; or,
    with `recipe.init_from`, those weights (the curriculum of heads: a policy trained with fewer heads controlled,
    whose other heads still hold their initial no-op bias, so it starts as that policy)."""
    policy = ActorCritic(policy_config(recipe), torch.Generator().manual_seed(recipe.seed), noop_bias(recipe.noop_bias))
    if recipe.init_from is not None:
        from loptim.optimizers.lhopt.shell import load_policy

        source = load_policy(recipe.init_from)
        if source.config.head_sizes != policy.config.head_sizes or source.config.hidden != policy.config.hidden:
            raise ValueError(f"cannot start recipe '{recipe.name}' from '{recipe.init_from}': another architecture")
        policy.load_state_dict(source.state_dict())
    return policy


def episodes_to_batch(episodes: list[Episode]) -> TrajectoryBatch:
    """Pad episodes to (B, T) with each decision's shaped reward; the last decision ends the episode (last value 0)."""
    count, length = len(episodes), max(1, max(e.decisions for e in episodes))
    heads = episodes[0].actions.shape[1]
    batch = TrajectoryBatch(
        obs=torch.zeros(count, length, episodes[0].obs.shape[1]),
        actions=torch.zeros(count, length, heads, dtype=torch.long),
        log_probs=torch.zeros(count, length),
        values=torch.zeros(count, length),
        rewards=torch.zeros(count, length),
        mask=torch.zeros(count, length, dtype=torch.bool),
        last_values=torch.zeros(count),
        critic_extra=torch.zeros(count, length, 1),
    )
    for row, episode in enumerate(episodes):
        k = episode.decisions
        batch.obs[row, :k], batch.actions[row, :k] = episode.obs, episode.actions
        batch.log_probs[row, :k], batch.values[row, :k] = episode.log_probs, episode.values
        batch.mask[row, :k] = True
        batch.rewards[row, :k] = episode.rewards.to(batch.rewards.dtype)
        batch.critic_extra[row, :k] = episode.critic_extra
    return batch


def meta_training_tasks(recipe: LHOPTRecipe) -> list[str]:
    """The card's list of what the policy was meta-trained on."""
    families = []
    for name, weight in recipe.families:
        families.append(f"{name} (weight {weight}; {TRAIN_FAMILIES[name] or 'registry defaults'})")
    (low, high), (fewest, most) = recipe.inner_steps, recipe.decisions
    return [*families, f"inner steps {low}-{high}, decisions {fewest}-{most}, randomized initial hparams, train split"]


def _init_worker() -> None:
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the main process handles it


EpisodeJob = tuple[LHOPTRecipe, dict[str, torch.Tensor], int, bool, float | None, dict[str, float] | None, int | None]


def _episode_job(job: EpisodeJob) -> Episode:
    """One episode; `valid_index` (not None) makes it meta-validation episode `valid_index` with seed `seed`."""
    recipe, policy_state, seed, greedy, reference, reference_lrs, valid_index = job
    policy = ActorCritic(policy_config(recipe))
    policy.load_state_dict(policy_state)
    spec = None if valid_index is None else meta_valid_spec(recipe, valid_index, seed)
    return run_episode(
        recipe, policy, seed, greedy=greedy, reference_loss=reference, reference_lrs=reference_lrs, spec=spec
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


class LHOPTTrainer(EpochLoop):
    """Meta-trains LHOPT's policy with PPO under an `LHOPTRecipe`; one epoch is one PPO iteration.

    Same protocol as `OuterTrainer` (the CLI drives both): `run`, `resume`, `export`, `checkpoint_path`, `epoch`,
    `best_score` (here the greedy policy's mean evaluation reward: higher is better) and `best_epoch`.
    """

    kind = "lhopt"
    eval_key = "eval_reward"
    higher_is_better = True
    checkpoint_every_epoch = True

    def __init__(self, recipe: LHOPTRecipe, out: Path) -> None:
        if not isinstance(recipe, LHOPTRecipe):
            raise TypeError(f"LHOPTTrainer needs an LHOPTRecipe, got {type(recipe).__name__}")
        self.code_commit = git_commit()  # the code this process loaded (the tree may change while it trains)
        self.recipe = recipe
        self.out = Path(out)
        self.policy = make_policy(recipe)
        self.optimizer = make_optimizer(self.policy, recipe.ppo)
        self.epoch = 0
        self.seconds = 0.0
        self.best: dict[str, torch.Tensor] | None = None
        self.best_score = -math.inf
        self.best_epoch = -1
        self.history: list[dict[str, float]] = []
        self.commands: list[str] = []
        self.eval_references: dict[int, float] = {}  # reference losses of the fixed evaluation episodes
        self.inner_steps = 0  # experience: inner steps of the policy's sampled training episodes
        self.reference_steps = 0  # inner steps of their reference runs (compute, not experience)
        self.compact_path: Path | None = None  # also write a compact checkpoint here at every save
        self.log_path = self.out / "log.jsonl"  # one JSON line per epoch (benchmarks/lhopt/campaign.py plots it)
        self.interrupted = False
        self._reference_lrs: dict[str, float] | None = None
        self._snapshot: dict[str, Any] | None = None  # the state at the last epoch boundary, for Ctrl-C/SIGTERM
        self._stopping = False
        self._pool: Any = None

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def reference_lrs(self) -> dict[str, float] | None:
        """The tuned reference's learning-rate table (read from the sweep cache or swept now), None for "fixed"."""
        if self.recipe.reference != "tuned":
            return None
        if self._reference_lrs is None:
            from loptim.meta.lhopt_sweep import reference_lrs

            log = print if dist.is_main() else None
            self._reference_lrs = dist.broadcast(reference_lrs(self.recipe, self.recipe.workers, log))
        return self._reference_lrs

    # ------------------------------------------------------------------------------------------------ episodes

    def collect(
        self,
        seeds: list[int],
        greedy: bool,
        references: list[float | None] | None = None,
        meta_valid: bool = False,
    ) -> list[Episode]:
        """Episodes of `seeds` under the current policy, in seed order: this rank runs its share of them (in
        workers when the recipe has more than one per rank) and receives the others' (collective). With
        `meta_valid`, episode i is meta-validation episode i (lhopt_rollout.meta_valid_spec) of seed seeds[i]."""
        state = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        references = references or [None] * len(seeds)
        table = self.reference_lrs()
        mine = dist.my_indices(len(seeds))
        jobs = [(self.recipe, state, seeds[i], greedy, references[i], table, i if meta_valid else None) for i in mine]
        workers = max(1, self.recipe.workers // dist.local_world_size())
        if workers == 1 or not jobs:
            return dist.gather_samples([_episode_job(job) for job in jobs])
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(workers, initializer=_init_worker)
        return dist.gather_samples(self._pool.map(_episode_job, jobs, chunksize=1))

    def close(self) -> None:
        """Stop the worker processes (a later `collect` starts new ones); on Ctrl-C/SIGTERM without waiting."""
        if self._pool is not None:
            if self._stopping:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None

    def train_epoch(self) -> dict[str, float]:
        """Collect `rollouts` sampled episodes, one PPO update, then fold their observations into the normalizer."""
        recipe = self.recipe
        seeds = [derive_seed(recipe.seed, self.epoch, index) for index in range(recipe.rollouts)]
        episodes = self.collect(seeds, greedy=False)
        batch = episodes_to_batch(episodes)
        stats: dict[str, float] = {}
        if bool(batch.mask.any()):
            generator = torch.Generator().manual_seed(derive_seed(recipe.seed, self.epoch, UPDATE_SALT))
            stats = ppo_update(self.policy, self.optimizer, batch, recipe.ppo, generator)
            self.policy.observe_inputs(batch.obs[batch.mask])
        rewards = [e.reward for e in episodes]
        self.inner_steps += sum(e.steps for e in episodes)
        self.reference_steps += sum(e.steps for e in episodes)
        record = {
            "epoch": self.epoch,
            "mean_reward": _mean(rewards),
            "reward_std": float(torch.tensor(rewards, dtype=torch.float64).std(unbiased=False)),
            "diverged_fraction": _mean([float(e.diverged) for e in episodes]),
            "mean_decisions": _mean([float(e.decisions) for e in episodes]),
            **dict.fromkeys(("approx_kl", "clip_fraction", "explained_variance"), math.nan),  # no update: NaN
            **stats,
            "inner_steps": self.inner_steps,
            "reference_steps": self.reference_steps,
        }
        for family, _ in recipe.families:
            record[f"reward/{family}"] = _mean([e.reward for e in episodes if e.family == family])
        return record

    def evaluate(self) -> float:
        """Mean reward of the greedy policy on the fixed evaluation episodes (their reference runs are cached):
        meta-validation episodes when the recipe names `valid_families`, else training-mixture episodes on seeds
        no training epoch draws."""
        seeds = [eval_seed(i) for i in range(self.recipe.eval_rollouts)]
        references = [self.eval_references.get(s) for s in seeds]
        episodes = self.collect(seeds, greedy=True, references=references, meta_valid=bool(self.recipe.valid_families))
        for seed, episode in zip(seeds, episodes):
            self.eval_references[seed] = episode.reference_loss
        return _mean([e.reward for e in episodes])

    # ------------------------------------------------------------------------------------- checkpoints, export

    def compact_state(self) -> dict[str, Any]:
        """What exact resume needs and nothing more (<= 1 MB for the campaign's git checkpoint): the policy (with
        its input normalizer), the PPO optimizer, the counters, the best policy and its score, and the global RNG
        (every random draw derives from (recipe seed, epoch, index), so the counters carry the trainer's own
        randomness). No history, episodes or cached references (recomputed identically)."""
        bookkeeping = {k: v for k, v in self.loop_state().items() if k not in ("history", "commands")}
        return {
            "format": "lhopt-compact-1",
            **bookkeeping,
            "inner_steps": self.inner_steps,
            "reference_steps": self.reference_steps,
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.random.get_rng_state(),
        }

    def state(self) -> dict[str, Any]:
        """The full checkpoint: the compact state, the history and commands, and the cached reference losses."""
        return {**self.loop_state(), **self.compact_state(), "format": "lhopt-full-1",
                "eval_references": self.eval_references}  # fmt: skip

    def save(self) -> None:
        """Write the checkpoint (and the compact one, if asked) atomically from rank 0 (every rank holds the same
        state), after appending this run's new epochs to the JSONL log."""
        self._snapshot = copy.deepcopy(self.state())
        if dist.is_main():
            self._write(self._snapshot)

    def _write(self, state: dict[str, Any]) -> None:
        logged = self._logged_epochs()
        with self.log_path.open("a") as handle:
            for record in state["history"]:
                if record["epoch"] >= logged:
                    handle.write(json.dumps(record) + "\n")
        save_checkpoint(self.checkpoint_path, state)
        if self.compact_path is not None:
            compact = {k: v for k, v in state.items() if k not in ("history", "commands", "eval_references")}
            save_checkpoint(self.compact_path, {**compact, "format": "lhopt-compact-1"})

    def _logged_epochs(self) -> int:
        """How many epochs the JSONL log holds (0 when absent)."""
        if not self.log_path.exists():
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            return 0
        lines = [line for line in self.log_path.read_text().splitlines() if line.strip()]
        return json.loads(lines[-1])["epoch"] + 1 if lines else 0

    def resume(self, path: Path | None = None) -> None:
        """Continue exactly from `checkpoint_path`, or from `path` (a full or compact checkpoint): policy,
        normalizer buffers, PPO Adam state, counters, best, RNG. The JSONL log keeps only the epochs before the
        resumed one (an interrupted run may have logged one more)."""
        path = Path(path) if path is not None else self.checkpoint_path
        ckpt = dist.broadcast(load_checkpoint(path) if dist.is_main() else None)
        self.load_loop_state(ckpt, path)
        self.policy.load_state_dict(ckpt["policy"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.eval_references = dict(ckpt.get("eval_references", {}))
        self.inner_steps, self.reference_steps = ckpt.get("inner_steps", 0), ckpt.get("reference_steps", 0)
        if "rng" in ckpt:
            torch.random.set_rng_state(ckpt["rng"])
        if dist.is_main() and self.log_path.exists():
            lines = [line for line in self.log_path.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line)["epoch"] < self.epoch]
            self.log_path.write_text("".join(line + "\n" for line in kept))

    def run(self, *args: Any, **kwargs: Any) -> bool:
        """EpochLoop.run, stopped cleanly by Ctrl-C or SIGTERM: the epoch in progress is abandoned, the workers
        are terminated, and the state at the last epoch boundary is written to the checkpoint (and the compact
        one) before returning False (`interrupted` is set)."""
        self._snapshot = copy.deepcopy(self.state())
        handlers: dict[int, Any] = {}

        def stop(signum: int, frame: Any) -> None:
            self._stopping = True
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return super().run(*args, **kwargs)
        except KeyboardInterrupt:
            self._stopping, self.interrupted = True, True
            self.close()
            if dist.is_main():
                self._write(self._snapshot)
                print(f"interrupted: saved the state after epoch {self._snapshot['epoch']} to {self.checkpoint_path}")
            return False
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._stopping = False

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.policy.state_dict()

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{record['mean_reward']:+.3f}", "kl": f"{record['approx_kl']:.4f}",
                "best": f"{self.best_score:+.3f}"}  # fmt: skip

    def export(self, command: str | None = None) -> Path:
        """Write the best policy so far (the current one before any evaluation) as best.safetensors + JSON card."""
        policy = ActorCritic(policy_config(self.recipe))
        policy.load_state_dict(self.best or self.policy.state_dict())
        recipe = self.recipe
        fields = {
            "optimizer": "lhopt (Almeida et al. 2021)",
            "meta_trained_on": meta_training_tasks(recipe),
            "held_out": {"tasks": list(HELD_OUT_TASKS), "data_never_sampled": list(HELD_OUT_DATA)},
            "reward": reward_definition(recipe.reference),
            "selection_score": {"mean_greedy_reward_eval_episodes": self.best_score, "episodes": recipe.eval_rollouts},
        }
        return self.write_weights(self.kind, policy, asdict(policy_config(recipe)), fields, command)
