"""The generalist design of the MLP optimizer: Adam at initialization, reparameterized tasks, its meta-trainer's
compact campaign checkpoint."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import loptim
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer, warm_start
from loptim.optimizers import mlp_generalist as generalist
from loptim.optimizers.mlp import MLPConfig, MLPOptimizerNet, generalist_config
from loptim.optimizers.step_inputs import MissingLossError
from loptim.pretrained import load_learned, save_learned
from loptim.tasks import get_task
from loptim.tasks.augment import ReparameterizedTask
from loptim.tasks.partition import part_of


def test_an_untrained_generalist_is_adam_at_its_default_learning_rate(tmp_path):
    """Output layer and schedule at zero: the update is exactly the nominal Adam step (lr 1e-3, bias-corrected)."""
    path = tmp_path / "g.safetensors"
    config = generalist_config()
    save_learned(path, "mlp", MLPOptimizerNet(config, torch.Generator().manual_seed(1)), vars(config), {})
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(7, 5, generator=g), torch.randn(5, generator=g)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    opt, adam = loptim.MLPOptimizer(ours, weights=str(path), total_steps=30), torch.optim.Adam(theirs, lr=1e-3)
    for _ in range(30):
        grads = [torch.randn(t.shape, generator=g) for t in start]
        for p, q, grad in zip(ours, theirs, grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        adam.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_the_schedule_head_scales_the_whole_step():
    net = MLPOptimizerNet(generalist_config(), torch.Generator().manual_seed(0))
    meta = {k: v.detach().clone() for k, v in net.meta_params().items()}
    grad, param = torch.randn(20, generator=torch.Generator().manual_seed(1)), torch.randn(20)
    base, _ = net.step_flat(meta, net.zero_state(20), grad, param, [20], step=5, total_steps=10)
    meta["w_schedule"][1] = 2.0  # the progress feature f = step / total_steps = 0.5: log-step + 1
    scaled, _ = net.step_flat(meta, net.zero_state(20), grad, param, [20], step=5, total_steps=10)
    torch.testing.assert_close(scaled, base * torch.e)


def test_a_reparameterized_task_has_the_same_losses_and_scaled_gradients():
    task = get_task("quadratic")
    scales = {k: 10.0 ** (i - 1) for i, k in enumerate(task.init(torch.Generator().manual_seed(0)))}
    wrapped = ReparameterizedTask(task, scales)
    params = wrapped.init(torch.Generator().manual_seed(3))
    original = task.init(torch.Generator().manual_seed(3))
    batch = next(task.batches("train", torch.Generator().manual_seed(4)))
    for k in params:
        torch.testing.assert_close(params[k], original[k] * scales[k])
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    plain = {k: v.clone().requires_grad_() for k, v in original.items()}
    loss, reference = wrapped.loss(leaves, batch), task.loss(plain, batch)
    torch.testing.assert_close(loss, reference)
    loss.backward()
    reference.backward()
    for k in leaves:
        torch.testing.assert_close(leaves[k].grad, plain[k].grad / scales[k])


def test_campaign_checkpoint_is_compact_logged_and_resumable(tmp_path):
    torch.set_num_threads(1)
    recipe = RECIPES.get("tiny-generalist")
    trainer = MetaTrainer(recipe, tmp_path / "run", campaign=tmp_path / "campaign")
    trainer.run(progress=False, stop_at_epoch=4, command="test")
    compact = tmp_path / "campaign" / "checkpoint.pt"
    assert compact.stat().st_size < 1_000_000
    log = (tmp_path / "campaign" / "log.jsonl").read_text().splitlines()
    assert [line.count('"meta_loss"') for line in log] == [1, 1, 1, 0, 1]  # 4 epochs and the evaluation after 3
    assert '"eval_score"' in log[3] and '"experience"' in log[-1]
    fresh = MetaTrainer(recipe, tmp_path / "elsewhere", campaign=tmp_path / "campaign")
    fresh.resume(compact)  # a new machine: only the committed campaign folder
    assert fresh.epoch == 4 and fresh.experience == trainer.experience
    for k, v in trainer.meta.items():
        assert torch.equal(v, fresh.meta[k])
    fresh.run(progress=False, command="test")
    log = (tmp_path / "campaign" / "log.jsonl").read_text().splitlines()
    assert fresh.epoch == recipe.epochs and sum('"meta_loss"' in line for line in log) == 6


def test_generalist_recipe_meta_trains_on_augmented_mixtures():
    recipe = replace(RECIPES.get("mlp-generalist"), slots=1)
    trainer = MetaTrainer(recipe, "unused")
    tasks = [trainer.tasks.family.sample(torch.Generator().manual_seed(seed)) for seed in range(40)]
    assert any(isinstance(t, ReparameterizedTask) for t in tasks)
    assert any(not isinstance(t, ReparameterizedTask) for t in tasks)
    assert {part_of(t.data_source) for t in tasks} == {"meta-train"}


def test_the_ablations_remove_what_they_name():
    """'schedule': progress features have no effect; 'normalization': no Adam term (a zero-output network does not
    move) and features at their raw scale (an update that changes with the gradient's scale)."""
    from loptim.optimizers.mlp import MLPConfig

    g = torch.Generator().manual_seed(0)
    sizes, n = [6, 4], 10
    grad, param = torch.randn(n, generator=g), torch.randn(n, generator=g)
    full = MLPOptimizerNet(generalist_config(), torch.Generator().manual_seed(1))
    meta = {k: v.detach() + 0.5 * torch.randn(v.shape, generator=g) for k, v in full.meta_params().items()}
    nets = {
        a: MLPOptimizerNet(MLPConfig(hidden=8, design="generalist", ablation=a)) for a in ("schedule", "normalization")
    }

    def delta(net, step, total, scale=1.0, params=meta):
        return net.step_flat(params, net.zero_state(n), grad * scale, param, sizes, step, total)[0]

    assert not torch.equal(delta(full, 3, 10), delta(full, 3, 100))  # the full design follows progress
    assert torch.equal(delta(nets["schedule"], 3, 10), delta(nets["schedule"], 3, 100))
    zero_out = {k: (torch.zeros_like(v) if k in ("w3", "b3") else v) for k, v in meta.items()}
    assert delta(full, 3, 10, params=zero_out).abs().sum() > 0  # the nominal Adam step
    assert torch.equal(delta(nets["normalization"], 3, 10, params=zero_out), torch.zeros(n))

    # The full design sees per-tensor RMS-normalized features (nearly blind to the gradient's scale); without
    # normalization the network sees raw magnitudes, so a 1000x larger gradient changes its step far more.
    def change(net):
        base = delta(net, 3, 10)
        return float((delta(net, 3, 10, 1e3) - base).norm() / base.norm())

    assert change(full) < 0.2 and change(nets["normalization"]) > 0.5  # measured: 0.11 and 0.93


def test_the_ablation_recipes_differ_from_the_control_in_one_thing_each():
    control = RECIPES.get("generalist-ablation-control")
    changed = {}
    for name in ("no-horizon", "no-normalization", "no-schedule", "no-augmentation"):
        recipe = RECIPES.get(f"generalist-ablation-{name}")
        changed[name] = sorted(k for k in vars(control) if k != "name" and getattr(recipe, k) != getattr(control, k))
    assert changed == {"no-horizon": ["inner_steps"], "no-normalization": ["core"],
                       "no-schedule": ["core"], "no-augmentation": ["augment"]}  # fmt: skip


# ---- loss features (MLPConfig(loss_features=True), recipe mlp-generalist-loss) --------------------------------
LOSS_CONFIG = MLPConfig(hidden=8, design="generalist", loss_features=True)


def _features_after(losses):
    stats = None
    for loss in losses:
        stats = generalist.loss_statistics(stats, loss)
    return generalist.loss_features(stats)


def test_loss_features_known_answers():
    assert _features_after([]) == [0.0, 0.0, 0.0, 0.0]
    assert _features_after([None, float("nan"), -1.0, 0.0]) == [0.0, 0.0, 0.0, 0.0]  # nothing usable was seen
    assert _features_after([2.5] * 50) == pytest.approx([1.0, 0.0, 0.0, 0.0], abs=1e-12)  # flat: no trend
    falling = _features_after([3.0 * 0.97**t for t in range(200)])
    assert falling[1] < 0 and falling[2] < 0 and falling[3] == 0.0  # falling: at its best
    rising = _features_after([1.0] * 100 + [1.0 * 1.05**t for t in range(30)])
    assert rising[1] > 0 and rising[2] > 0 and rising[3] > 0  # rising above its best
    assert max(map(abs, _features_after([1.0] * 10 + [1e6] * 5))) <= 1.0  # clipped
    scaled = _features_after([1e-4 * 0.99**t for t in range(300)])
    assert scaled == pytest.approx(_features_after([7.0 * 0.99**t for t in range(300)]), abs=1e-9)  # unitless


def _loss_design_pair(tmp_path):
    """A trained-looking generalist and the loss design warm-started from it (its new weights zero)."""
    source = MLPOptimizerNet(generalist_config(), torch.Generator().manual_seed(2))
    with torch.no_grad():
        for name in ("w3", "b3", "w_schedule"):
            getattr(source, name).normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
    target = MLPOptimizerNet(LOSS_CONFIG, torch.Generator().manual_seed(4))
    warm_start(target, source)
    paths = tmp_path / "source.safetensors", tmp_path / "target.safetensors"
    save_learned(paths[0], "mlp", source, vars(generalist_config()), {})
    save_learned(paths[1], "mlp", target, vars(LOSS_CONFIG), {})
    return target, [str(p) for p in paths]


def _train(weights, losses, steps=12, seed=0, opt_out=None):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(9, 7, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]
    opt = loptim.MLPOptimizer(params, weights=weights, total_steps=steps)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step(loss=losses[t])
    if opt_out is not None:
        opt_out.append(opt)
    return params


def test_a_warm_started_loss_design_is_its_source_and_its_loss_weights_act(tmp_path):
    target, (source_path, target_path) = _loss_design_pair(tmp_path)
    losses = [2.0 * 0.9**t + (0.5 if t > 6 else 0.0) for t in range(12)]
    for a, b in zip(_train(source_path, losses), _train(target_path, losses)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    with torch.no_grad():
        target.w_schedule[generalist.NUM_PROGRESS + 1] = 3.0  # the fast loss trend now scales the step
    save_learned(tmp_path / "moved.safetensors", "mlp", target, vars(LOSS_CONFIG), {})
    moved = _train(str(tmp_path / "moved.safetensors"), losses)
    assert not torch.allclose(moved[0], _train(target_path, losses)[0], atol=1e-6)


@pytest.mark.parametrize("kernels", ["1", "0"])
def test_the_loss_design_shell_matches_the_meta_training_update(tmp_path, monkeypatch, kernels):
    """The shell (fused kernel or reference) and MLPOptimizerNet.update (what meta-training runs) agree with loss
    features in play, and the shell asks training loops for the loss."""
    monkeypatch.setenv("LOPTIM_KERNELS", kernels)
    target, (_, path) = _loss_design_pair(tmp_path)
    with torch.no_grad():
        target.w_schedule[generalist.NUM_PROGRESS :] = torch.tensor([0.2, 2.0, -1.0, 1.5])
        target.w1_time[:, generalist.NUM_PROGRESS :].normal_(0.0, 1.0, generator=torch.Generator().manual_seed(5))
    save_learned(path, "mlp", target, vars(LOSS_CONFIG), {})
    losses = [1.0 + 0.3 * math.sin(t) for t in range(12)]
    opts = []
    shell = _train(path, losses, opt_out=opts)
    assert opts[0].wants_loss and opts[0].net.config.loss_features
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(9, 7, generator=g), "b": torch.randn(7, generator=g)}
    meta = {k: v.detach() for k, v in target.meta_params().items()}
    state = target.init_state(params)
    for t in range(12):
        grads = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}
        params, state = target.update(meta, state, params, grads, step=t, total_steps=12, loss=torch.tensor(losses[t]))
    assert state["loss_stats"].tolist() == pytest.approx(opts[0]._loss_stats, rel=1e-6)  # float32 losses there
    for a, b in zip(shell, params.values()):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)


