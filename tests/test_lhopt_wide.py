"""lhopt-wide (issue 15): the strong reference is textbook AdamW with warm-up and cosine decay at a swept learning
rate, the sweep is cached and reused, meta-validation variants are never drawn in training, an episode runs end
to end, the compact checkpoint resumes exactly and stays under 1 MB, SIGTERM checkpoints, and the log has its
fields."""

import dataclasses
import json
import math
import os
import signal

import pytest
import torch

from loptim.cli import main
from loptim.meta import lhopt_sweep
from loptim.meta.lhopt_families import TRAIN_FAMILIES
from loptim.meta.lhopt_reference import REFERENCE_HPARAMS, length_bucket, warmup_cosine
from loptim.meta.lhopt_rollout import EpisodeSpec, draw_episode, meta_valid_spec, reference_run, run_episode
from loptim.meta.lhopt_trainer import LHOPTTrainer, make_policy
from loptim.meta.recipes import RECIPES
from loptim.tasks.quadratic import QuadraticConfig, QuadraticTask

LOG_FIELDS = ("mean_reward", "explained_variance", "approx_kl", "entropy", "inner_steps", "seconds")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    """A private $LOPTIM_CACHE shared by this module's tests (the tiny sweep runs once)."""
    monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path_factory.getbasetemp() / "lhopt-wide-cache"))


def _tiny(**changes):
    return dataclasses.replace(RECIPES.get("tiny-lhopt-wide"), **changes)


def test_warmup_cosine_has_its_known_values():
    # 101 steps: warm-up over round(5.05) = 5 steps, then cosine over the remaining 96.
    assert [warmup_cosine(s, 101) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0], abs=1e-15)
    assert warmup_cosine(5, 101) == 1.0
    assert warmup_cosine(53, 101) == pytest.approx(0.5, abs=1e-15)  # halfway through the decay
    assert warmup_cosine(100, 101) == pytest.approx(0.5 * (1 + math.cos(math.pi * 95 / 96)), abs=1e-15)
    assert warmup_cosine(0, 10, warmup_fraction=0.0) == 1.0  # at least one warm-up step: 1/1
    assert [length_bucket(s, (632,)) for s in (200, 631, 632, 2000)] == [0, 0, 1, 1]


