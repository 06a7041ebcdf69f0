"""Meta-training task families on meta-train data only (loptim.tasks.partition): tiny MLPs and CNNs on 14x14
MNIST, small character LMs on Moby-Dick and SOTU, tabular MLPs on Ecdat HI, GRU forecasters of daily US births,
`tiny-mixed`, an even mixture of the four, and `wide-mixed`, larger models of the shapes the suite holds. Each
samples width, depth, activation, batch size and length; the tiny families keep 50 inner steps well under a second
on one thread, `wide-mixed` under two (measured by benchmarks/tasks/time_tasks.py --families; docs/data.md).
"""

from __future__ import annotations

import torch

from loptim.tasks.base import Task, TaskFamily, log_uniform_int, uniform_choice
from loptim.tasks.image import CNNConfig, CNNTask, ImageMLPConfig, MLPTask
from loptim.tasks.recsys import GMFTask, NCFConfig, NeuMFTask, moby_dick_passages
from loptim.tasks.recurrent import RNNLMConfig, RNNLMTask
from loptim.tasks.registry import FAMILIES
from loptim.tasks.resnet import ResNetConfig, ResNetTask
from loptim.tasks.tabular import ForecastConfig, ForecastTask, TableMLPConfig, TableMLPTask
from loptim.tasks.text import CharLMConfig, CharLMTask

ACTIVATION_CHOICES = ("relu", "tanh", "sigmoid")
STEPS = (50, 400)  # inner-run lengths, log-uniform


class TinyImageFamily(TaskFamily):
    """MLPs (1-2 layers of 8-64) or CNNs (2-3 stride-2 layers of 4-16 channels) on MNIST pooled to 14x14."""

    name = "tiny-image"

    def __init__(self, dataset: str = "mnist", steps: tuple[int, int] = STEPS) -> None:
        self.dataset = dataset
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        steps = log_uniform_int(generator, *self.steps)
        batch_size = uniform_choice(generator, (16, 32, 64, 128))
        if uniform_choice(generator, ("mlp", "cnn")) == "mlp":
            width = log_uniform_int(generator, 8, 64)
            hidden = (width,) * uniform_choice(generator, (1, 2))
            activation = uniform_choice(generator, ACTIVATION_CHOICES)
            return MLPTask(ImageMLPConfig(self.dataset, hidden, activation, batch_size, steps, init_std=None, pool=2))
        width = uniform_choice(generator, (4, 8, 16))
        channels = tuple(width * min(2**i, 2) for i in range(uniform_choice(generator, (2, 3))))
        activation = uniform_choice(generator, ("relu", "tanh"))
        return CNNTask(CNNConfig(self.dataset, channels, activation, batch_size, steps, pool=2))


class TinyTextFamily(TaskFamily):
    """Character LMs on Moby-Dick or SOTU: a GRU/LSTM (embeddings 8-32, hidden 16-48) or a 1-layer transformer
    (width 16-32), contexts of 16-32 characters."""

    name = "tiny-text"

    def __init__(self, corpora: tuple[str, ...] = ("moby-dick", "sotu"), steps: tuple[int, int] = STEPS) -> None:
        self.corpora = corpora
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        corpus = uniform_choice(generator, self.corpora)
        steps = log_uniform_int(generator, *self.steps)
        context = uniform_choice(generator, (16, 32))
        batch_size = uniform_choice(generator, (8, 16, 32))
        model = uniform_choice(generator, ("gru", "lstm", "transformer"))
        if model == "transformer":
            width = uniform_choice(generator, (16, 32))
            config = CharLMConfig(corpus, width, 1, uniform_choice(generator, (1, 2)), context, batch_size, steps)
            return CharLMTask(config)
        embed, hidden = uniform_choice(generator, (8, 16, 32)), log_uniform_int(generator, 16, 48)
        return RNNLMTask(RNNLMConfig(corpus, model, embed, hidden, 1, context, batch_size, steps))


class TinyTabularFamily(TaskFamily):
    """MLPs of 1-3 layers of 8-128 units on the Ecdat HI table (binary classification)."""

    name = "tiny-tabular"

    def __init__(self, table: str = "health-insurance", steps: tuple[int, int] = STEPS) -> None:
        self.table = table
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        hidden = (log_uniform_int(generator, 8, 128),) * uniform_choice(generator, (1, 2, 3))
        activation = uniform_choice(generator, ACTIVATION_CHOICES)
        batch_size = uniform_choice(generator, (32, 64, 128, 256))
        return TableMLPTask(
            TableMLPConfig(self.table, hidden, activation, batch_size, log_uniform_int(generator, *self.steps))
        )