def test_the_loss_statistics_survive_a_state_dict_round_trip(tmp_path):
    target, (_, path) = _loss_design_pair(tmp_path)
    with torch.no_grad():
        target.w_schedule[generalist.NUM_PROGRESS :] = torch.tensor([0.1, 2.0, 1.0, 1.0])
    save_learned(path, "mlp", target, vars(LOSS_CONFIG), {})
    losses = [1.0 / (1 + t) + 0.2 * (t % 3) for t in range(20)]
    opts = []
    straight = _train(path, losses, steps=20, opt_out=opts)
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(9, 7, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]
    first = loptim.MLPOptimizer(params, weights=path, total_steps=20)
    for t in range(20):
        if t == 10:
            saved = first.state_dict()
            assert saved["loptim"]["loss_stats"] == first._loss_stats
            first = loptim.MLPOptimizer(params, weights=path, total_steps=20)
            first.load_state_dict(saved)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        first.step(loss=losses[t])
    for a, b in zip(straight, params):
        assert torch.equal(a, b)


def test_the_loss_design_asks_for_the_loss_once_and_takes_it_from_observe_loss(tmp_path):
    _, (_, path) = _loss_design_pair(tmp_path)
    param = torch.nn.Parameter(torch.ones(4))
    opt = loptim.MLPOptimizer([param], weights=path, total_steps=5)
    param.grad = torch.ones(4)
    with pytest.raises(MissingLossError, match="observe_loss"):
        opt.step()
    assert torch.equal(param, torch.ones(4)) and opt.step_count == 0  # refused before anything changed
    twin = torch.nn.Parameter(torch.ones(4))
    other = loptim.MLPOptimizer([twin], weights=path, total_steps=5)
    for loss in (2.0, 1.5):
        opt.observe_loss(torch.tensor(loss))  # what loptim.integrations calls
        opt.step()
        twin.grad = param.grad.clone()
        other.step(loss=loss)
        assert torch.equal(param, twin)
    opt.step()  # a later step without a loss keeps the statistics (no error once one was seen)
    assert opt._loss_stats == other._loss_stats
    plain = loptim.MLPOptimizer([torch.nn.Parameter(torch.ones(4))], weights=None)
    assert not plain.wants_loss


