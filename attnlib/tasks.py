"""Deterministic data sets: synthetic tasks that isolate one mechanism, and one real one.

Every function takes a ``seed`` and returns the same tensors for the same
arguments. Token tasks return a :class:`TaskData` ``(X, y, vocab_size,
num_classes)``; positions that carry no label have ``y == IGNORE`` (-100, the
default ``ignore_index`` of ``torch.nn.functional.cross_entropy``).
"""
from typing import NamedTuple

import numpy as np
import torch

IGNORE = -100


class TaskData(NamedTuple):
    X: torch.Tensor  # (num_examples, n) token ids
    y: torch.Tensor  # (num_examples,) or (num_examples, n) labels
    vocab_size: int
    num_classes: int


def _generator(seed):
    return torch.Generator().manual_seed(int(seed))


def associative_recall(num_examples, num_pairs, *, num_keys=None, num_values=None, seed=0) -> TaskData:
    """Multi-query associative recall (after Arora et al. 2023, "Zoology").

    A sequence lists ``num_pairs`` key-value pairs, then asks for every key again
    in a shuffled order::

        k_1 v_1 k_2 v_2 ... k_N v_N | q_1 q_2 ... q_N       (length 3N)

    The label at query position ``q_j`` is the value that was paired with that
    key; other positions are ``IGNORE``. Keys are ids ``0 .. num_keys-1``, values
    ``num_keys .. num_keys+num_values-1``; labels are value indices
    ``0 .. num_values-1``. Keys in one sequence are distinct.
    """
    num_keys = num_keys or max(2 * num_pairs, 8)
    num_values = num_values or max(2 * num_pairs, 8)
    if num_pairs > num_keys:
        raise ValueError(f"num_pairs ({num_pairs}) cannot exceed num_keys ({num_keys})")
    g = _generator(seed)
    keys = torch.argsort(torch.rand(num_examples, num_keys, generator=g), dim=1)[:, :num_pairs]
    values = torch.randint(0, num_values, (num_examples, num_pairs), generator=g)
    order = torch.argsort(torch.rand(num_examples, num_pairs, generator=g), dim=1)
    X = torch.empty(num_examples, 3 * num_pairs, dtype=torch.long)
    X[:, 0:2 * num_pairs:2] = keys
    X[:, 1:2 * num_pairs:2] = values + num_keys
    X[:, 2 * num_pairs:] = torch.gather(keys, 1, order)
    y = torch.full_like(X, IGNORE)
    y[:, 2 * num_pairs:] = torch.gather(values, 1, order)
    return TaskData(X, y, num_keys + num_values, num_values)


def find_the_needle(num_examples, length, *, vocab_size=16, seed=0) -> TaskData:
    """Is the needle (token 0) in the sequence? One label per sequence.

    Other tokens are drawn uniformly from ``1 .. vocab_size-1``. Half of the
    sequences (chosen at random) get exactly one needle at a random position.
    """
    if vocab_size < 2:
        raise ValueError("vocab_size must be at least 2 (the needle and one distractor)")
    g = _generator(seed)
    X = torch.randint(1, vocab_size, (num_examples, length), generator=g)
    y = (torch.rand(num_examples, generator=g) < 0.5).long()
    where = torch.randint(0, length, (num_examples,), generator=g)
    rows = torch.nonzero(y).squeeze(1)
    X[rows, where[rows]] = 0
    return TaskData(X, y, vocab_size, 2)


def counting(num_examples, length, *, vocab_size=8, max_count=None, seed=0) -> TaskData:
    """Per-token counting: at every position, how often does this token occur in the sequence?

    Label ``min(count, max_count) - 1``, so classes are ``0 .. max_count-1``
    (default ``max_count = length``).
    """
    max_count = max_count or length
    g = _generator(seed)
    X = torch.randint(0, vocab_size, (num_examples, length), generator=g)
    counts = (X.unsqueeze(2) == X.unsqueeze(1)).sum(-1)  # (N, n): occurrences of X[i, t]
    y = counts.clamp(max=max_count) - 1
    return TaskData(X, y, vocab_size, max_count)


