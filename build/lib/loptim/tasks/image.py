"""MLPs and small CNNs on MNIST and Fashion-MNIST, written as pure functions of a parameter dict."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, TaskFamily, check_split, log_uniform_int, uniform_choice
from loptim.tasks.data.base import ImageSplits
from loptim.tasks.registry import FAMILIES, TASKS

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


def dense_forward(params: Params, x: Tensor, activation: str, hidden_layers: int) -> Tensor:
    """x through dense layers w0/b0 .. w{hidden_layers}/b{hidden_layers}, the activation between them."""
    act = ACTIVATIONS[activation]
    for i in range(hidden_layers + 1):
        x = torch.addmm(params[f"b{i}"], x, params[f"w{i}"])
        if i < hidden_layers:
            x = act(x)
    return x


# Per-data-set pixel statistics of the training images, used to standardize CNN inputs.
PIXEL_STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
EVAL_CHUNK = 1000  # narrow matmuls over 1K rows stay cache-resident (docs/design.md, performance facts)


def load_images(dataset: str) -> ImageSplits:
    from loptim.tasks.data import images

    loaders = {"mnist": images.load_mnist, "fashion-mnist": images.load_fashion_mnist}
    if dataset not in loaders:
        raise ValueError(f"unknown image data set '{dataset}'; use one of {', '.join(loaders)}")
    return loaders[dataset]()


class ImageTask(Task):
    """Shared data handling of the image tasks: lazy loading, uniform random minibatches, fixed eval chunks."""

    dataset: str
    standardize: bool
    pool: int = 1  # average-pool the images by this factor (2: 14x14), for cheap meta-training tasks
    eval_limit: int | None = None  # evaluate on the first this-many images of a split (None: all of it)

    @property
    def side(self) -> int:
        """Image side length after pooling."""
        return 28 // self.pool

    @cached_property
    def data(self) -> ImageSplits:
        return load_images(self.dataset)

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 (N, 28, 28) -> float inputs: pixels in [0, 1] (average-pooled by `pool`), standardized for CNNs."""
        x = images.to(torch.float32).div_(255.0)
        if self.pool > 1:
            x = F.avg_pool2d(x.unsqueeze(1), self.pool).squeeze(1)
        if self.standardize:
            mean, std = PIXEL_STATS[self.dataset]
            x = x.sub_(mean).div_(std)
        return x

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        """Minibatches drawn uniformly with replacement, as the official L2L code samples MNIST."""
        check_split(split)
        images, labels = self.data.split(split)
        while True:
            index = torch.randint(images.shape[0], (self.batch_size,), generator=generator)
            yield self.prepare(images[index]), labels[index]

    @cached_property
    def _eval_sets(self) -> dict[str, list[tuple[Batch, float]]]:
        sets = {}
        for split in ("train", "valid", "test"):
            images, labels = self.data.split(split)
            images, labels = images[: self.eval_limit], labels[: self.eval_limit]
            chunks = []
            for start in range(0, images.shape[0], EVAL_CHUNK):
                x, y = images[start : start + EVAL_CHUNK], labels[start : start + EVAL_CHUNK]
                chunks.append((self.eval_batch(self.prepare(x), y), float(x.shape[0])))
            sets[split] = chunks
        return sets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        check_split(split)
        return self._eval_sets[split]

    def eval_batch(self, images: Tensor, labels: Tensor) -> Batch:
        """How an evaluation chunk is stored; MLPs override it with a faster layout."""
        return images, labels

    def batch_logits(self, params: Params, batch: Batch) -> Tensor:
        images, _ = batch
        first = next(iter(params.values()))
        return self.logits(params, images.to(first.dtype))

    def metrics(self, params: Params, split: str) -> dict[str, float]:
        correct, total = 0.0, 0.0
        for batch, weight in self.eval_batches(split):
            correct += float((self.batch_logits(params, batch).argmax(-1) == batch[1]).sum())
            total += weight
        return {"accuracy": correct / total}

    def logits(self, params: Params, images: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, params: Params, batch: Batch) -> Tensor:
        return F.cross_entropy(self.batch_logits(params, batch), batch[1])