def test_the_loss_recipe_starts_as_the_shipped_generalist_and_warm_start_refuses_other_shapes():
    trainer = MetaTrainer(replace(RECIPES.get("mlp-generalist-loss"), slots=1), "unused")
    source = loptim.MLPOptimizer([torch.nn.Parameter(torch.zeros(1))], weights="mlp-generalist").net.meta_params()
    for name, value in trainer.meta.items():
        width = source[name].shape[-1]
        assert torch.equal(value[..., :width], source[name]), name
        assert not value[..., width:].any(), name
    assert trainer.config.loss_features and trainer.parts.card["warm_started_from"] == "mlp-generalist"
    with pytest.raises(ValueError, match="cannot warm-start w1"):
        warm_start(MLPOptimizerNet(generalist_config(16)), MLPOptimizerNet(generalist_config(8)))


def test_the_schedule_recipe_meta_trains_the_schedule_head_alone():
    """Celo's second stage: two outer steps move w_schedule and leave every other meta-parameter bit for bit."""
    torch.set_num_threads(1)
    recipe = replace(RECIPES.get("mlp-generalist-schedule"), slots=2, inner_steps=(20, 30), truncation=(5, 5))
    trainer = MetaTrainer(recipe, "unused")
    start = {k: v.detach().clone() for k, v in trainer.meta.items()}
    for _ in range(2):
        trainer.train_epoch()
        trainer.epoch += 1
    for name, value in trainer.meta.items():
        assert torch.equal(value, start[name]) == (name != "w_schedule"), name
    assert trainer.parts.card["meta_trained_only"] == ["w_schedule"]
    with pytest.raises(ValueError, match="perturbs \\['w_sched'\\].*choose among"):
        MetaTrainer(replace(recipe, perturbed=("w_sched",)), "unused")


