"""LHOPT meta-training on a tiny recipe: PPO epochs run and log, resume is bit for bit, the exported policy loads
through `loptim.LHOPT`, the reward has its hand-computed values, a no-op policy scores exactly 0, and the task
mixture never draws a held-out data set."""

import dataclasses
import json
import math

import pytest
import torch

import loptim
from loptim.cli import main
from loptim.errors import SuiteDataError
from loptim.meta.lhopt_families import HELD_OUT_DATA, TRAIN_FAMILIES, task_dataset
from loptim.meta.lhopt_rollout import (
    cooldown_schedule,
    draw_episode,
    inner_run,
    potential,
    relative_reward,
    run_episode,
    shaped_rewards,
)
from loptim.meta.lhopt_trainer import LHOPTTrainer, episodes_to_batch, make_policy
from loptim.meta.recipes import RECIPES, LHOPTRecipe
from loptim.optimizers.lhopt.actions import ACTION_HEADS, HEAD_SIZES, NOOP_ACTION
from loptim.optimizers.lhopt.policy import choose
from loptim.optimizers.registry import learned_factory
from loptim.tasks import get_task


def _tiny(**changes):
    return dataclasses.replace(RECIPES.get("tiny-lhopt"), **changes)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The tiny recipe run start to finish through the CLI, one torch thread."""
    out = tmp_path_factory.mktemp("whole")
    threads = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "meta-train", "lhopt", "--recipe", "tiny-lhopt", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _checkpoint(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_tiny_recipe_runs_logs_and_exports(whole_run):
    ckpt = _checkpoint(whole_run)
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3
    for record in ckpt["history"]:
        for key in ("mean_reward", "approx_kl", "clip_fraction", "explained_variance", "entropy"):
            assert math.isfinite(record[key]), key
        assert record["approx_kl"] >= 0 and 0 <= record["clip_fraction"] <= 1
    assert [r["epoch"] for r in ckpt["history"]] == [0, 1, 2]
    assert "eval_reward" in ckpt["history"][1] and "eval_reward" in ckpt["history"][2]
    card = json.loads((whole_run / "best.json").read_text())
    assert card["recipe"]["name"] == "tiny-lhopt" and card["seed"] == 0 and card["best_epoch"] == ckpt["best_epoch"]
    assert card["command"].startswith("loptim --threads 1 meta-train lhopt --recipe tiny-lhopt")
    assert card["finished"] and "git_commit" in card and "log(L_ref / L_policy)" in card["reward"]
    assert "held fixed" in card["reward"]  # this recipe's reference run keeps the initial hyperparameters
    initial = make_policy(RECIPES.get("tiny-lhopt")).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in ckpt["policy"].items())  # PPO changed the policy
    assert float(ckpt["policy"]["input_count"]) > 0  # the normalizer saw the observations


def test_the_card_names_the_strong_reference_of_a_tuned_recipe():
    from loptim.meta.lhopt_trainer import reward_definition

    assert "warm-up then cosine" in reward_definition("tuned") and "held fixed" not in reward_definition("tuned")


def test_resume_after_interruption_is_bit_for_bit(whole_run, tmp_path):
    first = LHOPTTrainer(_tiny(), tmp_path)
    assert not first.run(progress=False, stop_at_epoch=2)
    second = LHOPTTrainer(_tiny(), tmp_path)
    second.resume()
    assert second.epoch == 2 and second.eval_references == first.eval_references
    assert second.run(progress=False)
    whole, split = _checkpoint(whole_run), _checkpoint(tmp_path)
    for k, v in whole["policy"].items():
        assert torch.equal(v, split["policy"][k]), k
    for k, state in whole["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, split["optimizer"]["state"][k][name]), (k, name)
    keys = ("mean_reward", "approx_kl", "clip_fraction", "explained_variance", "eval_reward")
    assert [[r.get(k) for k in keys] for r in whole["history"]] == [[r.get(k) for k in keys] for r in split["history"]]
    assert len(split["commands"]) == 2  # the interrupted run and its resumption


def test_exported_weights_load_through_lhopt(whole_run):
    path = str(whole_run / "best.safetensors")
    best = _checkpoint(whole_run)["best"]
    weight = torch.zeros(5, 3, requires_grad=True)
    inputs, targets = torch.randn(32, 5, generator=torch.Generator().manual_seed(1)), torch.ones(32, 3)
    for make in (
        lambda params: loptim.LHOPT(params, weights=path, total_steps=40),
        lambda params: learned_factory("lhopt", weights=path)(params, total_steps=40),
    ):
        opt = make([weight])
        for k, v in opt.policy.state_dict().items():
            assert torch.equal(v, best[k]), k
        for _ in range(40):
            loss = ((inputs @ weight - targets) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step(loss=loss)
        assert opt.last_observation is not None and torch.isfinite(weight).all()


def test_reward_matches_hand_computed_values():
    assert relative_reward(2.0, 1.0) == pytest.approx(math.log(2.0), abs=1e-15)
    assert relative_reward(1.5, 3.0) == pytest.approx(-math.log(2.0), abs=1e-15)
    assert relative_reward(0.7, 0.7) == 0.0
    assert relative_reward(1.0, 1e-5) == 3.0 and relative_reward(1e-5, 1.0) == -3.0  # log 1e5 = 11.5, clipped
    assert relative_reward(1.0, 0.5, clip=0.5) == 0.5
    assert relative_reward(1.0, math.inf) == -3.0 and relative_reward(1.0, math.nan) == -3.0  # policy diverged
    assert relative_reward(math.nan, 1.0) == 3.0  # only the reference diverged
    assert relative_reward(math.inf, math.nan) == 0.0 and relative_reward(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        relative_reward(-1.0, 1.0)


def test_shaped_rewards_match_hand_computed_values_and_sum_to_the_return():
    phi = [potential(ref, pol) for ref, pol in zip([2.0, 2.0, 1.0], [2.0, 1.0, 2.0])]
    assert phi == pytest.approx([0.0, math.log(2.0), -math.log(2.0)], abs=1e-15)
    rewards = shaped_rewards(phi, reward=0.25)
    expected = [math.log(2.0), -2 * math.log(2.0), 0.25 + math.log(2.0)]
    assert rewards == pytest.approx(expected, abs=1e-15) and sum(rewards) == pytest.approx(0.25, abs=1e-15)
    diverged = [potential(1.0, 1.0), potential(1.0, math.inf)]  # diverged: phi = -3
    assert shaped_rewards(diverged, reward=-3.0) == [-3.0, 0.0]
    assert shaped_rewards([0.0, 0.0, 0.0], reward=0.5) == [0.0, 0.0, 0.5]  # no reference: all at the end
    assert shaped_rewards([], reward=1.0) == []


def test_shaped_rewards_of_an_episode_sum_to_its_return():
    recipe, policy = _tiny(), make_policy(_tiny())
    episodes = [run_episode(recipe, policy, seed) for seed in (3, 4)]
    batch = episodes_to_batch(episodes)
    for row, episode in enumerate(episodes):
        k = episode.decisions
        assert k >= 3 and batch.mask[row].sum() == k and episode.rewards.shape == (k,)
        # phi_0 = 0: the first window is trained before any decision, identically in both runs
        assert float(episode.rewards.sum()) == pytest.approx(episode.reward, abs=1e-9)
        assert torch.equal(batch.rewards[row, :k], episode.rewards.float()) and not batch.rewards[row, k:].any()
    assert any(bool(e.rewards[:-1].ne(0).any()) for e in episodes)  # credit arrives before the end
    for row, episode in enumerate(episodes):  # the critic's privileged input is the potential phi_k: phi_0 = 0
        phi = episode.critic_extra[:, 0].double()
        assert phi[0] == 0.0
        torch.testing.assert_close(phi[1:] - phi[:-1], episode.rewards[:-1], rtol=0, atol=1e-6)
        assert torch.equal(batch.critic_extra[row, : episode.decisions], episode.critic_extra)  # r_k = dphi
    assert not torch.equal(episodes[0].obs[0], episodes[1].obs[0])
    again = run_episode(recipe, policy, 3)
    assert torch.equal(again.obs, episodes[0].obs) and torch.equal(again.actions, episodes[0].actions)


def test_a_recipe_with_a_cooldown_runs_its_policy_under_it_and_its_reference_without():
    # LHOPTRecipe.cooldown trains as loptim.LHOPT deploys: the policy's run (only) under the shell's cooldown.
    recipe, policy = _tiny(cooldown=0.3), make_policy(_tiny())
    cooled, plain = run_episode(recipe, policy, 3, greedy=True), run_episode(_tiny(), policy, 3, greedy=True)
    spec = draw_episode(recipe.families, recipe.inner_steps, recipe.decisions, 3)
    valid = (recipe.valid_batches, recipe.observe_valid_batches)
    direct = inner_run(spec, recipe.inner, *valid, policy, lr_schedule=cooldown_schedule(spec.steps, 0.3))
    assert cooled.final_loss == direct.final_loss and cooled.reference_loss == plain.reference_loss
    assert cooled.final_loss != plain.final_loss
    with pytest.raises(ValueError, match="cooldown"):
        _tiny(cooldown=1.0)


def _fixed_choice_policy(recipe, action):
    """A policy whose greedy choice is always `action` (one index per head)."""
    policy = make_policy(recipe)
    bias = torch.cat([10.0 * torch.nn.functional.one_hot(torch.tensor(i), size) for i, size in zip(action, HEAD_SIZES)])
    with torch.no_grad():
        policy.actor.weight.zero_()
        policy.actor.bias.copy_(bias.float())
    return policy


def test_a_no_op_policy_scores_exactly_zero_and_another_does_not():
    recipe = _tiny(inner_steps=(40, 40))
    noop = run_episode(recipe, _fixed_choice_policy(recipe, NOOP_ACTION), 5, greedy=True)
    assert noop.decisions >= 3 and noop.final_loss == noop.reference_loss and noop.reward == 0.0
    assert not noop.rewards.any()
    faster = list(NOOP_ACTION)
    faster[[h.name for h in ACTION_HEADS].index("lr")] = HEAD_SIZES[0] - 1  # lr x2 at every decision
    moved = run_episode(recipe, _fixed_choice_policy(recipe, faster), 5, greedy=True)
    assert moved.reference_loss == noop.reference_loss and moved.final_loss != noop.final_loss
    assert moved.reward == pytest.approx(math.log(moved.reference_loss / moved.final_loss), abs=1e-12)


def test_the_mixture_never_draws_held_out_data():
    recipe = RECIPES.get("lhopt-small")
    seen, datasets = set(), set()
    for seed in range(160):
        spec = draw_episode(recipe.families, recipe.inner_steps, recipe.decisions, seed)
        seen.add(spec.family)
        datasets.add(task_dataset(spec.task))
        low, high = recipe.inner_steps
        assert low <= spec.steps <= high and 1 <= spec.decisions <= min(64, spec.steps // 2)
        assert spec.interval >= 2
    assert seen == {name for name, _ in recipe.families} <= set(TRAIN_FAMILIES)
    assert datasets == {"synthetic", "mnist", "moby-dick"} and not datasets & set(HELD_OUT_DATA)
    assert {task_dataset(get_task(name)) for name in ("fashion-cnn", "shakespeare-char")} <= set(HELD_OUT_DATA)


def test_held_out_families_and_bad_recipes_are_refused(monkeypatch):
    monkeypatch.setitem(TRAIN_FAMILIES, "mnist-mlp", {"dataset": "fashion-mnist"})
    with pytest.raises(SuiteDataError, match="fashion-mnist"):
        draw_episode((("mnist-mlp", 1.0),), (10, 20), (4, 8), 0)
    with pytest.raises(ValueError, match="no LHOPT training family 'fashion-cnn'"):
        LHOPTRecipe(name="bad", families=(("fashion-cnn", 1.0),))
    with pytest.raises(ValueError, match="decisions"):
        LHOPTRecipe(name="bad", decisions=(0, 8))
    with pytest.raises(TypeError, match="LHOPTRecipe"):
        LHOPTTrainer(RECIPES.get("tiny-quadratic"), "unused")


def test_cli_refuses_another_optimizers_recipe(tmp_path, capsys):
    assert main(["meta-train", "lhopt", "--recipe", "tiny-quadratic", "--out", str(tmp_path)]) == 2
    assert "tiny-lhopt" in capsys.readouterr().err
    assert main(["meta-train", "lstm", "--recipe", "tiny-quadratic", "--out", str(tmp_path), "--workers", "2"]) == 2
    assert "--workers applies to LHOPT" in capsys.readouterr().err


def test_worker_processes_give_the_in_process_episodes(tmp_path):
    seeds = [11, 12, 13]
    parallel = LHOPTTrainer(_tiny(workers=2), tmp_path)
    try:
        in_workers = parallel.collect(seeds, greedy=False)
    finally:
        parallel.close()
    in_process = LHOPTTrainer(_tiny(), tmp_path).collect(seeds, greedy=False)
    for a, b in zip(in_workers, in_process):
        assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions) and a.reward == b.reward


def test_a_curriculum_recipe_starts_from_the_earlier_policy_with_the_freed_head_at_its_no_op():
    """lhopt-wide-wd frees the weight-decay head of lhopt-wide's policy: the same weights, so the same greedy
    learning-rate choices, and the freed head's greedy choice is its no-op (its initial bias never trained)."""
    recipe = RECIPES.get("lhopt-wide-wd")
    policy, source = make_policy(recipe), loptim.optimizers.lhopt.shell.load_policy("lhopt-wide")
    for k, v in source.state_dict().items():
        assert torch.equal(policy.state_dict()[k], v), k
    assert source.config.fixed_choices != policy.config.fixed_choices
    wd = [head.name for head in ACTION_HEADS].index("weight_decay")
    assert policy.config.fixed_choices[wd] == -1 and source.config.fixed_choices[wd] == ACTION_HEADS[wd].noop
    obs = torch.randn(3, 5, policy.config.obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = policy.sequence(obs, policy.initial_state(3))
        theirs, _ = source.sequence(obs, source.initial_state(3))
    assert torch.equal(choose(ours, HEAD_SIZES), choose(theirs, HEAD_SIZES))
    with pytest.raises(ValueError, match="another architecture"):
        make_policy(dataclasses.replace(recipe, hidden=32))