def majority(num_examples, length, *, num_classes=4, seed=0) -> TaskData:
    """Which token is the most frequent? One label per sequence, always a unique answer.

    Tokens are uniform over ``0 .. num_classes-1``; where two tokens tie for the
    most frequent, one position holding another token is rewritten to a tied one
    (chosen at random), which breaks the tie.
    """
    rng = np.random.default_rng(int(seed))
    X = rng.integers(0, num_classes, size=(num_examples, length))
    y = np.empty(num_examples, dtype=np.int64)
    for i in range(num_examples):
        counts = np.bincount(X[i], minlength=num_classes)
        tied = np.flatnonzero(counts == counts.max())
        if len(tied) > 1:
            winner = rng.choice(tied)
            others = np.flatnonzero(X[i] != winner)
            X[i, rng.choice(others)] = winner
        y[i] = np.bincount(X[i], minlength=num_classes).argmax()
    return TaskData(torch.as_tensor(X), torch.as_tensor(y), num_classes, num_classes)


class DigitsData(NamedTuple):
    X_train: torch.Tensor  # (N_train, num_patches, patch*patch) float32 in [0, 1]
    y_train: torch.Tensor  # (N_train,)
    X_test: torch.Tensor
    y_test: torch.Tensor


def digits_patches(patch: int = 2, *, test_fraction: float = 0.3, seed: int = 0) -> DigitsData:
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped with the package)
    cut into non-overlapping ``patch x patch`` patches, row by row.

    With ``patch=2``: 16 patches of 4 pixels. Pixel values are scaled to [0, 1].
    The train/test split is stratified by class and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits

    if 8 % patch != 0:
        raise ValueError(f"patch must divide 8, got {patch}")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.long)
    p = 8 // patch
    X = images.reshape(-1, p, patch, p, patch).transpose(2, 3).reshape(-1, p * p, patch * patch)
    g = _generator(seed)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(labels == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[: int(round(test_fraction * len(idx)))]] = True
    return DigitsData(X[~test], labels[~test], X[test], labels[test])


class TextData(NamedTuple):
    X_train: torch.Tensor  # (N_train, max_len) token ids, PAD (0) after the snippet's last token
    y_train: torch.Tensor  # (N_train,) 1 = fresh (positive), 0 = rotten (negative)
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    vocab: list  # id -> word; vocab[0] = "<pad>", vocab[1] = "<unk>"


#: the padding and unknown-word ids of :func:`movie_reviews`
PAD, UNK = 0, 1


def movie_reviews(*, vocab_size: int = 5000, max_len: int = 48, test_movies: int = 100, val_movies: int = 50,
                  seed: int = 0) -> TextData:
    """Rotten Tomatoes review snippets labelled fresh (1) or rotten (0): real text, shipped with attnlib.

    The snippets are the Rotten Tomatoes reviews of Pang and Lee's subjectivity dataset v1.0
    (Cornell; CC BY 4.0), about 12,800 snippets of 500 movies, 58 % fresh, shipped with attnlib
    as ``attnlib/data/rotten_tomatoes_reviews.csv.bz2`` (its README says where it comes from
    and what was changed).

    Duplicate snippets are dropped. The split is by *movie* (``seed`` shuffles the movies):
    ``test_movies`` movies for the test set, ``val_movies`` for validation, the rest for
    training, so that no movie's reviews sit on both sides. Words are lower-cased runs of
    letters and digits (with an apostrophe part, e.g. "isn't") and single punctuation marks;
    the vocabulary is the ``vocab_size - 2`` most frequent words of the training split (other
    words become ``UNK``). A snippet longer than ``max_len`` words is cut; shorter ones are
    padded with ``PAD``.
    """
    import bz2
    import csv
    import io
    import re
    from collections import Counter
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "rotten_tomatoes_reviews.csv.bz2"
    rows, seen = [], set()
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(io.StringIO(f.read())):
            if row["category"] in ("fresh", "rotten") and row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
    movies = sorted({r["movie_name"] for r in rows})
    order = np.random.default_rng(int(seed)).permutation(len(movies))
    part = {movies[i]: ("test" if k < test_movies else "val" if k < test_movies + val_movies else "train")
            for k, i in enumerate(order)}
    words = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
    tokens = [words.findall(r["text"].lower()) for r in rows]
    counts = Counter(w for r, t in zip(rows, tokens) if part[r["movie_name"]] == "train" for w in t)
    vocab = ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(vocab_size - 2)]
    index = {w: i for i, w in enumerate(vocab)}

    def encode(name):
        chosen = [(t, r) for t, r in zip(tokens, rows) if part[r["movie_name"]] == name]
        X = torch.full((len(chosen), max_len), PAD, dtype=torch.long)
        for i, (t, _) in enumerate(chosen):
            ids = [index.get(w, UNK) for w in t[:max_len]]
            X[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return X, torch.tensor([r["category"] == "fresh" for _, r in chosen], dtype=torch.long)

    return TextData(*encode("train"), *encode("val"), *encode("test"), vocab)
