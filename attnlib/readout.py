"""Tools for chapter 5 ([CLS] or mean pooling?): what a pooling costs, what it looks at, and a baseline.

``SumPooling``         the sum over positions (no 1/n); ``make_readout`` / ``classifier`` add it
                       to :data:`attnlib.pooling.POOLINGS` without changing the shared module
``tune_lr``            train each configuration at a few learning rates, pick each one's rate on
                       validation data (never the test data), keep the runs and their curves
``pooling_cost``       parameters and forward time (median and spread) of one pooling module
``key_weights``        first-block attention each key position receives, averaged over queries
``cls_attention``      the [CLS] query's weights over the input positions, first block
``pooling_weights``    the weights of a learned attention pooling over the positions
``attention_to``       how much attention the first block's queries pay to chosen positions
``length_accuracy``    accuracy of several trained models on test sets of several lengths
``logistic_baseline``  logistic regression on flattened inputs (e.g. raw pixels)
``TextClassifier``     padded token ids -> logits, with the padding masked in attention and pooling
``frozen_embedding``   a classifier whose token embedding stays at its random initialisation
``sequential_steps``   how many steps of a pooling must run one after another for n tokens

Shapes follow :mod:`attnlib.models`: inputs ``(batch, n)`` token ids or
``(batch, n, input_dim)`` vectors; weights come back as ``(batch, n)``.
"""
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .alternatives import time_fn
from .block import TransformerBlock
from .models import SequenceClassifier, count_parameters
from .pooling import POOLINGS, AttentionPooling, make_pooling
from .training import accuracy, train

READOUTS = POOLINGS + ("sum",)


class SumPooling(nn.Module):
    """``x.sum(1)``: the mean times n, so a lone token's signal does not shrink with n."""

    def forward(self, x):
        return x.sum(dim=1)


def make_readout(name: str, d_model: int) -> nn.Module:
    """The pooling module ``name``: one of :data:`READOUTS` (the shared poolings and ``"sum"``)."""
    if name == "sum":
        return SumPooling()
    if name not in POOLINGS:
        raise ValueError(f"pooling must be one of {READOUTS}, got {name!r}")
    return make_pooling(name, d_model)


def classifier(pooling: str, num_classes: int, d_model: int, num_heads: int = 1, num_layers: int = 1,
               **encoder_kwargs) -> SequenceClassifier:
    """:class:`attnlib.models.SequenceClassifier` that also accepts ``pooling="sum"``."""
    model = SequenceClassifier(num_classes, d_model, num_heads, num_layers,
                               pooling="mean" if pooling == "sum" else pooling, **encoder_kwargs)
    if pooling == "sum":
        model.pool = SumPooling()
    return model


class Tuned(NamedTuple):
    lr: dict  # name -> the learning rate chosen on the validation data
    models: dict  # (name, lr) -> list of trained models, one per seed
    history: dict  # (name, lr) -> History (training loss; eval = validation accuracy)
    val_acc: dict  # (name, lr) -> (seeds,) validation accuracy at the end
    val_loss: dict  # (name, lr) -> (seeds,) validation cross-entropy at the end

    def best(self, name):
        """``(models, history)`` of ``name`` at its chosen learning rate."""
        return self.models[(name, self.lr[name])], self.history[(name, self.lr[name])]


@torch.no_grad()
def _val_loss(model, X, y):
    model.eval()
    return float(F.cross_entropy(model(X), y))


def tune_lr(builds: dict, data, val, lrs, *, seeds, tie=0.005, **train_kwargs) -> Tuned:
    """Train every configuration at every learning rate; choose each one's rate on ``val``.

    Args:
        builds: ``{name: () -> model}``.
        data: training ``(X, y)``, as in :func:`attnlib.training.train`.
        val: validation ``(X, y)``, disjoint from the training and the test data. The
            learning curves record accuracy on it (``History.eval``).
        lrs: the learning rates to try (the same for every configuration).
        seeds: the seeds; every configuration and rate trains on all of them.
        tie: the rule, fixed in advance: the highest mean validation accuracy wins; rates
            within ``tie`` of it are broken by the lower mean validation loss.
        train_kwargs: passed to :func:`attnlib.training.train` (steps, batch_size, ...).
    """
    if not lrs:
        raise ValueError("lrs must not be empty")
    Xv, yv = val[0], val[1]
    models, history, val_acc, val_loss, chosen = {}, {}, {}, {}, {}
    for name, build in builds.items():
        for lr in lrs:
            ms, h = train(build, data, seeds=seeds, lr=lr, progress=False,
                          evaluate=lambda m: accuracy(m, Xv, yv), **train_kwargs)
            models[(name, lr)], history[(name, lr)] = ms, h
            val_acc[(name, lr)] = h.eval[:, -1]
            val_loss[(name, lr)] = np.array([_val_loss(m, Xv, yv) for m in ms])
        top = max(val_acc[(name, lr)].mean() for lr in lrs)
        near = [lr for lr in lrs if val_acc[(name, lr)].mean() >= top - tie]
        chosen[name] = min(near, key=lambda lr: val_loss[(name, lr)].mean())
    return Tuned(chosen, models, history, val_acc, val_loss)