class TinySeriesFamily(TaskFamily):
    """GRU forecasters (1-2 layers of 8-32 units, 7 or 14 days of context) of daily US births."""

    name = "tiny-series"

    def __init__(self, series: str = "us-births", steps: tuple[int, int] = STEPS) -> None:
        self.series = series
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        config = ForecastConfig(
            self.series,
            hidden=log_uniform_int(generator, 8, 32),
            layers=uniform_choice(generator, (1, 2)),
            context=uniform_choice(generator, (7, 14)),
            batch_size=uniform_choice(generator, (16, 32, 64)),
            steps=log_uniform_int(generator, *self.steps),
        )
        return ForecastTask(config)


class TinyMixedFamily(TaskFamily):
    """An even mixture of the image, text, tabular and time-series families: four modalities of meta-train data."""

    name = "tiny-mixed"

    def __init__(self, steps: tuple[int, int] = STEPS) -> None:
        self.families = (TinyImageFamily(steps=steps), TinyTextFamily(steps=steps), TinyTabularFamily(steps=steps),
                         TinySeriesFamily(steps=steps))  # fmt: skip

    def sample(self, generator: torch.Generator) -> Task:
        return uniform_choice(generator, self.families).sample(generator)


class WideMixedFamily(TaskFamily):
    """Models of the shapes the suite and the generalist's selection score hold, on meta-train data, about three
    times a tiny task's cost per step on average (docs/data.md): tabular MLPs (1-3 layers of 64-256) on HI, MLPs
    (64-256) and ResNets on full-size MNIST, GRU forecasters (32-64 units, 28 days) of US births, 2-layer character
    transformers (width 32-64, contexts 32-64) on Moby-Dick, and GMF/NeuMF recommenders on its passages x words."""

    name = "wide-mixed"
    KINDS = ("table", "image", "resnet", "series", "transformer", "recsys")

    def __init__(self, steps: tuple[int, int] = STEPS) -> None:
        self.steps = steps

    def sample(self, generator: torch.Generator) -> Task:
        kind, steps = uniform_choice(generator, self.KINDS), log_uniform_int(generator, *self.steps)
        if kind == "table":
            hidden = (log_uniform_int(generator, 64, 256),) * uniform_choice(generator, (1, 2, 3))
            activation = uniform_choice(generator, ("relu", "tanh"))
            batch_size = uniform_choice(generator, (64, 128, 256))
            return TableMLPTask(TableMLPConfig("health-insurance", hidden, activation, batch_size, steps))
        if kind == "image":
            hidden = (log_uniform_int(generator, 64, 256),) * uniform_choice(generator, (1, 2))
            batch_size = uniform_choice(generator, (64, 128))
            return MLPTask(ImageMLPConfig("mnist", hidden, "relu", batch_size, steps, init_std=None))
        if kind == "resnet":
            channels = uniform_choice(generator, ((8, 16), (16, 32)))
            return ResNetTask(ResNetConfig("mnist", channels, 1, uniform_choice(generator, (32, 64)), steps))
        if kind == "series":
            hidden, layers = log_uniform_int(generator, 32, 64), uniform_choice(generator, (1, 2))
            return ForecastTask(
                ForecastConfig("us-births", hidden, layers, 28, uniform_choice(generator, (32, 64)), steps)
            )
        if kind == "transformer":
            d_model = uniform_choice(generator, (32, 64))
            heads, context = uniform_choice(generator, (2, 4)), uniform_choice(generator, (32, 64))
            config = CharLMConfig("moby-dick", d_model, 2, heads, context, uniform_choice(generator, (16, 32)), steps)
            return CharLMTask(config)
        config = NCFConfig(factors=uniform_choice(generator, (8, 16)), batch_size=uniform_choice(generator, (128, 256)))
        kind, model = uniform_choice(generator, (("gmf", GMFTask), ("neumf", NeuMFTask)))
        return model(config, f"mobydick-{kind}-f{config.factors}-b{config.batch_size}", moby_dick_passages, "moby-dick")


for _family in (TinyImageFamily, TinyTextFamily, TinyTabularFamily, TinySeriesFamily, TinyMixedFamily, WideMixedFamily):
    FAMILIES.add(_family.name, _family)
