"""The notation chapter's checker: right answers pass, typical mistakes get a hint, odd input no traceback."""
import math

import pytest
import torch

from attnlib.sdpa import attention
from attnlib.checks.notation import check_attention


def test_reference_passes():
    assert check_attention(lambda Q, K, V: attention(Q, K, V))


@pytest.mark.parametrize("wrong,fragment", [
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1), -1) @ V, "not scaled"),
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1) / Q.shape[-1], -1) @ V, "square root"),
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -2) @ V, "wrong axis"),
    (lambda Q, K, V: torch.softmax(Q @ K.T / 2, -1) @ V, "raised"),
    (lambda Q, K, V: Q, "shape"),
    (lambda Q, K, V: None, "returned None"),
    (lambda Q, K, V: 3, "expected a torch.Tensor"),
    (lambda Q, K, V: attention(Q, K, V) * float("nan"), "NaN"),
    (lambda Q, K, V: attention(Q, K, V).double() + 1, "wrong values"),
    (lambda Q, K, V: attention(Q, K, V).long(), "dtype"),
    (None, "expected a function"),
])
def test_mistakes_get_a_message(wrong, fragment):
    result = check_attention(wrong)
    assert not result and fragment in result.message, result.message
    assert "softmax(" not in result.message  # never reveals the solution


def test_stub_raises_not_implemented():
    def stub(Q, K, V):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        check_attention(stub)
