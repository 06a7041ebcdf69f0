"""Image and quadratic tasks: exact gradients, parameter shapes, deterministic batches, evaluation on real data."""

from __future__ import annotations

import math

import pytest
import torch

from loptim.errors import DataMissingError
from loptim.tasks import get_task
from loptim.tasks.base import Task
from loptim.tasks.image import CNNConfig, CNNTask, MLPTask
from loptim.tasks.quadratic import QuadraticConfig, QuadraticTask

GRADIENT_TASKS = ("mnist-mlp", "mnist-mlp-2layer", "mnist-mlp-relu", "small-cnn", "fashion-cnn")


def make_task(name: str) -> Task:
    task = CNNTask(CNNConfig(channels=(4, 8)), name="small-cnn") if name == "small-cnn" else get_task(name)
    try:
        assert task.data.train_images.shape[1:] == (28, 28)
    except DataMissingError as error:
        pytest.skip(f"{task.dataset} is not installed here: {error}")
    return task


@pytest.fixture(scope="module")
def mnist_mlp() -> MLPTask:
    return make_task("mnist-mlp")


def as_float64(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.float64) for k, v in params.items()}


@pytest.mark.parametrize("name", GRADIENT_TASKS)
def test_loss_gradient_matches_central_differences(name):
    task = make_task(name)
    generator = torch.Generator().manual_seed(0)
    params = as_float64(task.init(generator))
    # Move away from the init so sigmoid/relu units and every bias carry a gradient of a different size.
    params = {k: v + 0.05 * torch.randn(v.shape, generator=generator, dtype=torch.float64) for k, v in params.items()}
    images, labels = next(task.batches("train", generator))
    batch = (images[:8].to(torch.float64), labels[:8])
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = task.loss(leaves, batch)
    assert loss.dtype == torch.float64
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
    step = 1e-6
    for key, value in params.items():
        flat_grad = grads[key].reshape(-1)
        # A few random coordinates plus the one with the largest gradient (MNIST's border pixels have none).
        picks = torch.randint(value.numel(), (3,), generator=generator).tolist() + [int(flat_grad.abs().argmax())]
        for index in picks:
            plus, minus = value.clone(), value.clone()
            plus.view(-1)[index] += step
            minus.view(-1)[index] -= step
            numeric = float(task.loss({**params, key: plus}, batch)) - float(task.loss({**params, key: minus}, batch))
            numeric /= 2 * step
            assert flat_grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9), (key, index)
        assert flat_grad.abs().max() > 1e-6, f"{key} has no gradient at all"


def test_mnist_mlp_shapes_and_parameter_count(mnist_mlp):
    params = mnist_mlp.init(torch.Generator().manual_seed(0))
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    assert shapes == {"w0": (784, 20), "b0": (20,), "w1": (20, 10), "b1": (10,)}
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in params.values())
    assert mnist_mlp.num_params() == 784 * 20 + 20 + 20 * 10 + 10 == 15_910
    assert mnist_mlp.default_steps == 100 and mnist_mlp.batch_size == 128
    assert params["w0"].std().item() == pytest.approx(0.01, rel=0.05)  # L2L's N(0, 0.01^2) init
    assert get_task("mnist-mlp-2layer").num_params() == 784 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10
    assert get_task("fashion-cnn").num_params() == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (32 * 32 * 9 + 32) + 330


def test_init_draws_only_from_its_generator(mnist_mlp):
    state = torch.get_rng_state()
    first = mnist_mlp.init(torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state())
    same = mnist_mlp.init(torch.Generator().manual_seed(3))
    other = mnist_mlp.init(torch.Generator().manual_seed(4))
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert not torch.equal(first["w0"], other["w0"])