SCALE_CONFIG = MLPConfig(hidden=8, design="generalist", correction=False)


def _trained_like(config: MLPConfig, seed: int = 3) -> MLPOptimizerNet:
    """A generalist whose output layer and schedule are not zero, as after meta-training."""
    net = MLPOptimizerNet(config, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in ("w3", "b3", "w_schedule"):
            getattr(net, name).normal_(0.0, 0.5, generator=g)
    return net


def test_the_scale_only_design_moves_every_coordinate_as_adam_does():
    """correction=False: the update is the full design's with d's output row zeroed, and each coordinate's step has
    the sign of Adam's (-m_hat), whatever the network says; the full design's d flips some of them."""
    scale, full = _trained_like(SCALE_CONFIG), _trained_like(generalist_config())
    meta = {k: v.detach() for k, v in scale.meta_params().items()}
    zeroed = {**meta, "w3": torch.stack((torch.zeros(8), meta["w3"][1])), "b3": torch.tensor([0.0, meta["b3"][1]])}
    g = torch.Generator().manual_seed(7)
    sizes = [30, 12]
    state_s, state_f, state_z = (scale.zero_state(42) for _ in range(3))
    param = torch.randn(42, generator=g)
    flips = 0
    for t in range(15):
        grad = torch.randn(42, generator=g)
        ds, state_s = scale.step_flat(meta, state_s, grad, param, sizes, t, 15)
        dz, state_z = full.step_flat(zeroed, state_z, grad, param, sizes, t, 15)
        df, state_f = full.step_flat(meta, state_f, grad, param, sizes, t, 15)
        torch.testing.assert_close(ds, dz, rtol=0, atol=0)
        momentum = state_s["momenta"][0]
        assert bool((ds * momentum <= 0).all()) and bool((ds != 0).all())
        flips += int((df * momentum > 0).sum())
        param = param + ds
    assert flips > 0  # the full design's correction does flip steps: the property is not vacuous


@pytest.mark.parametrize("prior", [{}, {"schedule_prior": "cosine"}, {"schedule_prior": "cosine", "warmup": 0.25}])
@pytest.mark.parametrize("kernels", ["1", "0"])
def test_the_scale_only_shell_matches_the_meta_training_update(tmp_path, monkeypatch, kernels, prior):
    """The shell (fused kernel, fed d's row zeroed, or reference) and MLPOptimizerNet.update agree, and a card with
    correction=False (and a schedule prior, and a warm-up) loads as that design."""
    monkeypatch.setenv("LOPTIM_KERNELS", kernels)
    config = replace(SCALE_CONFIG, **prior)
    net = _trained_like(config)
    path = tmp_path / "scale.safetensors"
    save_learned(path, "mlp", net, vars(config), {})
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(9, 7, generator=g), "b": torch.randn(7, generator=g)}
    shell = [torch.nn.Parameter(v.clone()) for v in start.values()]
    opt = loptim.MLPOptimizer(shell, weights=str(path), total_steps=12)
    assert not opt.net.config.correction and opt.net.config == config
    params, meta, state = dict(start), {k: v.detach() for k, v in net.meta_params().items()}, net.init_state(start)
    for t in range(12):
        grads = {k: torch.randn(v.shape, generator=g) for k, v in params.items()}
        for p, grad in zip(shell, grads.values()):
            p.grad = grad.clone()
        opt.step()
        params, state = net.update(meta, state, params, grads, step=t, total_steps=12)
    for a, b in zip(shell, params.values()):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)


