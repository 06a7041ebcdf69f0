"""Neural collaborative filtering (He et al. 2017) on MovieLens 100K: GMF and NeuMF as pure functions of params."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, check_split
from loptim.tasks.data.base import InteractionSplits
from loptim.tasks.registry import TASKS

DATA_SOURCE = "movielens-100k"
EVAL_CHUNK_USERS = 256  # users per evaluation chunk: 100 pairs each
TRAIN_EVAL_SEED = 0  # fixes the negatives of the train split's evaluation set
TOP_K = 10


def load_movielens() -> InteractionSplits:
    """The leave-one-out MovieLens 100K split, imported lazily so listing tasks loads no data."""
    from loptim.tasks.data.movielens import load_movielens_100k

    return load_movielens_100k()


def sample_negatives(users: Tensor, interacted: Tensor, generator: torch.Generator) -> Tensor:
    """One item per entry of `users`, uniform among the items that user has no train interaction with.

    Vectorized rejection sampling: draw for everyone, then redraw only the collisions until none remain.
    """
    items = torch.randint(interacted.shape[1], users.shape, generator=generator)
    collide = interacted[users, items].nonzero().squeeze(1)
    while collide.numel() > 0:
        items[collide] = torch.randint(interacted.shape[1], (collide.numel(),), generator=generator)
        collide = collide[interacted[users[collide], items[collide]]]
    return items


def rank_metrics(scores: Tensor) -> dict[str, float]:
    """HR@10 and NDCG@10 of column 0 (the held-out item) among each row's candidates (He et al. 2017, Sec. 4.1).

    Ties count against the held-out item (rank = candidates scoring >= it, minus itself); NaN scores rank last.
    """
    scores = torch.where(scores.isnan(), -math.inf, scores)
    rank = (scores >= scores[:, :1]).sum(1) - 1
    hit = rank < TOP_K
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.double() + 2.0), 0.0)
    return {f"hr@{TOP_K}": float(hit.double().mean()), f"ndcg@{TOP_K}": float(ndcg.mean())}


@dataclass(frozen=True)
class NCFConfig:
    """NCF sizes and sampling; defaults are the paper's 8 predictive factors and 4 negatives (He et al. 2017, 4.1)."""

    factors: int = 8  # GMF embedding size = the MLP tower's last layer
    mlp_embedding: int = 16  # NeuMF's MLP user and item embeddings; concatenated: 32 -> 16 -> 8
    negatives: int = 4  # sampled negatives per train positive
    batch_size: int = 256  # train positives per batch; a batch holds batch_size * (1 + negatives) pairs
    default_steps: int = 400
    embedding_std: float = 0.01  # Sec. 4.1: N(0, 0.01^2)

    def __post_init__(self) -> None:
        if min(self.factors, self.mlp_embedding, self.negatives, self.batch_size, self.default_steps) < 1:
            raise ValueError(f"every size of {self} must be positive")


