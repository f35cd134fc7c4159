"""Checkers for the pooling chapter (chapters/05_pooling.ipynb)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..pooling import AttentionPooling
from .core import check_function, checker


def _library(x, q):
    """attnlib's AttentionPooling with the query ``q``: what the learner's function must match."""
    pool = AttentionPooling(x.shape[-1]).to(x.dtype)
    pool.query.data = q
    return pool(x)


def _inputs(g):
    batch, n, d = 3, int(torch.randint(4, 9, (1,), generator=g)), 6
    return torch.randn(batch, n, d, generator=g) * 2, torch.randn(d, generator=g) * 2


@checker("attention pooling")
def check_attention_pooling(fn):
    """Check ``fn(x, q)``: one learned query ``q`` (d,) pools ``x`` (batch, n, d) into (batch, d)."""
    def no_scale(x, q):
        w = torch.softmax(x @ q, dim=-1)
        return (w.unsqueeze(-1) * x).sum(1)

    def scale_by_d(x, q):
        w = torch.softmax(x @ q / x.shape[-1], dim=-1)
        return (w.unsqueeze(-1) * x).sum(1)

    def wrong_axis(x, q):
        w = torch.softmax(x * q / math.sqrt(x.shape[-1]), dim=-1)  # over features, not positions
        return (w * x).sum(1)

    def no_softmax(x, q):
        return ((x @ q / math.sqrt(x.shape[-1])).unsqueeze(-1) * x).sum(1)

    def mean(x, q):
        return x.mean(1)

    def weights_only(x, q):
        return torch.softmax(x @ q / math.sqrt(x.shape[-1]), dim=-1)

    return check_function(
        fn, _library, _inputs, name="attention pooling",
        forbidden=[AttentionPooling.forward, AttentionPooling.weights, F.scaled_dot_product_attention,
                   nn.MultiheadAttention.forward],
        mistakes={
            "the scores are not scaled: divide x q by sqrt(d) before the softmax.": no_scale,
            "you divided by d; divide by its square root.": scale_by_d,
            "the weights should be normalised over the positions (one weight per position, summing to 1 "
            "along the sequence axis), not over the features.": wrong_axis,
            "the scores are used as weights directly: they need normalising so that they are "
            "non-negative and sum to 1 over the positions.": no_softmax,
            "that is mean pooling: the weights should depend on how well each position matches q.": mean,
            "you returned the weights, one per position; return the weighted sum of the positions' vectors.":
                weights_only,
        },
        hint="score every position against q, normalise the scores over the sequence axis, then "
             "take the weighted sum of the position vectors.",
    )
