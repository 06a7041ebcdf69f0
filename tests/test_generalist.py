"""The generalist design of the MLP optimizer: Adam at initialization, reparameterized tasks, its meta-trainer's
compact campaign checkpoint."""

from __future__ import annotations

from dataclasses import replace

import torch

import loptim
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer
from loptim.optimizers.mlp import MLPOptimizerNet, generalist_config
from loptim.pretrained import save_learned
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