@pytest.mark.parametrize("name", ["mnist-mlp", "small-cnn"])
def test_batches_are_determined_by_the_generator_seed(name):
    task = make_task(name)

    def take(seed: int, count: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
        stream = task.batches("train", torch.Generator().manual_seed(seed))
        torch.manual_seed(seed + 100)  # the global RNG must not matter
        return [next(stream) for _ in range(count)]

    first, same, other = take(5), take(5), take(6)
    for (x, y), (x2, y2) in zip(first, same, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(first[0][0], other[0][0])
    assert not torch.equal(first[0][0], first[1][0]), "consecutive batches must differ"
    images, labels = first[0]
    assert images.shape == (128, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (128,) and labels.dtype == torch.int64 and 0 <= int(labels.min()) <= int(labels.max()) < 10
    if isinstance(task, MLPTask):
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    else:  # CNN inputs are standardized, so the background pixels are negative
        assert float(images.min()) < -0.3


def test_split_batches_come_from_their_own_split(mnist_mlp):
    valid_images, valid_labels = mnist_mlp.data.split("valid")
    known = {(bytes(img.numpy().tobytes()), int(lbl)) for img, lbl in zip(valid_images, valid_labels)}
    images, labels = next(mnist_mlp.batches("valid", torch.Generator().manual_seed(0)))
    pixels = (images * 255).round().to(torch.uint8)
    assert all((bytes(img.numpy().tobytes()), int(lbl)) in known for img, lbl in zip(pixels, labels))
    train_images, _ = next(mnist_mlp.batches("train", torch.Generator().manual_seed(0)))
    train_pixels = (train_images * 255).round().to(torch.uint8)
    assert sum(bytes(img.numpy().tobytes()) in {k for k, _ in known} for img in train_pixels) < 5
    with pytest.raises(ValueError, match="split"):
        next(mnist_mlp.batches("validation", torch.Generator()))


def test_evaluate_at_init_is_near_uniform_and_matches_a_direct_computation(mnist_mlp):
    params = mnist_mlp.init(torch.Generator().manual_seed(1))
    result = mnist_mlp.evaluate(params, "valid")
    assert math.isfinite(result["loss"]) and result["loss"] == pytest.approx(math.log(10), abs=0.01)
    assert 0.0 <= result["accuracy"] <= 1.0
    images, labels = mnist_mlp.data.split("valid")
    logits = mnist_mlp.logits(params, mnist_mlp.prepare(images))
    direct = torch.nn.functional.cross_entropy(logits, labels).item()
    assert result["loss"] == pytest.approx(direct, rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(-1) == labels).double().mean().item(), abs=1e-12)
    assert set(mnist_mlp.evaluate(params, "test", metrics=False)) == {"loss"}
    with pytest.raises(ValueError, match="split"):
        mnist_mlp.evaluate(params, "dev")


@pytest.mark.parametrize("name, lr", [("mnist-mlp", 0.03), ("mnist-cnn", 0.01)])
def test_a_short_adam_run_lowers_the_validation_loss(name, lr):
    task = make_task(name)
    generator = torch.Generator().manual_seed(2)
    params = {k: v.requires_grad_(True) for k, v in task.init(generator).items()}
    before = task.evaluate(params, "valid")
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    batches = task.batches("train", generator)
    for _ in range(40):
        optimizer.zero_grad()
        task.loss(params, next(batches)).backward()
        optimizer.step()
    after = task.evaluate(params, "valid")
    assert after["loss"] < before["loss"] - 0.3, (before, after)
    assert after["accuracy"] > before["accuracy"] + 0.2 and after["accuracy"] > 0.5


def quadratic_closed_form_gradient(task: QuadraticTask, theta: torch.Tensor) -> torch.Tensor:
    """d/dtheta_f of mean_f ||W_f theta_f - y_f||^2 = 2/F * W_f^T (W_f theta_f - y_f), one function at a time."""
    weights, targets = task.weights.double(), task.targets.double()
    count = weights.shape[0]
    rows = [2.0 / count * weights[f].T @ (weights[f] @ theta[f] - targets[f]) for f in range(count)]
    return torch.stack(rows)


def test_quadratic_gradient_matches_the_closed_form():
    task = get_task("quadratic")
    assert isinstance(task, QuadraticTask) and task.num_params() == 128 * 10
    theta = task.init(torch.Generator().manual_seed(0))["theta"].double()
    theta = theta + torch.randn(theta.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    leaf = theta.clone().requires_grad_(True)
    batch = next(task.batches("train", torch.Generator().manual_seed(2)))
    loss = task.loss({"theta": leaf}, batch)
    (grad,) = torch.autograd.grad(loss, [leaf])
    torch.testing.assert_close(grad, quadratic_closed_form_gradient(task, theta), rtol=1e-12, atol=1e-12)
    residual = torch.einsum("fij,fj->fi", task.weights.double(), theta) - task.targets.double()
    assert loss.item() == pytest.approx(residual.pow(2).sum(-1).mean().item(), rel=1e-12)


def test_quadratic_evaluate_equals_the_loss_on_every_split():
    task = QuadraticTask(QuadraticConfig(num_functions=16, function_seed=3))
    params = task.init(torch.Generator().manual_seed(4))
    params = {"theta": params["theta"] + 0.5}
    for split in ("train", "valid", "test"):
        batch = next(task.batches(split, torch.Generator().manual_seed(5)))
        assert task.evaluate(params, split)["loss"] == pytest.approx(task.loss(params, batch).item(), rel=1e-6)
    other = QuadraticTask(QuadraticConfig(num_functions=16, function_seed=4))
    assert not torch.equal(task.weights, other.weights), "function_seed must pick the problem"


def test_noisy_quadratic_jitters_only_the_training_targets():
    task = QuadraticTask(QuadraticConfig(num_functions=4, noise_std=1.0))
    _, train_targets = next(task.batches("train", torch.Generator().manual_seed(0)))
    _, valid_targets = next(task.batches("valid", torch.Generator().manual_seed(0)))
    assert torch.equal(valid_targets, task.targets)
    assert (train_targets - task.targets).std().item() == pytest.approx(1.0, abs=0.35)


def test_mlp_column_layout_evaluation_matches_the_row_layout():
    from loptim.tasks.image import ColumnBatch

    task = get_task("mnist-mlp-2layer")
    params = {k: v.double() for k, v in task.init(torch.Generator().manual_seed(0)).items()}
    batch, _ = task.eval_batches("valid")[0]
    assert isinstance(batch, ColumnBatch)
    rows = (batch.columns.t().contiguous(), batch.labels)
    torch.testing.assert_close(task.batch_logits(params, batch), task.batch_logits(params, rows))
