"""Chapter 4's checkers: right answers pass, typical mistakes get a hint, odd input no traceback."""
from attnlib.checks import CheckFailed, outcome
import math

import pytest
import torch
import torch.nn.functional as F

from attnlib.alternatives import linear_attention_recurrent
from attnlib.sdpa import attention
from attnlib.checks.softmax_alternatives import (check_linear_recurrence, check_relu_attention,
                                                 check_sigmoid_attention)


def scores(Q, K, scale=True):
    s = Q @ K.transpose(-2, -1)
    return s / math.sqrt(Q.shape[-1]) if scale else s


COMMON = [  # (wrong answer built from the right one, fragment of the message)
    (lambda right: (lambda Q, K, V: None), "returned None"),
    (lambda right: (lambda Q, K, V: right(Q, K, V)[..., :1]), "shape"),
    (lambda right: (lambda Q, K, V: right(Q, K, V).transpose(-2, -1)), "shape"),
    (lambda right: (lambda Q, K, V: right(Q, K, V) * float("nan")), "NaN"),
    (lambda right: (lambda Q, K, V: right(Q, K, V) + 0.5), "wrong values"),
    (lambda right: (lambda Q, K, V: right(Q, K, V).numpy()), "ndarray"),
    (lambda right: (lambda Q, K, V: torch.cat(Q, K)), "raised"),
    (lambda right: (lambda Q, K, V: 1 / 0), "ZeroDivisionError"),
    (lambda right: "not a function", "expected a function"),
]

def relu_attn(Q, K, V):
    return torch.relu(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])) / K.shape[-2] @ V

def sigmoid_attn(Q, K, V):
    return torch.sigmoid(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]) - math.log(K.shape[-2])) @ V

def rnn(Q, K, V):
    pq, pk = F.elu(Q) + 1, F.elu(K) + 1
    S, z, out = 0, 0, []
    for i in range(Q.shape[1]):
        S = S + pk[:, i, :, None] * V[:, i, None, :]
        z = z + pk[:, i]
        out.append((pq[:, i, None, :] @ S)[:, 0] / (pq[:, i] * z).sum(-1, keepdim=True))
    return torch.stack(out, 1)


RIGHT = {
    "relu": (check_relu_attention, relu_attn),
    "sigmoid": (check_sigmoid_attention, sigmoid_attn),
    "recurrence": (check_linear_recurrence, rnn),
}
LIBRARY = {  # right, but only by calling the library's own implementation
    "relu": lambda Q, K, V: attention(Q, K, V, normaliser="relu"),
    "sigmoid": lambda Q, K, V: attention(Q, K, V, normaliser="sigmoid"),
    "recurrence": linear_attention_recurrent,
}


@pytest.mark.parametrize("which", list(RIGHT))
def test_right_answers_pass(which):
    check, right = RIGHT[which]
    result = check(right)
    assert result, result.message
    assert check(right).passed


def test_handwritten_right_answers_pass():
    assert outcome(check_relu_attention, relu_attn)
    assert outcome(check_sigmoid_attention, sigmoid_attn)
    assert outcome(check_linear_recurrence, rnn)


@pytest.mark.parametrize("which", list(RIGHT))
def test_answers_that_only_call_the_library_fail(which):
    check, _ = RIGHT[which]
    result = outcome(check, LIBRARY[which])
    assert not result and "library's own" in result.message, result.message
    with pytest.raises(CheckFailed):
        check(LIBRARY[which])


@pytest.mark.parametrize("which", list(RIGHT))
@pytest.mark.parametrize("make_wrong,fragment", COMMON)
def test_common_mistakes_get_a_message(which, make_wrong, fragment):
    check, right = RIGHT[which]
    result = outcome(check, make_wrong(right))
    assert not result and fragment in result.message, result.message


@pytest.mark.parametrize("wrong,fragment", [
    (lambda Q, K, V: F.relu(scores(Q, K)) @ V, "not divided by the sequence length"),
    (lambda Q, K, V: F.relu(scores(Q, K, False)) / K.shape[-2] @ V, "not scaled"),
    (lambda Q, K, V: F.relu(Q @ K.transpose(-2, -1) / Q.shape[-1]) / K.shape[-2] @ V, "instead of sqrt"),
    (lambda Q, K, V: F.relu(scores(Q, K)) / math.sqrt(K.shape[-2]) @ V, "sqrt(n)"),
    (lambda Q, K, V: torch.softmax(F.relu(scores(Q, K)), -1) @ V, "softmax"),
])
def test_relu_mistakes(wrong, fragment):
    result = outcome(check_relu_attention, wrong)
    assert not result and fragment in result.message, result.message


@pytest.mark.parametrize("wrong,fragment", [
    (lambda Q, K, V: torch.sigmoid(scores(Q, K)) @ V, "bias is missing"),
    (lambda Q, K, V: torch.sigmoid(scores(Q, K) + math.log(K.shape[-2])) @ V, "wrong sign"),
    (lambda Q, K, V: torch.sigmoid(scores(Q, K) - K.shape[-2]) @ V, "logarithm"),
    (lambda Q, K, V: torch.sigmoid(scores(Q, K, False) - math.log(K.shape[-2])) @ V, "not scaled"),
    (lambda Q, K, V: torch.sigmoid(scores(Q, K) - math.log(Q.shape[-1])) @ V, "log(d_k)"),
])
def test_sigmoid_mistakes(wrong, fragment):
    result = outcome(check_sigmoid_attention, wrong)
    assert not result and fragment in result.message, result.message


def _causal(phi, Q, K, V, diagonal=0, normalise=True):
    mask = torch.ones(Q.shape[1], Q.shape[1]).tril(diagonal)
    w = (phi(Q) @ phi(K).transpose(-2, -1)) * mask
    if normalise:
        w = w / w.sum(-1, keepdim=True).clamp(min=1e-30)
    return w @ V


@pytest.mark.parametrize("wrong,fragment", [
    (lambda Q, K, V: attention(Q, K, V, normaliser="linear"), "does not depend on order"),
    (lambda Q, K, V: _causal(lambda x: F.elu(x) + 1, Q, K, V, normalise=False), "normaliser is missing"),
    (lambda Q, K, V: _causal(lambda x: F.elu(x) + 1, Q, K, V, diagonal=-1), "own key"),
    (lambda Q, K, V: _causal(F.relu, Q, K, V), "ReLU"),
])
def test_recurrence_mistakes(wrong, fragment):
    result = outcome(check_linear_recurrence, wrong)
    assert not result and fragment in result.message, result.message


@pytest.mark.parametrize("check", [check_relu_attention, check_sigmoid_attention, check_linear_recurrence])
def test_messages_never_reveal_the_solution(check):
    result = outcome(check, lambda Q, K, V: Q)
    for secret in ("torch.relu(", "torch.sigmoid(", "math.log(", "F.elu(", "elu(Q)"):
        assert secret not in result.message


@pytest.mark.parametrize("check", [check_relu_attention, check_sigmoid_attention, check_linear_recurrence])
def test_stub_raises_not_implemented(check):
    def stub(Q, K, V):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        check(stub)
