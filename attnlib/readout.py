"""Tools for chapter 5 ([CLS] or mean pooling?): what a pooling costs, what it looks at, and a baseline.

``pooling_cost``       parameters and forward time of one pooling module
``cls_attention``      the [CLS] query's weights over the input positions, first block
``pooling_weights``    the weights of a learned attention pooling over the positions
``attention_to``       how much attention the first block's queries pay to chosen positions
``length_accuracy``    accuracy of several trained models on test sets of several lengths
``logistic_baseline``  logistic regression on flattened inputs (e.g. raw pixels)

Shapes follow :mod:`attnlib.models`: inputs ``(batch, n)`` token ids or
``(batch, n, input_dim)`` vectors; weights come back as ``(batch, n)``.
"""
import time

import numpy as np
import torch

from .models import SequenceClassifier, count_parameters
from .pooling import AttentionPooling, make_pooling
from .training import accuracy


def pooling_cost(name: str, d_model: int, n: int, *, batch: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """What the pooling ``name`` adds to a model, and how long it takes.

    Returns ``{"pooling", "params", "ms", "sequential_steps"}``: trainable
    parameters of the pooling itself (for ``"cls"``, the ``d_model`` numbers of
    the [CLS] vector that the encoder prepends), the best of ``repeats`` forward
    times in milliseconds on a ``(batch, n, d_model)`` input, and how many steps
    must run one after another (``n`` for the RNN, 1 otherwise).
    The [CLS] token's real cost, one more position in every attention layer,
    is not in ``ms``: it is paid inside the encoder.
    """
    torch.manual_seed(seed)
    module = make_pooling(name, d_model)
    params = count_parameters(module) + (d_model if name == "cls" else 0)
    x = torch.randn(batch, n, d_model)
    best = float("inf")
    with torch.no_grad():
        module(x)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            module(x)
            best = min(best, time.perf_counter() - t)
    return {"pooling": name, "params": params, "ms": 1000 * best,
            "sequential_steps": n if name == "rnn" else 1}


@torch.no_grad()
def cls_attention(model: SequenceClassifier, X: torch.Tensor) -> torch.Tensor:
    """The [CLS] query's attention over the input positions in the first block, averaged over heads.

    ``model`` must have ``pooling="cls"`` and at least one block (pre-LN or no norm).
    Returns ``(batch, n)``: weights on the ``n`` input positions (the [CLS]
    position's weight on itself is left out, so rows sum to at most 1).
    """
    enc = model.encoder
    if enc.cls is None or len(enc.blocks) == 0:
        raise ValueError("cls_attention needs a model with pooling='cls' and at least one block")
    block = enc.blocks[0]
    h = enc.embed_input(X)
    if block.norm == "pre":
        h = block.ln1(h)
    _, w = block.attn(h, return_weights=True)  # (batch, heads, n+1, n+1)
    return w[:, :, 0, 1:].mean(1)


@torch.no_grad()
def pooling_weights(model: SequenceClassifier, X: torch.Tensor) -> torch.Tensor:
    """The learned attention pooling's weights over the positions, ``(batch, n)``; rows sum to 1."""
    if not isinstance(model.pool, AttentionPooling):
        raise ValueError("pooling_weights needs a model with pooling='attention'")
    return model.pool.weights(model.encoder(X))


@torch.no_grad()
def attention_to(model: SequenceClassifier, X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Total first-block attention weight on the positions where ``mask`` is True.

    ``X``: ``(batch, n)`` token ids or ``(batch, n, input_dim)``; ``mask``: ``(batch, n)`` bool.
    Returns ``(batch,)``: for each sequence, the weight the queries put on the masked keys,
    averaged over heads and over the ``n`` input positions as queries (a [CLS] position,
    if any, is left out as query and as key). Uniform attention would give
    ``mask.sum(1) / n``.
    """
    enc = model.encoder
    if len(enc.blocks) == 0:
        raise ValueError("attention_to needs a model with at least one block")
    block = enc.blocks[0]
    h = enc.embed_input(X)
    if block.norm == "pre":
        h = block.ln1(h)
    _, w = block.attn(h, return_weights=True)  # (batch, heads, n', n')
    if enc.cls is not None:
        w = w[:, :, 1:, 1:]
    return (w * mask[:, None, None, :].to(w.dtype)).sum(-1).mean((1, 2))


def length_accuracy(models, tests: dict) -> np.ndarray:
    """Accuracy of each model on each test set: ``(num_models, len(tests))``.

    ``tests`` maps a length to an ``(X, y)`` pair (a TaskData works: its first two fields are used).
    """
    return np.array([[accuracy(m, t[0], t[1]) for t in tests.values()] for m in models])


def logistic_baseline(X_train, y_train, X_test, y_test, *, C: float = 1.0) -> float:
    """Test accuracy of scikit-learn's LogisticRegression on the flattened inputs."""
    from sklearn.linear_model import LogisticRegression

    flat = lambda X: np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    clf = LogisticRegression(C=C, max_iter=2000).fit(flat(X_train), np.asarray(y_train))
    return float(clf.score(flat(X_test), np.asarray(y_test)))