class NCFTask(Task):
    """Pointwise NCF on implicit feedback: binary cross-entropy with sampled negatives (He et al. 2017, Sec. 3.1.1).

    Evaluation ranks each user's held-out item among 99 fixed non-interacted items; the loss of a split is the mean
    BCE over those 100 pairs per user. `loader` replaces the MovieLens loader (tests inject tiny data sets).
    """

    def __init__(
        self,
        config: NCFConfig,
        name: str,
        loader: Callable[[], InteractionSplits] | None = None,
        data_source: str = DATA_SOURCE,
    ) -> None:
        self.config = config
        self.name = name
        self.default_steps = config.default_steps
        self.batch_size = config.batch_size
        self._loader = loader or load_movielens
        self.data_source = data_source  # the partition's key (loptim/tasks/partition.py) for the loader's data

    @cached_property
    def data(self) -> InteractionSplits:
        data = self._loader()
        if bool(data.train_interacted.all(1).any()):
            raise ValueError("a user has interacted with every item, so no negative can be sampled for them")
        return data

    def logits(self, params: Params, users: Tensor, items: Tensor) -> Tensor:
        """Scores before the sigmoid, one per (user, item) pair."""
        raise NotImplementedError

    def loss(self, params: Params, batch: Batch) -> Tensor:
        users, items, labels = batch
        logits = self.logits(params, users, items)
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def _embedding(self, rows: int, generator: torch.Generator) -> Tensor:
        return torch.randn(rows, self.config.factors, generator=generator) * self.config.embedding_std

    def _dense(self, fan_in: int, fan_out: int, generator: torch.Generator) -> Tensor:
        """LeCun uniform (variance 1/fan_in), as the NCF code initializes its prediction layer."""
        bound = math.sqrt(3.0 / fan_in)
        return (torch.rand(fan_in, fan_out, generator=generator) * 2.0 - 1.0) * bound

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        """Train: random positives plus sampled negatives; valid/test: random pairs of the fixed evaluation set."""
        check_split(split)
        data, c = self.data, self.config
        if split != "train":
            users, items, labels = self._eval_sets[split]
            while True:
                index = torch.randint(users.numel(), (c.batch_size * (1 + c.negatives),), generator=generator)
                yield users[index], items[index], labels[index]
        while True:
            positives = data.train[torch.randint(data.train.shape[0], (c.batch_size,), generator=generator)]
            yield self._with_negatives(positives, generator)

    def _with_negatives(self, positives: Tensor, generator: torch.Generator) -> Batch:
        negative_users = positives[:, 0].repeat_interleave(self.config.negatives)
        negative_items = sample_negatives(negative_users, self.data.train_interacted, generator)
        users = torch.cat([positives[:, 0], negative_users])
        items = torch.cat([positives[:, 1], negative_items])
        labels = torch.cat([torch.ones(positives.shape[0]), torch.zeros(negative_users.numel())])
        return users, items, labels

    @cached_property
    def _eval_sets(self) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
        """Flat (users, items, labels) per split; valid/test are user-major, held-out item first, 100 per user."""
        data = self.data
        # The train split has no fixed negatives: every train positive with `negatives` drawn once by a fixed seed.
        sets = {"train": self._with_negatives(data.train, torch.Generator().manual_seed(TRAIN_EVAL_SEED))}
        for split in ("valid", "test"):
            held_out, negatives = getattr(data, split), getattr(data, f"{split}_negatives")
            items = torch.cat([held_out[:, 1:], negatives], dim=1)
            users = held_out[:, :1].expand_as(items)
            labels = torch.zeros(items.shape)
            labels[:, 0] = 1.0
            sets[split] = (users.reshape(-1), items.reshape(-1), labels.reshape(-1))
        return sets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        """All evaluation pairs of the split in chunks; weight = pairs per chunk."""
        check_split(split)
        users, items, labels = self._eval_sets[split]
        chunk = EVAL_CHUNK_USERS * (1 + self.data.valid_negatives.shape[1])
        return [
            ((u, i, y), float(u.numel()))
            for u, i, y in zip(users.split(chunk), items.split(chunk), labels.split(chunk), strict=True)
        ]

    @torch.no_grad()
    def metrics(self, params: Params, split: str) -> dict[str, float]:
        """HR@10 and NDCG@10 on valid/test (none on train, which has no held-out item per user)."""
        check_split(split)
        if split == "train":
            return {}
        users, items, _ = self._eval_sets[split]
        candidates = 1 + self.data.valid_negatives.shape[1]
        return rank_metrics(self.logits(params, users, items).reshape(-1, candidates))