def test_the_reference_run_is_torch_adamw_with_warmup_and_cosine():
    """The tuned reference on a quadratic equals torch.optim.AdamW (defaults) under LambdaLR(warmup_cosine)."""
    recipe = _tiny()
    task = QuadraticTask(QuadraticConfig(dim=4, num_functions=8, function_seed=3, noise_std=1.0), "q")
    steps = 30
    spec = EpisodeSpec(7, "noisy-quadratic", task, steps, 5, REFERENCE_HPARAMS)
    lr = 0.05
    ours = reference_run(recipe, spec, {"noisy-quadratic/1": lr})  # 30 steps >= the tiny recipe's edge 24
    theta = task.init(torch.Generator().manual_seed(7))["theta"].clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([theta], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps))
    from loptim.meta.lhopt_rollout import BATCH_SALT, valid_loss, valid_set

    batches = task.batches("train", torch.Generator().manual_seed(7 ^ BATCH_SALT))
    for _ in range(steps):
        loss = task.loss({"theta": theta}, next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    expected = valid_loss(task, {"theta": theta.detach()}, valid_set(task, 7, recipe.valid_batches))
    assert ours.final_loss == pytest.approx(expected, rel=1e-5)
    with pytest.raises(KeyError, match="lhopt-reference"):
        reference_run(recipe, spec, {})


def test_the_sweep_is_cached_and_reused(monkeypatch):
    recipe = _tiny()
    table = lhopt_sweep.reference_lrs(recipe)
    assert set(table) == {"noisy-quadratic/0", "noisy-quadratic/1"}
    key = lhopt_sweep.sweep_key(recipe, "noisy-quadratic", 0)
    record = json.loads(lhopt_sweep.sweep_path(key).read_text())
    assert record["key"] == key and record["lr"] == table["noisy-quadratic/0"]
    assert record["lrs"][: len(recipe.sweep_lrs)] == pytest.approx(recipe.sweep_lrs)  # extended upwards at most
    assert len(record["lrs"]) <= len(recipe.sweep_lrs) + lhopt_sweep.EXTEND
    assert record["lr"] == record["lrs"][min(range(len(record["lrs"])), key=record["mean_log_valid_loss"].__getitem__)]

    def refuse(job):
        raise AssertionError("the cached sweep ran again")

    monkeypatch.setattr(lhopt_sweep, "sweep_run", refuse)
    assert lhopt_sweep.reference_lrs(recipe) == table
    other = lhopt_sweep.sweep_key(dataclasses.replace(recipe, sweep_seeds=3), "noisy-quadratic", 0)
    assert lhopt_sweep.sweep_path(other) != lhopt_sweep.sweep_path(key)  # another setting, another cache entry
    with pytest.raises(AssertionError, match="ran again"):
        lhopt_sweep.reference_lrs(dataclasses.replace(recipe, sweep_seeds=3))


def test_meta_validation_variants_are_never_drawn_in_training():
    recipe = RECIPES.get("lhopt-wide")
    signature = lambda task: json.dumps(dataclasses.asdict(task.config), sort_keys=True)  # noqa: E731
    trained = set()
    for seed in range(300):
        spec = draw_episode(recipe.families, recipe.inner_steps, recipe.decisions, seed)
        assert recipe.inner_steps[0] <= spec.steps <= recipe.inner_steps[1] and 16 <= spec.decisions <= 32
        if spec.family != "noisy-quadratic":
            trained.add(signature(spec.task))
    for index in range(recipe.eval_rollouts):
        spec = meta_valid_spec(recipe, index, 10_000_000 + 7 * index)
        assert spec.steps in recipe.valid_steps and spec.decisions == 32
        if spec.family != "valid/noisy-quadratic":
            assert signature(spec.task) not in trained
    assert all(name in TRAIN_FAMILIES for name, _ in recipe.families)


def test_a_tiny_wide_episode_runs_end_to_end():
    recipe = _tiny()
    table = lhopt_sweep.reference_lrs(recipe)
    episode = run_episode(recipe, make_policy(recipe), 3, reference_lrs=table)
    assert episode.decisions >= 3 and math.isfinite(episode.reward) and episode.reward != 0.0
    # Shaped rewards telescope to R - phi_0 (phi_0 need not be 0 against a different reference run).
    assert float(episode.rewards.sum()) == pytest.approx(episode.reward - float(episode.critic_extra[0, 0]), abs=1e-6)


def test_cli_run_logs_every_field_and_resumes_exactly_from_the_compact_checkpoint(tmp_path):
    whole, first, second = tmp_path / "whole", tmp_path / "first", tmp_path / "second"
    compact = tmp_path / "compact.pt"
    assert main(["--threads", "1", "meta-train", "lhopt", "--recipe", "tiny-lhopt-wide", "--out", str(whole)]) == 0
    records = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for record in records:
        assert all(math.isfinite(record[field]) for field in LOG_FIELDS), record
    assert "eval_reward" in records[1] and records[2]["inner_steps"] > records[0]["inner_steps"] > 0

    interrupted = LHOPTTrainer(_tiny(), first)
    interrupted.compact_path = compact
    assert not interrupted.run(progress=False, stop_at_epoch=2)
    assert compact.stat().st_size < 1_000_000
    args = ["--threads", "1", "meta-train", "lhopt", "--recipe", "tiny-lhopt-wide", "--out", str(second)]
    assert main([*args, "--resume-from", str(compact)]) == 0
    a, b = (torch.load(out / "checkpoint.pt", weights_only=True) for out in (whole, second))
    assert a["epoch"] == b["epoch"] == 3 and a["inner_steps"] == b["inner_steps"]
    for name, value in a["policy"].items():
        assert torch.equal(value, b["policy"][name]), name
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    resumed = [json.loads(line) for line in (second / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [2] and resumed[0]["mean_reward"] == records[2]["mean_reward"]


def test_the_wide_recipes_compact_checkpoint_fits_in_a_megabyte(tmp_path):
    trainer = LHOPTTrainer(RECIPES.get("lhopt-wide"), tmp_path)
    trainer.best = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    for parameter in trainer.policy.parameters():  # fill the Adam state as a real update would
        parameter.grad = torch.ones_like(parameter)
    trainer.optimizer.step()
    trainer.compact_path = tmp_path / "compact.pt"
    trainer.save()
    assert trainer.compact_path.stat().st_size < 1_000_000


def test_sigterm_saves_the_last_finished_epoch_and_stops(tmp_path):
    trainer = LHOPTTrainer(_tiny(), tmp_path)
    trainer.compact_path = tmp_path / "compact.pt"
    original = trainer.train_epoch

    def train_then_terminate():
        record = original()
        if trainer.epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the second epoch, before its update counts
        return record

    trainer.train_epoch = train_then_terminate
    assert not trainer.run(progress=False) and trainer.interrupted
    for path in (tmp_path / "checkpoint.pt", trainer.compact_path):
        assert torch.load(path, weights_only=True)["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_sweep_extends_past_a_winning_edge_and_not_otherwise(monkeypatch):
    key = {"lrs": [1e-3, 1e-2, 1e-1], "seeds": 2, "extend": 2}
    monkeypatch.setattr(lhopt_sweep, "sweep_run", lambda job: -math.log(job[1]))  # larger is always better
    lrs, scores = lhopt_sweep.sweep_family(key)
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0]) and scores == pytest.approx([-math.log(x) for x in lrs])
    monkeypatch.setattr(lhopt_sweep, "sweep_run", lambda job: math.log(job[1]))  # smaller is always better
    assert lhopt_sweep.sweep_family(key)[0] == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    monkeypatch.setattr(lhopt_sweep, "sweep_run", lambda job: abs(math.log10(job[1]) + 2))  # best at 1e-2
    assert lhopt_sweep.sweep_family(key)[0] == key["lrs"]