def _cosine(t: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * t / total))


def _ramp(t: int, total: int) -> float:
    return min(1.0, (t + 1) / (0.3 * total))


@pytest.mark.parametrize(
    "changes, factor",
    [
        ({"schedule_prior": "cosine"}, _cosine),
        ({"warmup": 0.3}, _ramp),
        ({"schedule_prior": "cosine", "warmup": 0.3}, lambda t, total: _cosine(t, total) * _ramp(t, total)),
    ],
)
def test_the_schedule_prior_and_warm_up_multiply_each_step_and_are_off_when_the_length_is_unknown(changes, factor):
    """Known answer: with the cosine prior step t of T is the plain design's step times 0.5 (1 + cos(pi t / T)),
    with warmup=0.3 times min(1, (t + 1) / (0.3 T)), with both times both, on the same state; without the run's
    length (total_steps 0) the designs step alike."""
    plain = _trained_like(SCALE_CONFIG)
    scheduled = MLPOptimizerNet(replace(SCALE_CONFIG, **changes))
    scheduled.load_state_dict(plain.state_dict())
    meta = {k: v.detach() for k, v in plain.meta_params().items()}
    g = torch.Generator().manual_seed(5)
    sizes, param = [30, 12], torch.randn(42, generator=g)
    for total in (20, 0):
        state = plain.zero_state(42)
        for t in range(20):
            grad = torch.randn(42, generator=g)
            dp, new = plain.step_flat(meta, state, grad, param, sizes, t, total)
            dq, _ = scheduled.step_flat(meta, state, grad, param, sizes, t, total)
            torch.testing.assert_close(dq, dp * (factor(t, total) if total else 1.0), rtol=1e-6, atol=0)
            state, param = new, param + dp


