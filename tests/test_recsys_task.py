"""NCF on implicit feedback: exact gradients, negative sampling, ranking metrics, evaluation, MovieLens 100K."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from loptim.errors import DataMissingError
from loptim.tasks.data.base import DataSource, InteractionSplits
from loptim.tasks.recsys import GMFTask, NCFTask, NeuMFTask, rank_metrics, sample_negatives
from loptim.tasks.registry import TASKS

USERS, ITEMS, NEGATIVES = 10, 150, 99
SOURCE = DataSource("synthetic", "random interactions", "none", (), "none", "tiny")
TASK_CLASSES = (GMFTask, NeuMFTask)


def synthetic_interactions() -> InteractionSplits:
    """Users with 5 to 45 train items (dense enough that negative draws collide), one valid and one test item each."""
    generator = torch.Generator().manual_seed(0)
    train, valid, test, valid_negatives, test_negatives = [], [], [], [], []
    for user in range(USERS):
        order = torch.randperm(ITEMS, generator=generator)
        count = 5 + 4 * user
        train += [(user, int(item)) for item in order[:count]]
        valid.append((user, int(order[count])))
        test.append((user, int(order[count + 1])))
        rest = order[count + 2 :]
        valid_negatives.append(rest[torch.randperm(rest.numel(), generator=generator)[:NEGATIVES]])
        test_negatives.append(rest[torch.randperm(rest.numel(), generator=generator)[:NEGATIVES]])
    train = torch.tensor(train)
    interacted = torch.zeros(USERS, ITEMS, dtype=torch.bool)
    interacted[train[:, 0], train[:, 1]] = True
    return InteractionSplits(
        train=train,
        valid=torch.tensor(valid),
        test=torch.tensor(test),
        valid_negatives=torch.stack(valid_negatives),
        test_negatives=torch.stack(test_negatives),
        train_interacted=interacted,
        num_users=USERS,
        num_items=ITEMS,
        source=SOURCE,
    )


def tiny_task(cls: type[NCFTask]) -> NCFTask:
    data = synthetic_interactions()
    return cls(loader=lambda: data)


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_loss_gradient_matches_central_differences(cls):
    task = tiny_task(cls)
    generator = torch.Generator().manual_seed(1)
    # Larger than the N(0, 0.01) init so the dot products and the ReLU tower are far from trivial.
    params = {
        k: (v + 0.3 * torch.randn(v.shape, generator=generator)).double() for k, v in task.init(generator).items()
    }
    batch = next(task.batches("train", generator))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = dict(zip(leaves, torch.autograd.grad(task.loss(leaves, batch), list(leaves.values())), strict=True))
    step = 1e-6
    for name, value in params.items():
        touched = grads[name].reshape(-1).nonzero().squeeze(1)
        assert touched.numel() > 0, f"{name} gets no gradient"
        picks = touched[torch.randint(touched.numel(), (3,), generator=generator)].tolist()
        for index in picks + [int(torch.randint(value.numel(), (1,), generator=generator))]:
            plus, minus = value.clone(), value.clone()
            plus.view(-1)[index] += step
            minus.view(-1)[index] -= step
            numeric = float(task.loss({**params, name: plus}, batch)) - float(task.loss({**params, name: minus}, batch))
            numeric /= 2 * step
            assert grads[name].view(-1)[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


def test_sample_negatives_known_answer_and_exclusion():
    interacted = torch.ones(3, 6, dtype=torch.bool)
    interacted[0, 4] = interacted[1, 0] = interacted[2, 5] = False
    users = torch.tensor([0, 1, 2]).repeat(50)
    items = sample_negatives(users, interacted, torch.Generator().manual_seed(2))
    assert torch.equal(items, torch.tensor([4, 0, 5]).repeat(50))


def test_training_batches_pair_train_positives_with_unseen_negatives():
    task = tiny_task(GMFTask)
    data = task.data
    positives = set(map(tuple, data.train.tolist()))
    stream = task.batches("train", torch.Generator().manual_seed(3))
    for _ in range(10):
        users, items, labels = next(stream)
        size = task.batch_size * (1 + task.config.negatives)
        assert users.shape == items.shape == labels.shape == (size,) and labels.dtype == torch.float32
        assert labels.sum() == task.batch_size
        is_positive = labels == 1
        assert all(
            pair in positives for pair in zip(users[is_positive].tolist(), items[is_positive].tolist(), strict=True)
        )
        assert not data.train_interacted[users[~is_positive], items[~is_positive]].any()
        # Each positive's user gets exactly `negatives` negatives.
        counts = torch.bincount(users[~is_positive], minlength=USERS)
        assert torch.equal(counts, task.config.negatives * torch.bincount(users[is_positive], minlength=USERS))


@pytest.mark.parametrize("split", ["train", "valid"])
def test_batches_are_deterministic(split):
    task = tiny_task(NeuMFTask)
    first = next(task.batches(split, torch.Generator().manual_seed(4)))
    same = next(task.batches(split, torch.Generator().manual_seed(4)))
    other = next(task.batches(split, torch.Generator().manual_seed(5)))
    assert all(torch.equal(a, b) for a, b in zip(first, same, strict=True))
    assert not torch.equal(first[1], other[1])


def test_valid_batches_are_drawn_from_the_fixed_evaluation_set():
    task = tiny_task(GMFTask)
    data = task.data
    users, items, labels = next(task.batches("valid", torch.Generator().manual_seed(6)))
    held_out = labels == 1
    assert torch.equal(data.valid[users[held_out], 1], items[held_out])
    in_negatives = (data.valid_negatives[users[~held_out]] == items[~held_out, None]).any(1)
    assert in_negatives.all()


def test_rank_metrics_known_answers():
    best = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    assert rank_metrics(best) == {"hr@10": 1.0, "ndcg@10": 1.0}
    third = torch.tensor([[2.0, 3.0, 1.0, 4.0] + [0.0] * 20])
    assert rank_metrics(third) == {"hr@10": 1.0, "ndcg@10": pytest.approx(1 / math.log2(4))}
    # Ties count against the held-out item: tied with 10 others, it ranks 11th.
    tied = torch.tensor([[1.0] * 11 + [0.0] * 89])
    assert rank_metrics(tied) == {"hr@10": 0.0, "ndcg@10": 0.0}
    nine_tied = torch.tensor([[1.0] * 10 + [0.0] * 90])
    assert rank_metrics(nine_tied)["ndcg@10"] == pytest.approx(1 / math.log2(11))
    assert rank_metrics(torch.tensor([[math.nan] + [0.0] * 11])) == {"hr@10": 0.0, "ndcg@10": 0.0}
    both = torch.tensor([[5.0] + [0.0] * 11, [-1.0] + [0.0] * 11])
    assert rank_metrics(both) == {"hr@10": 0.5, "ndcg@10": 0.5}


def _with_scores(task: NCFTask, scores: torch.Tensor) -> None:
    """Make the task score (user, item) by the table `scores`, to test metrics and evaluate on known answers."""
    task.logits = lambda params, users, items: scores[users, items]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_metrics_rank_the_held_out_item(split):
    task = tiny_task(GMFTask)
    held_out = getattr(task.data, split)
    scores = torch.zeros(USERS, ITEMS)
    scores[held_out[:, 0], held_out[:, 1]] = 1.0
    _with_scores(task, scores)
    assert task.metrics({}, split) == {"hr@10": 1.0, "ndcg@10": 1.0}
    _with_scores(task, -scores)
    assert task.metrics({}, split) == {"hr@10": 0.0, "ndcg@10": 0.0}
    # Two of each user's sampled negatives above the held-out item: rank 2 for everyone.
    negatives = getattr(task.data, f"{split}_negatives")
    above = scores.clone()
    above[held_out[:, :1].expand(-1, 2), negatives[:, :2]] = 2.0
    _with_scores(task, above)
    assert task.metrics({}, split) == {"hr@10": 1.0, "ndcg@10": pytest.approx(1 / math.log2(4))}


def test_evaluate_is_the_mean_bce_over_held_out_pairs():
    task = tiny_task(GMFTask)
    data = task.data
    scores = torch.randn(USERS, ITEMS, generator=torch.Generator().manual_seed(7))
    _with_scores(task, scores)
    result = task.evaluate({}, "test")
    assert sum(w for _, w in task.eval_batches("test")) == USERS * (1 + NEGATIVES)
    positives = scores[data.test[:, 0], data.test[:, 1]]
    negatives = scores[data.test[:, :1], data.test_negatives]
    expected = (F.softplus(-positives).sum() + F.softplus(negatives).sum()) / (USERS * (1 + NEGATIVES))
    assert result["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert set(task.evaluate({}, "train")) == {"loss"}


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_init_is_deterministic_and_adam_lowers_the_training_loss(cls):
    task = tiny_task(cls)
    state = torch.get_rng_state()
    params = task.init(torch.Generator().manual_seed(8))
    assert torch.equal(state, torch.get_rng_state()), "init must draw only from the given generator"
    same, other = task.init(torch.Generator().manual_seed(8)), task.init(torch.Generator().manual_seed(9))
    assert all(torch.equal(params[k], same[k]) for k in params)
    assert not torch.equal(params["gmf.user"], other["gmf.user"])
    assert params["gmf.item"].shape == (ITEMS, 8) and params["gmf.user"].std().item() == pytest.approx(0.01, rel=0.2)

    result = task.evaluate(params, "valid")
    assert result["loss"] == pytest.approx(math.log(2), abs=0.01)
    assert all(0.0 <= result[k] <= 1.0 for k in ("hr@10", "ndcg@10"))
    batch = next(task.batches("train", torch.Generator().manual_seed(10)))
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    start = task.loss(params, batch).item()
    for _ in range(20):
        optimizer.zero_grad()
        task.loss(params, batch).backward()
        optimizer.step()
    assert task.loss(params, batch).item() < 0.9 * start


def test_registered_tasks_load_no_data_until_used():
    for name, cls in (("movielens-gmf", GMFTask), ("movielens-neumf", NeuMFTask)):
        task = TASKS.get(name)
        assert isinstance(task, cls) and task.name == name and "data" not in task.__dict__
        assert task.default_steps == 400 and task.batch_size == 256


@pytest.mark.parametrize("name, count", [("movielens-gmf", 21_009), ("movielens-neumf", 63_681)])
def test_movielens_tasks_on_the_real_data(name, count):
    task = TASKS.get(name)
    try:
        data = task.data
    except DataMissingError as error:
        pytest.skip(f"MovieLens 100K is not installed here: {error}")
    params = task.init(torch.Generator().manual_seed(11))
    assert sum(p.numel() for p in params.values()) == count
    assert params["gmf.user"].shape == (data.num_users, 8) and params["gmf.item"].shape == (data.num_items, 8)
    result = task.evaluate(params, "valid")
    assert result["loss"] == pytest.approx(math.log(2), abs=0.01)
    # An untrained model ranks the held-out item near chance: about 10 of 100 in the top 10.
    assert 0.05 < result["hr@10"] < 0.2 and 0.0 < result["ndcg@10"] < result["hr@10"]