class ColumnBatch(NamedTuple):
    """Images flattened feature-major, (784, N) contiguous: the first layer becomes one W^T @ X GEMM, faster
    than X @ W (docs/design.md, performance facts). Used for the MLPs' evaluation sets (validated every step)."""

    columns: Tensor
    labels: Tensor


@dataclass(frozen=True)
class ImageMLPConfig:
    """An MLP classifier; defaults are L2L's MNIST problem (Andrychowicz et al. 2016, Sec. 3.2)."""

    dataset: str = "mnist"
    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    batch_size: int = 128
    steps: int = 100
    init_std: float | None = 0.01  # official L2L code: w, b ~ N(0, 0.01^2); None = fan-in (LeCun) init
    pool: int = 1  # 2: 14x14 images (meta-training families)


class MLPTask(ImageTask):
    """Flattened 28x28 (or pooled) images -> hidden layers -> 10 logits, cross-entropy loss."""

    standardize = False

    def __init__(self, config: ImageMLPConfig = ImageMLPConfig(), name: str | None = None) -> None:
        if config.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{config.activation}'; use one of {', '.join(ACTIVATIONS)}")
        self.config = config
        self.dataset = config.dataset
        self.pool = config.pool
        pooled = f"-{28 // config.pool}px" if config.pool > 1 else ""
        self.name = (
            name or f"{config.dataset}{pooled}-mlp-" + "x".join(map(str, config.hidden)) + f"-{config.activation}"
        )
        self.default_steps = config.steps
        self.batch_size = config.batch_size
        self.data_source = config.dataset

    def init(self, generator: torch.Generator) -> Params:
        sizes = (self.side**2, *self.config.hidden, 10)
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = self.config.init_std if self.config.init_std is not None else 1.0 / math.sqrt(fan_in)
            params[f"w{i}"] = torch.randn(fan_in, fan_out, generator=generator) * std
            params[f"b{i}"] = (
                torch.randn(fan_out, generator=generator) * std if self.config.init_std else torch.zeros(fan_out)
            )
        return params

    def logits(self, params: Params, images: Tensor) -> Tensor:
        return dense_forward(
            params, images.reshape(images.shape[0], -1), self.config.activation, len(self.config.hidden)
        )

    def eval_batch(self, images: Tensor, labels: Tensor) -> Batch:
        return ColumnBatch(images.reshape(images.shape[0], -1).t().contiguous(), labels)

    def batch_logits(self, params: Params, batch: Batch) -> Tensor:
        if not isinstance(batch, ColumnBatch):
            return super().batch_logits(params, batch)
        act = ACTIVATIONS[self.config.activation]
        first = next(iter(params.values()))
        x = batch.columns.to(first.dtype)
        layers = len(self.config.hidden) + 1
        for i in range(layers):  # the same layers as `logits`, transposed: h^T = W^T x^T + b
            x = torch.addmm(params[f"b{i}"].unsqueeze(1), params[f"w{i}"].t(), x)
            if i < layers - 1:
                x = act(x)
        return x.t()


@dataclass(frozen=True)
class CNNConfig:
    """A small all-convolutional classifier: stride-2 3x3 convolutions, global average pool, linear head."""

    dataset: str = "mnist"
    channels: tuple[int, ...] = (16, 32, 32)
    activation: str = "relu"
    batch_size: int = 128
    steps: int = 500
    pool: int = 1  # 2: 14x14 images (meta-training families)


