"""MovieLens 100K as implicit feedback, split leave-one-out by time as in NCF (He et al. 2017, Sec. 4.1).

Each user's latest interaction is the test item and the one before it the validation item; ties in time are broken
by item id. Each held-out item is ranked against 99 items the user never interacted with, sampled once by seed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import InteractionSplits
from loptim.tasks.data.sources import MOVIELENS_FILE, SOURCES, cached_tensors, data_files

NUM_NEGATIVES = 99  # He et al. 2017, Sec. 4.1: "randomly sampled 100 items that are not interacted by the user"
NEGATIVE_SEEDS = {"valid": 0, "test": 1}  # one torch.Generator stream per split
_FORMAT = "v1"  # bump when the parsing, the split or the seeds change, so cached tensors are rebuilt
_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def read_interactions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw user ids, item ids and timestamps (int64) of recbole's atomic `.inter` file (TSV, typed header)."""
    with open(path, encoding="utf-8") as file:
        header = tuple(column.split(":")[0] for column in file.readline().rstrip("\n").split("\t"))
        if header[: len(_COLUMNS)] != _COLUMNS:
            raise LoptimError(f"{path} has columns {header}, not {_COLUMNS}; reinstall recbole==1.2.1")
        table = np.loadtxt(file, delimiter="\t", dtype=np.float64, ndmin=2)
    # Ids and Unix timestamps are integers below 2**53, so float64 holds them exactly.
    columns = table[:, [0, 1, 3]].astype(np.int64)
    return columns[:, 0], columns[:, 1], columns[:, 2]


def sample_negatives(interacted: Tensor, count: int, seed: int) -> Tensor:
    """(users, count) distinct items per user drawn uniformly among those with `interacted` False, fixed by seed.

    The `count` smallest of i.i.d. uniform scores form a uniform random subset; interacted items score above all.
    """
    available = (~interacted).sum(dim=1)
    if int(available.min()) < count:
        raise LoptimError(f"a user has only {int(available.min())} items left to sample {count} negatives from")
    scores = torch.rand(interacted.shape, generator=torch.Generator().manual_seed(seed))
    scores[interacted] = 2.0
    return scores.topk(count, dim=1, largest=False).indices


def leave_one_out(raw_users: np.ndarray, raw_items: np.ndarray, timestamps: np.ndarray) -> dict[str, Tensor]:
    """Contiguous ids from sorted raw ids, then per user (timestamp, item) order: last is test, second last valid."""
    raw_user_ids, users = np.unique(raw_users, return_inverse=True)
    raw_item_ids, items = np.unique(raw_items, return_inverse=True)
    num_users, num_items = len(raw_user_ids), len(raw_item_ids)
    users, items = users.reshape(-1), items.reshape(-1)
    if len(np.unique(users * num_items + items)) != len(users):
        raise LoptimError("MovieLens holds a (user, item) pair twice; reinstall recbole==1.2.1")

    order = np.lexsort((items, timestamps, users))  # by user, then time, then item
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=num_users)
    if counts.min() < 3:
        raise LoptimError(f"a MovieLens user has {counts.min()} interactions; leave-one-out needs 3")
    last = np.cumsum(counts) - 1
    held_out = np.zeros(len(users), dtype=bool)
    held_out[last] = True
    held_out[last - 1] = True
    user_ids = np.arange(num_users)

    interacted = torch.zeros(num_users, num_items, dtype=torch.bool)
    interacted[torch.from_numpy(users), torch.from_numpy(items)] = True
    train = torch.from_numpy(np.stack([users[~held_out], items[~held_out]], axis=1))
    train_interacted = torch.zeros(num_users, num_items, dtype=torch.bool)
    train_interacted[train[:, 0], train[:, 1]] = True
    return {
        "train": train,
        "valid": torch.from_numpy(np.stack([user_ids, items[last - 1]], axis=1)),
        "test": torch.from_numpy(np.stack([user_ids, items[last]], axis=1)),
        "valid_negatives": sample_negatives(interacted, NUM_NEGATIVES, NEGATIVE_SEEDS["valid"]),
        "test_negatives": sample_negatives(interacted, NUM_NEGATIVES, NEGATIVE_SEEDS["test"]),
        "train_interacted": train_interacted,
    }


@functools.lru_cache(maxsize=1)
def load_movielens_100k() -> InteractionSplits:
    """MovieLens 100K leave-one-out splits with 99 fixed negatives per held-out item (PyPI recbole==1.2.1)."""
    path = data_files("movielens-100k")[MOVIELENS_FILE]
    tensors = cached_tensors(f"movielens-100k-{_FORMAT}", [path], lambda: leave_one_out(*read_interactions(path)))
    num_users, num_items = tensors["train_interacted"].shape
    return InteractionSplits(**tensors, num_users=num_users, num_items=num_items, source=SOURCES["movielens-100k"])
