"""Spoken-digit classification from MFCC sequences (FSDD): a GRU and a residual 1-D CNN, as pure functions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, check_split
from loptim.tasks.data.base import SequenceSplits
from loptim.tasks.recurrent import init_rnn, rnn_module, run_rnn

MFCCS = 13


def load_digits() -> SequenceSplits:
    """FSDD's MFCC splits, imported lazily so listing tasks loads no data."""
    from loptim.tasks.data.audio import load_fsdd

    return load_fsdd()


@dataclass(frozen=True)
class DigitsConfig:
    """A spoken-digit classifier: `model` "gru" (last hidden state) or "cnn" (residual 1-D convs, masked mean)."""

    model: str = "gru"
    hidden: int = 64
    layers: int = 1  # GRU layers, or residual blocks of the CNN
    kernel: int = 5  # CNN kernel size (odd)
    batch_size: int = 32
    steps: int = 600

    def __post_init__(self) -> None:
        if self.model not in ("gru", "cnn"):
            raise ValueError(f"unknown digits model '{self.model}'; use gru or cnn")
        if min(self.hidden, self.layers, self.batch_size, self.steps) < 1 or self.kernel % 2 == 0:
            raise ValueError(f"sizes of {self} must be positive and the kernel odd")


class DigitsTask(Task):
    """Cross-entropy over 10 digits of FSDD utterances (13 MFCCs per frame, 6-92 frames); batches are cropped to
    their longest utterance, padding is masked out."""

    data_source = "fsdd"

    def __init__(self, config: DigitsConfig = DigitsConfig(), name: str | None = None) -> None:
        self.config = config
        self.name = name or f"fsdd-{config.model}-h{config.hidden}-l{config.layers}"
        self.default_steps = config.steps
        self.batch_size = config.batch_size

    @cached_property
    def data(self) -> SequenceSplits:
        return load_digits()

    @cached_property
    def rnn(self):
        return rnn_module("gru", MFCCS, self.config.hidden, self.config.layers)

    def init(self, generator: torch.Generator) -> Params:
        c = self.config
        if c.model == "gru":
            params = init_rnn(self.rnn, generator)
        else:
            params = {"stem.weight": self._conv(c.hidden, MFCCS, generator), "stem.bias": torch.zeros(c.hidden)}
            for b in range(c.layers):
                params[f"block{b}.conv1.weight"] = self._conv(c.hidden, c.hidden, generator)
                params[f"block{b}.conv1.bias"] = torch.zeros(c.hidden)
                params[f"block{b}.conv2.weight"] = torch.zeros(c.hidden, c.hidden, c.kernel)  # SkipInit
                params[f"block{b}.conv2.bias"] = torch.zeros(c.hidden)
        params["head.weight"] = torch.randn(c.hidden, 10, generator=generator) / math.sqrt(c.hidden)
        params["head.bias"] = torch.zeros(10)
        return params

    def _conv(self, out_channels: int, in_channels: int, generator: torch.Generator) -> Tensor:
        kernel = self.config.kernel
        std = math.sqrt(2.0 / (in_channels * kernel))
        return torch.randn(out_channels, in_channels, kernel, generator=generator) * std

    def features(self, params: Params, frames: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, 13) padded frames -> (B, hidden) utterance features."""
        c = self.config
        if c.model == "gru":
            outputs = run_rnn(self.rnn, params, frames)
            return outputs[torch.arange(frames.shape[0]), lengths - 1]  # the state after the last real frame
        mask = (torch.arange(frames.shape[1]) < lengths[:, None]).unsqueeze(1).to(frames.dtype)  # (B, 1, T)
        pad = c.kernel // 2
        x = torch.relu(F.conv1d(frames.transpose(1, 2) * mask, params["stem.weight"], params["stem.bias"], padding=pad))
        for b in range(c.layers):
            h = torch.relu(
                F.conv1d(x * mask, params[f"block{b}.conv1.weight"], params[f"block{b}.conv1.bias"], padding=pad)
            )
            x = torch.relu(
                x + F.conv1d(h * mask, params[f"block{b}.conv2.weight"], params[f"block{b}.conv2.bias"], padding=pad)
            )
        return (x * mask).sum(2) / lengths[:, None].to(frames.dtype)

    def batch_logits(self, params: Params, batch: Batch) -> Tensor:
        frames, lengths, _ = batch
        first = next(iter(params.values()))
        features = self.features(params, frames.to(first.dtype), lengths)
        return torch.addmm(params["head.bias"], features, params["head.weight"])

    def loss(self, params: Params, batch: Batch) -> Tensor:
        return F.cross_entropy(self.batch_logits(params, batch), batch[2])

    @staticmethod
    def _crop(frames: Tensor, lengths: Tensor, labels: Tensor) -> Batch:
        return frames[:, : int(lengths.max())], lengths, labels

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        """Utterances drawn uniformly with replacement, cropped to the batch's longest."""
        check_split(split)
        frames, lengths, labels = self.data.split(split)
        while True:
            index = torch.randint(frames.shape[0], (self.batch_size,), generator=generator)
            yield self._crop(frames[index], lengths[index], labels[index])

    @cached_property
    def _eval_sets(self) -> dict[str, list[tuple[Batch, float]]]:
        """Whole splits in chunks of 300 utterances sorted by length, so little padding is computed."""
        sets = {}
        for split in ("train", "valid", "test"):
            frames, lengths, labels = self.data.split(split)
            order = lengths.argsort()
            sets[split] = [
                (self._crop(frames[chunk], lengths[chunk], labels[chunk]), float(chunk.numel()))
                for chunk in order.split(300)
            ]
        return sets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        check_split(split)
        return self._eval_sets[split]

    def metrics(self, params: Params, split: str) -> dict[str, float]:
        correct = sum(
            float((self.batch_logits(params, b).argmax(-1) == b[2]).sum()) for b, _ in self.eval_batches(split)
        )
        return {"accuracy": correct / self.data.split(split)[0].shape[0]}
