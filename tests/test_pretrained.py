"""The shipped weights load without running code, carry a complete card, and train a real task."""

import json

import pytest
import torch

import loptim
from loptim.pretrained import PRETRAINED_DIR, available, load_learned

CARD_KEYS = {"recipe", "command", "seed", "git_commit", "meta_trained_on", "meta_training_seconds", "architecture"}


@pytest.mark.parametrize("name", ["lstm-mnist", "lstm-quadratic"])
def test_shipped_lstm_weights_load_and_have_a_card(name):
    assert name in available()
    net = load_learned("lstm", name)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    card = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    assert CARD_KEYS <= set(card)
    assert (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size < 100_000  # learned optimizers are tiny


def test_lstm_mnist_trains_the_mnist_mlp_from_two_lines():
    from loptim.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("mnist-mlp")
    params = {k: v.requires_grad_() for k, v in task.init(torch.Generator().manual_seed(123)).items()}
    opt = loptim.LSTMOptimizer(params.values(), weights="lstm-mnist")
    batches = task.batches("train", torch.Generator().manual_seed(5))
    start = task.evaluate(params, "valid", metrics=False)["loss"]
    for _ in range(60):
        opt.zero_grad()
        task.loss(params, next(batches)).backward()
        opt.step()
    end = task.evaluate(params, "valid", metrics=False)["loss"]
    assert end < 0.5 * start  # from ~log(10) = 2.30 at initialization
