"""Checkers for the notation chapter (chapters/00_notation.ipynb)."""
import math

import torch

from ..sdpa import attention
import torch.nn.functional as F

from .core import check_function, checker


def _inputs(g):
    batch, n_q, n_k, d_k, d_v = 2, int(torch.randint(3, 7, (1,), generator=g)), 5, 4, 6
    return (torch.randn(batch, n_q, d_k, generator=g), torch.randn(batch, n_k, d_k, generator=g),
            torch.randn(batch, n_k, d_v, generator=g))


@checker("scaled dot-product attention")
def check_attention(fn):
    """Check ``fn(Q, K, V)``: softmax(Q K^T / sqrt(d_k)) V for (batch, n, d) tensors."""
    def no_scale(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1), -1) @ V

    def wrong_axis(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -2) @ V

    def scale_by_d(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1) / Q.shape[-1], -1) @ V

    return check_function(
        fn, attention, _inputs, name="scaled dot-product attention",
        forbidden=[attention, F.scaled_dot_product_attention],
        mistakes={
            "the scores are not scaled: divide Q K^T by sqrt(d_k) before the softmax.": no_scale,
            "you divided by d_k; the paper divides by its square root.": scale_by_d,
            "the softmax runs over the wrong axis: each query's weights over the keys "
            "(the last axis of the scores) should sum to 1.": wrong_axis,
        },
        hint="the scores are Q K^T with K transposed on its last two axes (use K.transpose(-2, -1), "
             "not K.T, which also flips the batch axis).",
    )
