"""The held-out suite (docs/data.md, the suite tasks): 12 core tasks on suite data across 5 modalities, a large
tier, and the meta-validation tasks. Every task's data set is in the partition (loptim.tasks.partition); sizes were
chosen so a core run with Adam takes at most ~30 s on one thread, validation included
(benchmarks/tasks/time_tasks.py)."""

from __future__ import annotations

from collections.abc import Callable

from loptim.tasks.audio import DigitsConfig, DigitsTask
from loptim.tasks.base import Task
from loptim.tasks.image import ImageMLPConfig, MLPTask
from loptim.tasks.recurrent import RNNLMConfig, RNNLMTask
from loptim.tasks.registry import TASKS
from loptim.tasks.resnet import ResNetConfig, ResNetTask
from loptim.tasks.tabular import TableMLPConfig, TableMLPTask
from loptim.tasks.text import CharLMConfig, CharLMTask

# Registered elsewhere and reused here: fashion-cnn (image.py), shakespeare-char (text.py), movielens-gmf and
# movielens-neumf (recsys.py), the four held-out tasks of the LHOPT and Metz results.
_NEW_CORE: dict[str, Callable[[], Task]] = {
    "fashion-mlp-relu": lambda: MLPTask(
        ImageMLPConfig("fashion-mnist", hidden=(128, 64), activation="relu", steps=600, init_std=None),
        "fashion-mlp-relu",
    ),
    "fashion-resnet": lambda: ResNetTask(ResNetConfig("fashion-mnist", channels=(16, 32), blocks=1), "fashion-resnet"),
    "shakespeare-gru": lambda: RNNLMTask(
        RNNLMConfig("shakespeare", "gru", embed=32, hidden=96, context=48, default_steps=600), "shakespeare-gru"
    ),
    "brown-lstm": lambda: RNNLMTask(
        RNNLMConfig("brown", "lstm", embed=32, hidden=64, context=32, default_steps=600), "brown-lstm"
    ),
    "brown-transformer": lambda: CharLMTask(
        CharLMConfig("brown", d_model=32, layers=2, heads=2, context=32, default_steps=600), "brown-transformer"
    ),
    "diamonds-mlp": lambda: TableMLPTask(TableMLPConfig("diamonds", hidden=(128, 128), steps=1000), "diamonds-mlp"),
    "fsdd-gru": lambda: DigitsTask(DigitsConfig("gru", hidden=64, steps=600), "fsdd-gru"),
    "fsdd-cnn": lambda: DigitsTask(DigitsConfig("cnn", hidden=64, layers=2, steps=600), "fsdd-cnn"),
}

SUITE_CORE: tuple[str, ...] = (
    "fashion-mlp-relu",
    "fashion-cnn",
    "fashion-resnet",
    "shakespeare-char",
    "shakespeare-gru",
    "brown-lstm",
    "brown-transformer",
    "movielens-gmf",
    "movielens-neumf",
    "diamonds-mlp",
    "fsdd-gru",
    "fsdd-cnn",
)

# `loptim suite --quick` (and CI): two core tasks of seconds per run, two modalities.
SUITE_QUICK: tuple[str, ...] = ("fashion-mlp-relu", "movielens-gmf")

# 1M+ parameters and 2,000+ steps: minutes to hours per run on 2 cores, run across sessions from the cache.
_LARGE: dict[str, Callable[[], Task]] = {
    "shakespeare-char-large": lambda: CharLMTask(
        CharLMConfig("shakespeare", d_model=192, layers=4, heads=6, context=128, batch_size=32, default_steps=3000),
        "shakespeare-char-large",
    ),
    "fashion-resnet-large": lambda: ResNetTask(
        ResNetConfig("fashion-mnist", channels=(64, 128, 256), blocks=1, steps=2000), "fashion-resnet-large"
    ),
    "brown-lstm-large": lambda: RNNLMTask(
        RNNLMConfig("brown", "lstm", embed=256, hidden=512, context=64, default_steps=2000), "brown-lstm-large"
    ),
}
SUITE_LARGE: tuple[str, ...] = tuple(_LARGE)

# Meta-validation (checkpoint and design selection): an image-free table and a text, on meta-valid data only.
_META_VALID: dict[str, Callable[[], Task]] = {
    "spam-gru": lambda: RNNLMTask(
        RNNLMConfig("spam-assassin", "gru", embed=16, hidden=64, context=32, default_steps=300), "spam-gru"
    ),
    "doctor-contacts-mlp": lambda: TableMLPTask(
        TableMLPConfig("doctor-contacts", hidden=(64, 64), steps=500), "doctor-contacts-mlp"
    ),
    # Wider, longer and a transformer (recipe mlp-generalist-fold's selection score): the shipped generalists'
    # failures showed on wide and long runs and on transformers, none of which the first two have.
    "doctor-contacts-mlp-wide": lambda: TableMLPTask(
        TableMLPConfig("doctor-contacts", hidden=(128, 128), steps=1000), "doctor-contacts-mlp-wide"
    ),
    "spam-gru-long": lambda: RNNLMTask(
        RNNLMConfig("spam-assassin", "gru", embed=16, hidden=64, context=32, default_steps=1200), "spam-gru-long"
    ),
    "spam-char": lambda: CharLMTask(
        CharLMConfig("spam-assassin", d_model=32, layers=2, heads=2, context=32, default_steps=600), "spam-char"
    ),
}
META_VALID_TASKS: tuple[str, ...] = tuple(_META_VALID)

for _name, _factory in {**_NEW_CORE, **_LARGE, **_META_VALID}.items():
    TASKS.add(_name, _factory)
