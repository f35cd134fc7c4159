"""Chapter 2's checkers: right answers pass, typical mistakes get a hint, odd answers no traceback."""
import math

from attnlib.checks import outcome
import pytest
import torch
import torch.nn.functional as F

from attnlib.checks.shapes import check_merge_heads, check_mha_from_heads, check_parameter_count, check_split_heads
from attnlib.counting import mha_parameter_count
from attnlib.mha import merge_heads, split_heads


def _per_head(x, mha, *, transpose=True, scale=True, bias=True, out=True):
    """A head-by-head answer, with switches for the typical mistakes."""
    d, h = mha.embed_dim, mha.num_heads
    d_k = d // h
    W = mha.in_proj_weight
    b = mha.in_proj_bias if bias else torch.zeros(3 * d)
    Wq, Wk, Wv = (W[i * d:(i + 1) * d] for i in range(3))
    if transpose:
        Wq, Wk, Wv = Wq.T, Wk.T, Wv.T
    heads = []
    for i in range(h):
        c = slice(i * d_k, (i + 1) * d_k)
        q, k, v = x @ Wq[:, c] + b[:d][c], x @ Wk[:, c] + b[d:2 * d][c], x @ Wv[:, c] + b[2 * d:][c]
        s = q @ k.transpose(-2, -1)
        heads.append(torch.softmax(s / math.sqrt(d_k) if scale else s, -1) @ v)
    cat = torch.cat(heads, -1)
    return F.linear(cat, mha.out_proj.weight, mha.out_proj.bias if bias else None) if out else cat


def _ref_split(x, h):
    b, n, f = x.shape
    return x.view(b, n, h, f // h).transpose(1, 2)


def test_split_reference_passes():
    assert check_split_heads(_ref_split).passed
    r = outcome(check_split_heads, split_heads)
    assert not r and "library's own" in r.message


@pytest.mark.parametrize("wrong,fragment", [
    (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h), "heads and positions are mixed"),
    (lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2), "every h-th"),
    (lambda x, h: x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h), "one step is missing"),
    (lambda x, h: x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h).transpose(1, 3), "wrong pair"),
    (lambda x, h: x, "shape"),
    (lambda x, h: None, "returned None"),
    (lambda x, h: 3, "expected a torch.Tensor"),
    (lambda x, h: split_heads(x, h) * float("nan"), "NaN"),
    (lambda x, h: split_heads(x, h) + 1, "wrong values"),
    (lambda x, h: x.view(-1, h, 7), "raised"),
    (None, "expected a function"),
])
def test_split_mistakes(wrong, fragment):
    result = outcome(check_split_heads, wrong)
    assert not result and fragment in result.message, result.message
    assert "transpose(1, 2)" not in result.message  # never gives the solution away


def test_merge():
    assert check_merge_heads(lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)).passed
    r = outcome(check_merge_heads, merge_heads)
    assert not r and "library's own" in r.message
    r = outcome(check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1))
    assert not r and "mixed up" in r.message
    r = outcome(check_merge_heads, lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1))
    assert not r and "interleaved" in r.message
    r = outcome(check_merge_heads, lambda x: x)
    assert not r and "shape" in r.message


def test_mha_from_heads():
    assert outcome(check_mha_from_heads, lambda x, m: _per_head(x, m))
    for kw, fragment in [({"transpose": False}, "transpose"), ({"scale": False}, "not scaled"),
                         ({"bias": False}, "biases"), ({"out": False}, "out_proj")]:
        r = outcome(check_mha_from_heads, lambda x, m, kw=kw: _per_head(x, m, **kw))
        assert not r and fragment in r.message, (kw, r.message)
    r = outcome(check_mha_from_heads, lambda x, m: 1 / 0)
    assert not r and "ZeroDivisionError" in r.message


def test_parameter_count():
    def mine(d, h, kv):
        d_k = d // h
        return d * d + d + 2 * (d * kv * d_k + kv * d_k) + d * d + d

    assert check_parameter_count(mine).passed
    assert check_parameter_count(lambda d, h, kv: float(mine(d, h, kv))).passed
    r = outcome(check_parameter_count, lambda d, h, kv: mha_parameter_count(d, h, num_kv_heads=kv)["total"])
    assert not r and "library's own" in r.message
    cases = [
        (lambda d, h, kv: 2 * d * d + 2 * d * (d // h) * kv, "biases"),
        (lambda d, h, kv: 4 * d * d + 4 * d, "num_kv_heads * d_k"),
        (lambda d, h, kv: 4 * d * d * h + 4 * d, "share the width"),
        (lambda d, h, kv: 1, "too low"),
        (lambda d, h, kv: None, "returned None"),
        (lambda d, h, kv: "many", "expected an integer"),
        (lambda d, h, kv: [][0], "IndexError"),
        (7, "expected a function"),
    ]
    for fn, fragment in cases:
        r = outcome(check_parameter_count, fn)
        assert not r and fragment in r.message, r.message


def test_stubs_raise_not_implemented():
    def stub(*args):
        raise NotImplementedError
    for check in (check_split_heads, check_merge_heads, check_mha_from_heads, check_parameter_count):
        with pytest.raises(NotImplementedError):
            check(stub)
