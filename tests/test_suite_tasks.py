"""Every suite, meta-validation and family task on its real data: finite loss that falls over 20 Adam steps on a
fixed batch, and an evaluation of the valid split."""

from __future__ import annotations

import math

import pytest
import torch

from loptim.tasks import get_family, get_task
from loptim.tasks.image import ImageMLPConfig, MLPTask
from loptim.tasks.resnet import ResNetConfig, ResNetTask
from loptim.tasks.suite import META_VALID_TASKS, SUITE_CORE


def fit_one_batch(task, steps: int = 20, lr: float = 3e-3) -> tuple[float, float, dict]:
    """Loss on one training batch before and after `steps` Adam steps on that batch (seeded)."""
    params = {k: v.requires_grad_(True) for k, v in task.init(torch.Generator().manual_seed(0)).items()}
    batch = next(task.batches("train", torch.Generator().manual_seed(0)))
    optimizer = torch.optim.Adam(params.values(), lr)
    first = float(task.loss(params, batch).detach())
    for _ in range(steps):
        loss = task.loss(params, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, float(task.loss(params, batch).detach()), params


@pytest.mark.parametrize("name", SUITE_CORE + META_VALID_TASKS)
def test_task_loss_falls_and_evaluates(name):
    task = get_task(name)
    first, last, params = fit_one_batch(task)
    assert math.isfinite(first) and math.isfinite(last)
    assert last < 0.99 * first, f"{name}: {first:.4f} -> {last:.4f}"
    result = task.evaluate(params, "valid")
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert task.evaluate(params, "valid") == result, "evaluation is deterministic"


@pytest.mark.parametrize("family", ["tiny-image", "tiny-text", "tiny-tabular", "tiny-series"])
def test_family_samples_train_and_evaluate(family):
    for seed in range(3):
        task = get_family(family).sample(torch.Generator().manual_seed(seed))
        first, last, params = fit_one_batch(task, steps=10, lr=1e-2)
        assert math.isfinite(first) and last < first, f"{task.name}: {first:.4f} -> {last:.4f}"
        assert math.isfinite(task.evaluate(params, "valid", metrics=False)["loss"])
        assert 50 <= task.default_steps <= 400


def test_metz_meta_training_runs_on_the_mixed_family(tmp_path):
    """One outer step of the Metz trainer over tiny-mixed tasks: the estimator differentiates through every kind
    of task (fused GRU/LSTM via functional_call included) and gives a finite meta-loss and gradient."""
    from loptim.meta.curriculum import TruncationCurriculum
    from loptim.meta.recipes import MetzRecipe
    from loptim.meta.trainer import MetaTrainer

    recipe = MetzRecipe(name="mixed", family="tiny-mixed", inner_steps=(20, 30), unrolls=4, epochs=1, eval_tasks=1,
                        curriculum=TruncationCurriculum(start=4, end=4, grow_epochs=1))  # fmt: skip
    stats = MetaTrainer(recipe, tmp_path).train_epoch()
    assert math.isfinite(stats["meta_loss"]) and math.isfinite(stats["grad_norm"]) and stats["grad_norm"] > 0


def test_digits_accuracy_and_padding_invariance():
    task = get_task("fsdd-gru")
    params = task.init(torch.Generator().manual_seed(0))
    frames, lengths, labels = next(task.batches("valid", torch.Generator().manual_seed(1)))
    padded = torch.cat([frames, torch.randn(frames.shape[0], 7, frames.shape[2])], dim=1)  # junk past the end
    for model in ("fsdd-gru", "fsdd-cnn"):
        task = get_task(model)
        params = task.init(torch.Generator().manual_seed(0))
        a = task.batch_logits(params, (frames, lengths, labels))
        b = task.batch_logits(params, (padded, lengths, labels))
        assert torch.allclose(a, b, atol=1e-5), f"{model}: frames past an utterance's length change its logits"
    assert 0.0 <= task.metrics(params, "valid")["accuracy"] <= 1.0


def test_resnet_starts_as_identity_blocks_and_pooled_images_shrink_the_mlp():
    task = ResNetTask(ResNetConfig(channels=(4, 8), blocks=2))
    params = task.init(torch.Generator().manual_seed(0))
    assert all(float(v.abs().max()) == 0.0 for k, v in params.items() if "conv2" in k)
    images = torch.randn(3, 28, 28)
    zeroed = {k: torch.zeros_like(v) if "conv1" in k else v for k, v in params.items()}
    assert torch.allclose(task.logits(params, images), task.logits(zeroed, images)), "branches start at zero"
    assert MLPTask(ImageMLPConfig(hidden=(8,), pool=2)).num_params() == 14 * 14 * 8 + 8 + 8 * 10 + 10
