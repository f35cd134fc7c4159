"""The notation chapter's checker: right answers pass, typical mistakes get a hint, odd input no traceback."""
import math

import pytest
import torch

from attnlib.checks import CheckFailed, outcome
from attnlib.sdpa import attention
from attnlib.checks.notation import check_attention


def test_reference_passes():
    def mine(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -1) @ V

    result = check_attention(mine)
    assert result.passed and "matches" in result.message


def test_wrong_answer_raises_with_the_hint_alone():
    """A grader scores a cell that raises as 0: a wrong answer must raise, shown as its hint."""
    with pytest.raises(CheckFailed) as info:
        check_attention(lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1), -1) @ V)
    lines = info.value._render_traceback_()
    assert "not yet" in lines[0] and any("not scaled" in line for line in lines)
    assert not any("Traceback" in line or "File " in line for line in lines)


@pytest.mark.parametrize("delegate", [
    lambda Q, K, V: attention(Q, K, V),
    lambda Q, K, V: torch.nn.functional.scaled_dot_product_attention(Q, K, V),
])
def test_calling_the_library_is_not_an_answer(delegate):
    result = outcome(check_attention, delegate)
    assert not result and "library's own" in result.message, result.message


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
    result = outcome(check_attention, wrong)
    assert not result and fragment in result.message, result.message
    assert "softmax(" not in result.message  # never reveals the solution


def test_stub_raises_not_implemented():
    def stub(Q, K, V):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        outcome(check_attention, stub)


def test_every_public_checker_raises_on_failure():
    """Every check_* a notebook calls is wrapped by core.checker (so that graders score it)."""
    import importlib
    import pkgutil

    import attnlib.checks as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"attnlib.checks.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("check_") and name != "check_function" and callable(obj) \
                    and getattr(obj, "__module__", "") == module.__name__:
                found.append(name)
                assert getattr(obj, "is_checker", False), f"{module.__name__}.{name} is not wrapped by @checker"
    assert len(found) >= 10, found
