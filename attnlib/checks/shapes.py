"""Checkers for chapter 2, "Where do the Q, K and V shapes come from?" (chapters/02_shapes.ipynb).

- :func:`check_split_heads`   ``(batch, n, h*d_k), h -> (batch, h, n, d_k)``
- :func:`check_merge_heads`   ``(batch, h, n, d_k) -> (batch, n, h*d_k)``
- :func:`check_mha_from_heads``(x, torch_mha) -> (batch, n, d_model)``, head by head
- :func:`check_parameter_count` ``(d_model, num_heads, num_kv_heads) -> int``
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..counting import mha_parameter_count
from ..mha import MultiHeadAttention, merge_heads, split_heads
from .core import CheckResult, _Calls, call_answer, check_function, checker

_SPLIT_NAME = "split_heads"
_MERGE_NAME = "merge_heads"


def _split_inputs(g):
    batch = int(torch.randint(1, 4, (1,), generator=g))
    n = int(torch.randint(3, 7, (1,), generator=g))
    h = int(torch.randint(2, 5, (1,), generator=g))
    d_k = int(torch.randint(2, 5, (1,), generator=g))
    if n == h:  # keep n and h distinct, so that swapping them changes the shape
        n += 1
    return torch.randn(batch, n, h * d_k, generator=g), h


@checker(_SPLIT_NAME)
def check_split_heads(fn):
    """Check ``fn(x, num_heads)``: ``(batch, n, h*d_k) -> (batch, h, n, d_k)``."""

    def view_no_transpose(x, h):  # heads and positions mixed: the reshape alone is not enough
        b, n, f = x.shape
        return x.reshape(b, h, n, f // h)

    def interleaved(x, h):  # feature j goes to head j % h instead of head j // d_k
        b, n, f = x.shape
        return x.reshape(b, n, f // h, h).permute(0, 3, 1, 2)

    def transpose_wrong_axes(x, h):
        b, n, f = x.shape
        return x.reshape(b, n, h, f // h).transpose(1, 3)

    def no_transpose(x, h):
        b, n, f = x.shape
        return x.reshape(b, n, h, f // h)

    return check_function(
        fn, split_heads, _split_inputs, name=_SPLIT_NAME, trials=4, forbidden=[split_heads],
        mistakes={
            "right shape, but heads and positions are mixed up: reshaping (batch, n, h*d_k) straight "
            "to (batch, h, n, d_k) cuts the memory in the wrong places. Reshape so that the new "
            "axis sits next to the features it comes from, then move it.": view_no_transpose,
            "right shape, but each head gets every h-th feature. Head i owns a contiguous block of "
            "d_k features (columns i*d_k ... (i+1)*d_k - 1 of Q).": interleaved,
            "you swapped the wrong pair of axes: the head axis should end up right after the batch "
            "axis, with positions and features keeping their order.": transpose_wrong_axes,
            "the axes are (batch, n, h, d_k): one step is missing to put the heads before the "
            "positions.": no_transpose,
        },
        hint="the result's head i, position t should be x[:, t, i*d_k:(i+1)*d_k].",
    )


def _merge_inputs(g):
    x, h = _split_inputs(g)
    return (split_heads(x, h),)


@checker(_MERGE_NAME)
def check_merge_heads(fn):
    """Check ``fn(heads)``: ``(batch, h, n, d_k) -> (batch, n, h*d_k)``, the inverse of split_heads."""

    def view_no_transpose(x):
        b, h, n, d = x.shape
        return x.reshape(b, n, h * d)

    def interleaved(x):
        b, h, n, d = x.shape
        return x.permute(0, 2, 3, 1).reshape(b, n, h * d)

    return check_function(
        fn, merge_heads, _merge_inputs, name=_MERGE_NAME, trials=4, forbidden=[merge_heads],
        mistakes={
            "right shape, but heads and positions are mixed up: the memory of (batch, h, n, d_k) "
            "holds head 0's positions first, so a reshape alone glues rows of different positions "
            "together. Bring the positions before the heads first.": view_no_transpose,
            "right shape, but the features are interleaved across heads; concat should put head 0's "
            "d_k features first, then head 1's, and so on.": interleaved,
        },
        hint="merge_heads(split_heads(x, h)) should give x back exactly.",
    )


def _mha_inputs(g):
    d_model = 12
    h = int([2, 3, 4][int(torch.randint(0, 3, (1,), generator=g))])
    batch, n = int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(3, 6, (1,), generator=g))
    mha = nn.MultiheadAttention(d_model, h, batch_first=True)
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(d_model) + 0.1 * torch.randn(p.shape, generator=g))
    mha.eval()
    return torch.randn(batch, n, d_model, generator=g), mha


@checker("multi-head attention from per-head matrices")
def check_mha_from_heads(fn):
    """Check ``fn(x, mha)``: a head-by-head multi-head attention matching ``torch.nn.MultiheadAttention``.

    ``x`` is ``(batch, n, d_model)``; ``mha`` a batch-first ``nn.MultiheadAttention``
    with biases; the result should equal ``mha(x, x, x)[0]``.
    """
    def reference(x, mha):
        return mha(x, x, x, need_weights=False)[0]

    def per_head(x, mha, *, transpose=True, scale=True, bias=True, out=True):
        """Head by head, with switches for the typical mistakes (not importable: graded
        assignments carry their own references, in grading/)."""
        d = mha.embed_dim
        h = mha.num_heads
        d_k = d // h
        W = mha.in_proj_weight
        b = mha.in_proj_bias if bias else torch.zeros(3 * d)
        Wq, Wk, Wv = (W[i * d:(i + 1) * d] for i in range(3))
        if transpose:
            Wq, Wk, Wv = Wq.T, Wk.T, Wv.T  # nn.Linear layout (out, in) -> paper layout (in, out)
        heads = []
        for i in range(h):
            c = slice(i * d_k, (i + 1) * d_k)
            q = x @ Wq[:, c] + b[:d][c]
            k = x @ Wk[:, c] + b[d:2 * d][c]
            v = x @ Wv[:, c] + b[2 * d:][c]
            s = q @ k.transpose(-2, -1)
            if scale:
                s = s / math.sqrt(d_k)
            heads.append(torch.softmax(s, -1) @ v)
        cat = torch.cat(heads, -1)
        if not out:
            return cat
        return F.linear(cat, mha.out_proj.weight, mha.out_proj.bias if bias else None)

    return check_function(
        fn, reference, _mha_inputs, name="multi-head attention from per-head matrices",
        forbidden=[nn.MultiheadAttention.forward, F.multi_head_attention_forward, MultiHeadAttention.forward],
        trials=3, atol=1e-4, rtol=1e-3,
        mistakes={
            "in_proj_weight is stored as nn.Linear stores weights, (out_features, in_features): "
            "x @ W needs the transpose of its rows block.": lambda x, m: per_head(x, m, transpose=False),
            "the scores are not scaled by 1/sqrt(d_k) (d_k is the width of one head).":
                lambda x, m: per_head(x, m, scale=False),
            "the biases are missing: in_proj_bias (and out_proj.bias) are added after the projections.":
                lambda x, m: per_head(x, m, bias=False),
            "the output projection out_proj is missing after the concatenation.":
                lambda x, m: per_head(x, m, out=False),
        },
        hint="head i uses rows i*d_k ... (i+1)*d_k - 1 of each of the three d_model-row blocks of "
             "in_proj_weight (Q first, then K, then V).",
    )


_COUNT_CASES = [(16, 4, 4), (64, 8, 8), (64, 8, 2), (48, 6, 1), (512, 8, 8), (30, 5, 1)]


@checker("parameter count")
def check_parameter_count(fn):
    """Check ``fn(d_model, num_heads, num_kv_heads) -> int``: parameters of one attention layer with biases."""
    name = "parameter count"
    if not callable(fn):
        return CheckResult(False, name, f"expected a function, got a {type(fn).__name__}.")
    wrong = {
        "no biases": lambda d, h, kv: mha_parameter_count(d, h, num_kv_heads=kv, bias=False)["total"],
        "K/V as if every head had its own": lambda d, h, kv: mha_parameter_count(d, h)["total"],
        "d_model^2 per head": lambda d, h, kv: 4 * d * d * h + 4 * d,
    }
    messages = {
        "no biases": "looks like the biases are missing: each of the four projections has one bias per output.",
        "K/V as if every head had its own": "with num_kv_heads < num_heads, W_K and W_V only have "
                                            "num_kv_heads * d_k columns each.",
        "d_model^2 per head": "each head's matrices are d_model x d_k with d_k = d_model / h, not "
                              "d_model x d_model: the heads share the width, they do not multiply it.",
    }
    for d, h, kv in _COUNT_CASES:
        expected = mha_parameter_count(d, h, num_kv_heads=kv)["total"]
        with _Calls([mha_parameter_count]) as calls:
            got, failed = call_answer(name, fn, d, h, kv)
        if failed is not None:
            return failed
        if calls.called is not None:
            return CheckResult(False, name, "your function calls the library's own `mha_parameter_count`: "
                               "the exercise is to count the parameters yourself.")
        if got is None:
            return CheckResult(False, name, "your function returned None: is a `return` missing?")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and math.isfinite(got) and got == int(got):
            got = int(got)
        if not isinstance(got, int) or isinstance(got, bool):
            return CheckResult(False, name, f"expected an integer, got a {type(got).__name__}.")
        if got != expected:
            for key, w in wrong.items():
                if got == w(d, h, kv) and w(d, h, kv) != expected:
                    return CheckResult(False, name, f"for d_model={d}, num_heads={h}, num_kv_heads={kv}: "
                                       + messages[key])
            return CheckResult(False, name, f"for d_model={d}, num_heads={h}, num_kv_heads={kv} your count "
                               f"is {got}, which is {'too high' if got > expected else 'too low'}. Add up "
                               "the four matrices and the four bias vectors one by one.")
    return CheckResult(True, name, f"right on {len(_COUNT_CASES)} configurations, from multi-head to multi-query.")