def test_the_schedule_prior_and_warm_up_are_generalist_options_with_checked_values():
    with pytest.raises(ValueError, match="schedule_prior applies to the generalist"):
        MLPConfig(schedule_prior="cosine")
    with pytest.raises(ValueError, match="warmup applies to the generalist"):
        MLPConfig(warmup=0.1)
    with pytest.raises(ValueError, match="fraction of the run"):
        replace(SCALE_CONFIG, warmup=1.5)


@pytest.mark.parametrize(
    "recipe, source, prior, warmup",
    [
        ("mlp-generalist-scale", "mlp-generalist", None, 0.0),
        ("mlp-generalist-cosine", "mlp-generalist-scale", "cosine", 0.0),
        ("mlp-generalist-warmup", "mlp-generalist-cosine", "cosine", 0.05),
    ],
)
def test_a_scale_only_recipe_starts_from_its_shipped_source_with_its_design(recipe, source, prior, warmup):
    """mlp-generalist-scale starts from mlp-generalist without its correction; mlp-generalist-cosine from
    mlp-generalist-scale with the cosine prior; mlp-generalist-warmup from mlp-generalist-cosine with a warm-up."""
    trainer = MetaTrainer(replace(RECIPES.get(recipe), slots=1), "unused")
    start = load_learned("mlp", source).meta_params()
    for name, value in trainer.meta.items():
        assert torch.equal(value, start[name]), name
    assert not trainer.config.correction and trainer.config.schedule_prior == prior
    assert trainer.config.warmup == warmup
    assert trainer.parts.card["warm_started_from"] == source
    with pytest.raises(ValueError, match="correction applies to the generalist"):
        MLPConfig(correction=False)