class GMFTask(NCFTask):
    """Generalized matrix factorization: sigmoid(h^T (p_u * q_i) + b) (He et al. 2017, Sec. 3.2, Eq. 9-10)."""

    def __init__(
        self,
        config: NCFConfig = NCFConfig(),
        name: str = "movielens-gmf",
        loader: Callable | None = None,
        data_source: str = DATA_SOURCE,
    ) -> None:
        super().__init__(config, name, loader, data_source)

    def init(self, generator: torch.Generator) -> Params:
        k = self.config.factors
        return {
            "gmf.user": self._embedding(self.data.num_users, generator),
            "gmf.item": self._embedding(self.data.num_items, generator),
            "output.weight": self._dense(k, 1, generator).reshape(k),
            "output.bias": torch.zeros(1),
        }

    def logits(self, params: Params, users: Tensor, items: Tensor) -> Tensor:
        interaction = params["gmf.user"][users] * params["gmf.item"][items]
        return torch.mv(interaction, params["output.weight"]) + params["output.bias"]


class NeuMFTask(NCFTask):
    """GMF and an MLP tower with separate embeddings, fused by one output layer (He et al. 2017, Sec. 3.4, Eq. 11-12).

    No pre-training: trained from scratch like the other tasks (the paper's Sec. 3.4.1 pre-training is optional).
    """

    def __init__(
        self,
        config: NCFConfig = NCFConfig(),
        name: str = "movielens-neumf",
        loader: Callable | None = None,
        data_source: str = DATA_SOURCE,
    ) -> None:
        super().__init__(config, name, loader, data_source)

    @property
    def tower(self) -> tuple[int, ...]:
        """Widths of the MLP tower (Sec. 3.3): concatenated embeddings, halved per layer down to `factors`."""
        c = self.config
        return (2 * c.mlp_embedding, c.mlp_embedding, c.factors)

    def init(self, generator: torch.Generator) -> Params:
        c, data = self.config, self.data
        params = {
            "gmf.user": self._embedding(data.num_users, generator),
            "gmf.item": self._embedding(data.num_items, generator),
            "mlp.user": torch.randn(data.num_users, c.mlp_embedding, generator=generator) * c.embedding_std,
            "mlp.item": torch.randn(data.num_items, c.mlp_embedding, generator=generator) * c.embedding_std,
        }
        for i, (fan_in, fan_out) in enumerate(zip(self.tower[:-1], self.tower[1:], strict=True)):
            params[f"mlp.layer{i}.weight"] = self._dense(fan_in, fan_out, generator)
            params[f"mlp.layer{i}.bias"] = torch.zeros(fan_out)
        params["output.weight"] = self._dense(2 * c.factors, 1, generator).reshape(2 * c.factors)
        params["output.bias"] = torch.zeros(1)
        return params

    def logits(self, params: Params, users: Tensor, items: Tensor) -> Tensor:
        gmf = params["gmf.user"][users] * params["gmf.item"][items]
        mlp = torch.cat([params["mlp.user"][users], params["mlp.item"][items]], dim=1)
        for i in range(len(self.tower) - 1):
            mlp = torch.relu(torch.addmm(params[f"mlp.layer{i}.bias"], mlp, params[f"mlp.layer{i}.weight"]))
        return torch.mv(torch.cat([gmf, mlp], dim=1), params["output.weight"]) + params["output.bias"]


TASKS.add("movielens-gmf", GMFTask)
TASKS.add("movielens-neumf", NeuMFTask)


def moby_dick_passages() -> InteractionSplits:
    """Moby-Dick's passages x words as interactions (meta-train data; loptim/tasks/data/cooccurrence.py)."""
    from loptim.tasks.data.cooccurrence import load_moby_dick_passages

    return load_moby_dick_passages()


# The same models on meta-train data (loptim/tasks/data/cooccurrence.py): Moby-Dick's passages x words, sized as
# MovieLens 100K, for the dev set and meta-training, which had no task whose embedding rows see sparse gradients.
TASKS.add("mobydick-gmf", lambda: GMFTask(NCFConfig(), "mobydick-gmf", moby_dick_passages, "moby-dick"))
TASKS.add("mobydick-neumf", lambda: NeuMFTask(NCFConfig(), "mobydick-neumf", moby_dick_passages, "moby-dick"))
