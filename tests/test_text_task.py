"""The character transformer LM: exact gradients, causality, deterministic init and batches, a real corpus."""

from __future__ import annotations

import math

import pytest
import torch

from loptim.errors import DataMissingError
from loptim.tasks.data.base import DataSource, TextSplits
from loptim.tasks.registry import FAMILIES, TASKS
from loptim.tasks.text import EVAL_WINDOWS, CharLMConfig, CharLMFamily, CharLMTask

VOCAB = 7
TINY = CharLMConfig(d_model=8, layers=2, heads=2, context=6, batch_size=3)
SOURCE = DataSource("synthetic", "random tokens", "none", (), "none", "tiny")


def synthetic_corpus() -> TextSplits:
    tokens = torch.randint(VOCAB, (3000,), generator=torch.Generator().manual_seed(0))
    return TextSplits(tokens[:2000], tokens[2000:2500], tokens[2500:], tuple("abcdefg"), SOURCE)


def tiny_task(config: CharLMConfig = TINY) -> CharLMTask:
    corpus = synthetic_corpus()
    return CharLMTask(config, loader=lambda: corpus)


def test_loss_gradient_matches_central_differences():
    task = tiny_task()
    generator = torch.Generator().manual_seed(1)
    # Move away from the near-uniform init so attention, LayerNorm and GELU all matter.
    params = {
        k: (v + 0.3 * torch.randn(v.shape, generator=generator)).double() for k, v in task.init(generator).items()
    }
    batch = next(task.batches("train", generator))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = dict(zip(leaves, torch.autograd.grad(task.loss(leaves, batch), list(leaves.values())), strict=True))
    step = 1e-6
    for name, value in params.items():
        for index in torch.randint(value.numel(), (3,), generator=generator).tolist():
            plus, minus = value.clone(), value.clone()
            plus.view(-1)[index] += step
            minus.view(-1)[index] -= step
            loss_plus = float(task.loss({**params, name: plus}, batch))
            loss_minus = float(task.loss({**params, name: minus}, batch))
            numeric = (loss_plus - loss_minus) / (2 * step)
            assert grads[name].view(-1)[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_logits_are_causal():
    task = tiny_task()
    params = task.init(torch.Generator().manual_seed(2))
    inputs = torch.randint(VOCAB, (2, TINY.context), generator=torch.Generator().manual_seed(3))
    changed_at = 3
    changed = inputs.clone()
    changed[:, changed_at] = (changed[:, changed_at] + 1) % VOCAB
    before, after = task.logits(params, inputs), task.logits(params, changed)
    torch.testing.assert_close(before[:, :changed_at], after[:, :changed_at], rtol=0, atol=1e-6)
    assert (before[:, changed_at:] - after[:, changed_at:]).abs().amax(-1).min() > 1e-6


def test_init_is_deterministic_and_gpt2_scaled():
    task = tiny_task(CharLMConfig(d_model=64, layers=2, heads=4, context=8))
    state = torch.get_rng_state()
    first = task.init(torch.Generator().manual_seed(4))
    assert torch.equal(state, torch.get_rng_state()), "init must draw only from the given generator"
    same = task.init(torch.Generator().manual_seed(4))
    other = task.init(torch.Generator().manual_seed(5))
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert not torch.equal(first["block0.attn.qkv.weight"], other["block0.attn.qkv.weight"])
    assert first["embed.token"].shape == (VOCAB, 64) and first["head.weight"].shape == (64, VOCAB)
    assert torch.equal(first["block1.ln2.gain"], torch.ones(64)) and not first["block1.mlp.in.bias"].any()
    assert first["block0.mlp.in.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert first["block0.mlp.out.weight"].std().item() == pytest.approx(0.02 / math.sqrt(4), rel=0.05)
    assert first["block1.attn.out.weight"].std().item() == pytest.approx(0.02 / math.sqrt(4), rel=0.1)


def test_batches_are_deterministic_shifted_windows_of_the_split():
    task = tiny_task()
    stream = task.data.valid
    first = next(task.batches("valid", torch.Generator().manual_seed(6)))
    same = next(task.batches("valid", torch.Generator().manual_seed(6)))
    assert all(torch.equal(a, b) for a, b in zip(first, same, strict=True))
    inputs, targets = first
    assert inputs.shape == targets.shape == (TINY.batch_size, TINY.context) and inputs.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    windows = stream.unfold(0, TINY.context + 1, 1)
    for row in torch.cat([inputs, targets[:, -1:]], dim=1):
        assert (windows == row).all(1).any()


def test_eval_batches_are_a_fixed_evenly_spaced_subset():
    task = tiny_task()
    chunks = list(task.eval_batches("test"))
    assert [w for _, w in chunks] == [64.0] * (EVAL_WINDOWS // 64)
    inputs = torch.cat([batch[0] for batch, _ in chunks])
    targets = torch.cat([batch[1] for batch, _ in chunks])
    stream = task.data.test
    assert torch.equal(inputs[0], stream[: TINY.context]) and torch.equal(targets[-1], stream[-TINY.context :])
    again = torch.cat([batch[0] for batch, _ in task.eval_batches("test")])
    assert torch.equal(inputs, again)


def test_evaluate_is_near_uniform_at_init_and_adam_lowers_the_training_loss():
    task = tiny_task()
    params = {k: v.requires_grad_(True) for k, v in task.init(torch.Generator().manual_seed(7)).items()}
    result = task.evaluate(params, "valid")
    assert result["loss"] == pytest.approx(math.log(VOCAB), abs=0.05)
    batch = next(task.batches("train", torch.Generator().manual_seed(8)))
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    start = task.loss(params, batch).item()
    for _ in range(20):
        optimizer.zero_grad()
        task.loss(params, batch).backward()
        optimizer.step()
    assert task.loss(params, batch).item() < 0.8 * start


def test_registry_and_family_do_not_load_data():
    for name in ("shakespeare-char", "mobydick-char"):
        task = TASKS.get(name)
        assert task.name == name and "data" not in task.__dict__
    assert TASKS.get("shakespeare-char").config.d_model > TASKS.get("mobydick-char").config.d_model
    family = FAMILIES.get("char-lm")
    assert isinstance(family, CharLMFamily)
    tasks = [family.sample(torch.Generator().manual_seed(seed)) for seed in range(20)]
    again = family.sample(torch.Generator().manual_seed(0))
    assert again.config == tasks[0].config and again.name == tasks[0].name
    for task in tasks:
        c = task.config
        assert c.corpus == "moby-dick" and c.d_model in (16, 32, 48) and c.layers in (1, 2)
        assert c.context in (16, 32) and c.batch_size in (16, 32) and 100 <= c.default_steps <= 400
        assert "data" not in task.__dict__
    assert len({task.config for task in tasks}) > 10


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible"):
        CharLMConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match="corpus"):
        CharLMConfig(corpus="tiny-shakespeare")


def test_mobydick_task_on_the_real_corpus():
    task = TASKS.get("mobydick-char")
    try:
        data = task.data
    except DataMissingError as error:
        pytest.skip(f"Moby-Dick is not installed here: {error}")
    params = task.init(torch.Generator().manual_seed(9))
    assert len(data.vocab) == params["embed.token"].shape[0] > 50
    result = task.evaluate(params, "test")
    assert math.isfinite(result["loss"]) and result["loss"] == pytest.approx(math.log(len(data.vocab)), abs=0.1)
    inputs, targets = next(task.batches("train", torch.Generator().manual_seed(10)))
    assert inputs.shape == (32, 32) and int(targets.max()) < len(data.vocab)