class CNNTask(ImageTask):
    """Standardized 1x28x28 (or pooled) images -> conv stack (He init) -> mean pool -> 10 logits."""

    standardize = True

    def __init__(self, config: CNNConfig = CNNConfig(), name: str | None = None) -> None:
        self.config = config
        self.dataset = config.dataset
        self.pool = config.pool
        pooled = f"-{28 // config.pool}px" if config.pool > 1 else ""
        self.name = name or f"{config.dataset}{pooled}-cnn-" + "x".join(map(str, config.channels))
        self.default_steps = config.steps
        self.batch_size = config.batch_size
        self.data_source = config.dataset

    def init(self, generator: torch.Generator) -> Params:
        params, in_channels = {}, 1
        for i, out_channels in enumerate(self.config.channels):
            fan_in = in_channels * 9
            params[f"conv{i}"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * math.sqrt(
                2.0 / fan_in
            )
            params[f"bias{i}"] = torch.zeros(out_channels)
            in_channels = out_channels
        params["head_w"] = torch.randn(in_channels, 10, generator=generator) / math.sqrt(in_channels)
        params["head_b"] = torch.zeros(10)
        return params

    def logits(self, params: Params, images: Tensor) -> Tensor:
        act = ACTIVATIONS[self.config.activation]
        x = images.reshape(images.shape[0], 1, self.side, self.side)
        for i in range(len(self.config.channels)):
            x = act(F.conv2d(x, params[f"conv{i}"], params[f"bias{i}"], stride=2, padding=1))
        return torch.addmm(params["head_b"], x.mean(dim=(2, 3)), params["head_w"])


class ImageMLPFamily(TaskFamily):
    """MNIST MLPs of random width, depth, activation, batch size and length (Metz 2019 / LHOPT meta-training)."""

    name = "mnist-mlp"

    def __init__(
        self,
        dataset: str = "mnist",
        steps: tuple[int, int] = (100, 400),
        widths: tuple[int, int] = (16, 128),
        depths: tuple[int, ...] = (1, 2, 3),
    ) -> None:
        self.dataset = dataset
        self.steps = steps
        self.widths = widths
        self.depths = depths

    def sample(self, generator: torch.Generator) -> Task:
        depth = uniform_choice(generator, self.depths)
        width = log_uniform_int(generator, *self.widths)
        config = ImageMLPConfig(
            dataset=self.dataset,
            hidden=(width,) * depth,
            activation=uniform_choice(generator, ("relu", "tanh", "sigmoid")),
            batch_size=uniform_choice(generator, (32, 64, 128)),
            steps=log_uniform_int(generator, *self.steps),
            init_std=None,
        )
        return MLPTask(config)


class ImageCNNFamily(TaskFamily):
    """MNIST CNNs of random channel widths, depth, batch size and length."""

    name = "mnist-cnn"

    def __init__(
        self, dataset: str = "mnist", steps: tuple[int, int] = (100, 400), widths: tuple[int, ...] = (8, 16, 32)
    ) -> None:
        self.dataset = dataset
        self.steps = steps
        self.widths = widths

    def sample(self, generator: torch.Generator) -> Task:
        depth = uniform_choice(generator, (2, 3))
        width = uniform_choice(generator, self.widths)
        config = CNNConfig(
            dataset=self.dataset,
            channels=tuple(width * min(2**i, 2) for i in range(depth)),
            batch_size=uniform_choice(generator, (32, 64, 128)),
            steps=log_uniform_int(generator, *self.steps),
        )
        return CNNTask(config)


class ImageMixFamily(TaskFamily):
    """Small MLPs (1-2 layers of 16-64) or CNNs (2-3 layers, 8-16 base channels), even odds, on one image data set:
    the Metz 2019 meta-training distribution here, sized so an outer step costs seconds on one core."""

    name = "mnist-mix"

    def __init__(self, dataset: str = "mnist", steps: tuple[int, int] = (100, 600)) -> None:
        self.families = (
            ImageMLPFamily(dataset, steps, widths=(16, 64), depths=(1, 2)),
            ImageCNNFamily(dataset, steps, widths=(8, 16)),
        )

    def sample(self, generator: torch.Generator) -> Task:
        return uniform_choice(generator, self.families).sample(generator)


def _register() -> None:
    mlp = {
        "mnist-mlp": ImageMLPConfig(),
        "mnist-mlp-40": ImageMLPConfig(hidden=(40,)),
        "mnist-mlp-2layer": ImageMLPConfig(hidden=(20, 20)),
        "mnist-mlp-relu": ImageMLPConfig(activation="relu"),
        "fashion-mlp": ImageMLPConfig(dataset="fashion-mnist"),
    }
    for name, config in mlp.items():
        TASKS.add(name, lambda config=config, name=name: MLPTask(config, name))
    cnn = {"mnist-cnn": CNNConfig(), "fashion-cnn": CNNConfig(dataset="fashion-mnist")}
    for name, config in cnn.items():
        TASKS.add(name, lambda config=config, name=name: CNNTask(config, name))
    FAMILIES.add("mnist-mlp", ImageMLPFamily)
    FAMILIES.add("mnist-cnn", ImageCNNFamily)
    FAMILIES.add("mnist-mix", ImageMixFamily)


_register()
