"""The pooling chapter's checker: right answers pass, typical mistakes get a hint, odd input no traceback."""
from attnlib.checks import outcome
import math

import pytest
import torch

from attnlib.checks.pooling import check_attention_pooling
from attnlib.pooling import AttentionPooling


def right(x, q):
    w = torch.softmax(x @ q / math.sqrt(x.shape[-1]), dim=-1)
    return torch.einsum("bn,bnd->bd", w, x)


def test_reference_passes():
    assert outcome(check_attention_pooling, right)


def test_calling_the_library_is_not_an_answer():
    """The exercise is attnlib's AttentionPooling: an answer that only calls it, or torch's
    scaled_dot_product_attention with q as the one query, fails and says why."""
    def via_module(x, q):
        pool = AttentionPooling(x.shape[-1])
        pool.query.data = q
        return pool(x)

    def via_sdpa(x, q):
        query = q.expand(x.shape[0], 1, -1)
        return torch.nn.functional.scaled_dot_product_attention(query, x, x).squeeze(1)

    for shortcut in (via_module, via_sdpa):
        result = outcome(check_attention_pooling, shortcut)
        assert not result and "library's own" in result.message, result.message


@pytest.mark.parametrize("wrong,fragment", [
    (lambda x, q: (torch.softmax(x @ q, -1).unsqueeze(-1) * x).sum(1), "not scaled"),
    (lambda x, q: (torch.softmax(x @ q / x.shape[-1], -1).unsqueeze(-1) * x).sum(1), "square root"),
    (lambda x, q: (torch.softmax(x * q / math.sqrt(x.shape[-1]), -1) * x).sum(1), "over the positions"),
    (lambda x, q: ((x @ q / math.sqrt(x.shape[-1])).unsqueeze(-1) * x).sum(1), "normalising"),
    (lambda x, q: x.mean(1), "mean pooling"),
    (lambda x, q: torch.softmax(x @ q / math.sqrt(x.shape[-1]), -1), "returned the weights"),
    (lambda x, q: x @ x, "raised"),
    (lambda x, q: x, "shape"),
    (lambda x, q: None, "returned None"),
    (lambda x, q: [1.0], "expected a torch.Tensor"),
    (lambda x, q: right(x, q) * float("nan"), "NaN"),
    (lambda x, q: right(x, q) + 1, "wrong values"),
    (lambda x, q: right(x, q).long(), "dtype"),
    (None, "expected a function"),
])
def test_mistakes_get_a_message(wrong, fragment):
    result = outcome(check_attention_pooling, wrong)
    assert not result and fragment in result.message, result.message
    assert "softmax(" not in result.message and "sqrt(d))" not in result.message


def test_stub_raises_not_implemented():
    def stub(x, q):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        outcome(check_attention_pooling, stub)