def pooling_cost(name: str, d_model: int, n: int, *, batch: int = 32, rounds: int = 5, repeats: int = 5,
                 seed: int = 0) -> dict:
    """What the pooling ``name`` adds to a model, and how long it takes, with the spread.

    Returns ``{"pooling", "params", "us", "us_lo", "us_hi", "ms", "sequential_steps"}``: trainable
    parameters of the pooling itself (for ``"cls"``, the ``d_model`` numbers of the [CLS]
    vector that the encoder prepends); the CPU time of one forward pass on a
    ``(batch, n, d_model)`` input in microseconds, measured with
    :func:`attnlib.alternatives.time_fn` (the median of ``repeats``) in each of ``rounds``
    rounds: ``us`` is the median over the rounds and ``us_lo``/``us_hi`` their range (``ms``:
    ``us`` in milliseconds). Each
    timed call runs the pooling enough times in a row to take about 2 ms, so that the
    clock's resolution does not dominate. ``sequential_steps``: how many steps must run
    one after another (``n`` for the RNN, 1 otherwise).
    The [CLS] token's real cost, one more position in every attention layer, is not in
    ``us``: it is paid inside the encoder.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    torch.manual_seed(seed)
    module = make_readout(name, d_model)
    params = count_parameters(module) + (d_model if name == "cls" else 0)
    x = torch.randn(batch, n, d_model)
    once = time_fn(module, x, repeats=3)
    inner = int(min(1000, max(1, math.ceil(2e-3 / max(once, 1e-7)))))

    def many(x):
        for _ in range(inner):
            module(x)

    times = np.array([time_fn(many, x, repeats=repeats) / inner for _ in range(rounds)]) * 1e6
    return {"pooling": name, "params": params, "us": float(np.median(times)), "us_lo": float(times.min()),
            "us_hi": float(times.max()), "ms": float(np.median(times)) / 1000,
            "sequential_steps": n if name == "rnn" else 1}


def _first_block_weights(enc, X: torch.Tensor) -> torch.Tensor:
    """The first block's attention weights ``(batch, heads, n', n')`` (n' counts a [CLS] position)."""
    block = enc.blocks[0]
    h = enc.embed_input(X)
    if block.norm == "pre":
        h = block.ln1(h)
    return block.attn(h, return_weights=True)[1]


@torch.no_grad()
def key_weights(model: SequenceClassifier, X: torch.Tensor) -> torch.Tensor:
    """First-block attention received by each input position, ``(batch, n)``.

    Averaged over heads and over the ``n`` input positions as queries (a [CLS] position,
    if any, is left out as query and as key); rows sum to 1 without [CLS], to at most 1 with it.
    """
    enc = model.encoder
    if len(enc.blocks) == 0:
        raise ValueError("key_weights needs a model with at least one block")
    w = _first_block_weights(enc, X)  # (batch, heads, n', n')
    if enc.cls is not None:
        w = w[:, :, 1:, 1:]
    return w.mean((1, 2))


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
    w = _first_block_weights(enc, X)  # (batch, heads, n+1, n+1)
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
    w = _first_block_weights(enc, X)  # (batch, heads, n', n')
    if enc.cls is not None:
        w = w[:, :, 1:, 1:]
    return (w * mask[:, None, None, :].to(w.dtype)).sum(-1).mean((1, 2))


@torch.no_grad()
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


def frozen_embedding(model: SequenceClassifier) -> SequenceClassifier:
    """``model`` with its token embedding fixed at its random initialisation (not trained).

    The embedding's weights stop requiring gradients, so :func:`attnlib.training.train` leaves
    them alone; the rest of the model learns as usual. Returns the same model.
    """
    model.encoder.embed.weight.requires_grad_(False)
    return model


def sequential_steps(pooling: str, n: int) -> int:
    """How many steps must run one after another to pool ``n`` vectors: ``n`` for the GRU, else 1."""
    return n if pooling == "rnn" else 1


class TextClassifier(nn.Module):
    """Padded token ids ``(batch, n)`` -> logits ``(batch, num_classes)``, the padding ignored.

    Token id ``pad_id`` (default 0) marks padding after a text's last token. Learned positions;
    ``num_layers`` pre-LN blocks whose attention never reads a padded key; a final LayerNorm;
    then the pooling over the real tokens only:

    - ``"cls"``: a learned [CLS] vector is prepended (position 0) and its output is read;
    - ``"mean"``: the average of the real tokens' outputs;
    - ``"max"``: the feature-wise maximum over the real tokens;
    - ``"attention"``: one learned query, ``softmax(h q / sqrt(d_model))`` over the real tokens.

    Without padding it computes what :class:`attnlib.models.SequenceClassifier` computes with
    the same pooling, learned positions and ``pre`` blocks.
    """

    POOLINGS = ("cls", "mean", "max", "attention")

    def __init__(self, pooling: str, num_classes: int, d_model: int, num_heads: int = 1, num_layers: int = 1,
                 *, vocab_size: int, max_len: int, pad_id: int = 0):
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.pooling, self.pad_id = pooling, pad_id
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len + 1, d_model)  # one more position for [CLS]
        self.cls = nn.Parameter(torch.randn(d_model) * 0.02) if pooling == "cls" else None
        self.query = nn.Parameter(torch.randn(d_model) / math.sqrt(d_model)) if pooling == "attention" else None
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads) for _ in range(num_layers))
        self.final_ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        pad = x == self.pad_id  # (batch, n), True where there is no token
        h = self.embed(x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], dim=1)
            pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        h = h + self.pos.weight[:h.shape[1]]
        for block in self.blocks:
            h = block(h, key_padding_mask=pad)
        h = self.final_ln(h)  # (batch, n (+1), d_model)
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif self.pooling == "mean":
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        elif self.pooling == "max":
            pooled = h.masked_fill(pad.unsqueeze(-1), float("-inf")).max(1).values
        else:
            scores = (h @ self.query / math.sqrt(h.shape[-1])).masked_fill(pad, float("-inf"))
            pooled = (torch.softmax(scores, dim=-1).unsqueeze(-1) * h).sum(1)
        return self.head(pooled)
