"""The passages x words interaction data (loptim/tasks/data/cooccurrence.py): a known answer on a tiny text, the
leave-one-out split it feeds, and the registered tasks' place in the partition."""

from __future__ import annotations

import pytest

from loptim.errors import LoptimError
from loptim.tasks import get_task
from loptim.tasks.data.cooccurrence import passage_words
from loptim.tasks.data.movielens import leave_one_out
from loptim.tasks.partition import check_meta_trainable

TEXT = "The cat sat. The dog sat on the mat! A cat, a dog; the end."


def test_passage_words_known_answer():
    # words: the cat sat the dog sat on the mat a cat a dog the end (15); counts: the 4, a 2, cat 2, dog 2, sat 2,
    # end 1, mat 1, on 1 -> after skipping "the", the vocabulary (3 words) is a, cat, dog (ties by word)
    users, items, positions = passage_words(TEXT, passages=2, vocabulary=3, skip=1)
    # passages: words 0-7 (the cat sat the dog sat on the) and 8-14 (mat a cat a dog the end)
    got = sorted(zip(users.tolist(), items.tolist(), positions.tolist()))
    assert got == [(0, 1, 1), (0, 2, 4), (1, 0, 9), (1, 1, 10), (1, 2, 12)]  # first occurrences only


def test_passage_words_feed_leave_one_out_by_first_occurrence():
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [letters[i // 26] + letters[i % 26] for i in range(200)]  # 200 distinct words, each once
    users, items, positions = passage_words(" ".join(words), passages=4, vocabulary=200, skip=0)
    splits = leave_one_out(users, items, positions)
    # passage p holds words 50p..50p+49 in order (vocabulary ids = sorted words = text order): its last word is
    # its test item, the one before its valid item, the other 48 train positives; negatives avoid all 50
    assert int(splits["train_interacted"].sum()) == 4 * 48
    for p in range(4):
        assert splits["test"][p].tolist() == [p, 50 * p + 49] and splits["valid"][p].tolist() == [p, 50 * p + 48]
        for negatives in (splits["valid_negatives"][p], splits["test_negatives"][p]):
            assert not ((negatives >= 50 * p) & (negatives < 50 * p + 50)).any()


def test_too_short_a_text_is_refused():
    with pytest.raises(LoptimError, match="too few"):
        passage_words(TEXT, passages=2, vocabulary=50, skip=0)


@pytest.mark.parametrize("name", ["mobydick-gmf", "mobydick-neumf"])
def test_recommendation_tasks_on_meta_train_data(name):
    task = get_task(name)
    assert task.data_source == "moby-dick" and check_meta_trainable(task) is task
    assert get_task(name.replace("mobydick", "movielens")).data_source == "movielens-100k"
