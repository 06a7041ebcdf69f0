"""The committed partition: every data set in exactly one part, the suite holding the original held-out data,
every task's data set in the partition, the families on meta-train data only, and meta-training refusing suite
data in the L2L, Metz and LHOPT trainers."""

from __future__ import annotations

import pytest
import torch

from loptim.errors import SuiteDataError, UnknownNameError
from loptim.meta.recipes import RECIPES, L2LRecipe
from loptim.meta.trainer import MetaTrainer
from loptim.tasks import FAMILIES, TASKS, get_family, get_task
from loptim.tasks.data.sources import SOURCES
from loptim.tasks.image import ImageMLPFamily
from loptim.tasks.partition import PARTITION, PARTS, SYNTHETIC, check_meta_trainable, datasets, part_of
from loptim.tasks.suite import META_VALID_TASKS, SUITE_CORE, SUITE_LARGE

IMAGE_DATA = {"mnist", "fashion-mnist"}
TEXT_DATA = {"shakespeare", "moby-dick", "brown", "sotu", "spam-assassin"}


def test_every_data_source_is_in_exactly_one_part():
    assert set(PARTITION) == set(SOURCES) | {SYNTHETIC}
    assert set(PARTITION.values()) == set(PARTS)
    assert sorted(d for part in PARTS for d in datasets(part)) == sorted(PARTITION), "parts are disjoint and cover"


def test_suite_holds_the_original_held_out_data_and_meta_train_the_originals():
    assert {"fashion-mnist", "shakespeare", "movielens-100k"} <= set(datasets("suite"))
    assert {"mnist", "moby-dick", SYNTHETIC} <= set(datasets("meta-train"))
    meta_valid = set(datasets("meta-valid"))
    assert meta_valid & TEXT_DATA and meta_valid - TEXT_DATA - IMAGE_DATA


def test_every_registered_task_names_a_partitioned_data_set():
    for name in TASKS.names():
        assert get_task(name).data_source in PARTITION, name


def test_suite_core_is_12_suite_tasks_over_at_least_4_modalities():
    assert len(SUITE_CORE) == 12 == len(set(SUITE_CORE))
    data = {get_task(name).data_source for name in SUITE_CORE + SUITE_LARGE}
    assert all(part_of(d) == "suite" for d in data)
    modalities = {"images": IMAGE_DATA, "text": TEXT_DATA, "recommendation": {"movielens-100k"},
                  "tabular": {"diamonds"}, "audio": {"fsdd"}}  # fmt: skip
    covered = {modality for modality, members in modalities.items() if data & members}
    assert len(covered) >= 4, covered
    assert all(200 <= get_task(name).default_steps <= 2000 for name in SUITE_CORE)
    assert len(SUITE_LARGE) >= 2 and all(get_task(name).default_steps >= 2000 for name in SUITE_LARGE)
    assert all(part_of(get_task(name).data_source) == "meta-valid" for name in META_VALID_TASKS)


def test_suite_large_tasks_have_a_million_parameters():
    for name in SUITE_LARGE:
        shapes = get_task(name).init(torch.Generator().manual_seed(0))
        assert sum(p.numel() for p in shapes.values()) >= 1_000_000, name


@pytest.mark.parametrize(
    "family", ["tiny-image", "tiny-text", "tiny-tabular", "tiny-series", "tiny-mixed", "wide-mixed"]
)
def test_meta_training_families_sample_meta_train_data_only(family):
    seen, kinds = set(), set()
    for seed in range(48):
        task = check_meta_trainable(get_family(family).sample(torch.Generator().manual_seed(seed)))
        assert part_of(task.data_source) == "meta-train", task.name
        seen.add(task.data_source)
        kinds.add(type(task).__name__)
    if family == "tiny-mixed":
        assert seen == {"mnist", "moby-dick", "sotu", "health-insurance", "us-births"}
    if family == "wide-mixed":  # every shape it names, on its four meta-train data sets
        assert seen == {"mnist", "moby-dick", "health-insurance", "us-births"}
        assert kinds == {"TableMLPTask", "MLPTask", "ResNetTask", "ForecastTask", "CharLMTask", "GMFTask", "NeuMFTask"}


def test_check_meta_trainable_refuses_suite_data_in_one_line():
    assert check_meta_trainable(get_task("mnist-cnn")).name == "mnist-cnn"
    for name in ("fashion-cnn", "shakespeare-char", "movielens-gmf", "diamonds-mlp", "fsdd-gru", "brown-lstm"):
        with pytest.raises(SuiteDataError, match="partition") as error:
            check_meta_trainable(get_task(name))
        message = str(error.value)
        assert "\n" not in message and get_task(name).data_source in message and "mnist" in message
    with pytest.raises(UnknownNameError, match="no part of the partition"):
        part_of("cifar10")


def test_l2l_meta_training_refuses_a_suite_task(tmp_path):
    with pytest.raises(SuiteDataError, match="fashion-mnist"):
        MetaTrainer(L2LRecipe(name="bad", task="fashion-mlp", epochs=1), tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written before the refusal"


def test_metz_meta_training_refuses_a_family_that_draws_suite_data(tmp_path):
    from loptim.meta.trainer import MetaTrainer

    trainer = MetaTrainer(RECIPES.get("tiny-metz"), tmp_path)
    trainer.tasks.family = ImageMLPFamily(dataset="fashion-mnist")
    with pytest.raises(SuiteDataError, match="fashion-mnist"):
        trainer.tasks.task(123)
    with pytest.raises(SuiteDataError, match="fashion-mnist"):
        trainer.evaluate()


def test_every_family_in_the_registry_is_on_meta_train_data():
    for name in FAMILIES.names():
        task = get_family(name).sample(torch.Generator().manual_seed(0))
        assert part_of(task.data_source) == "meta-train", (name, task.name)
