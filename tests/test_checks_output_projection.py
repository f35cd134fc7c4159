"""Chapter 3's checkers: right answers pass, typical mistakes get a hint, odd answers no traceback."""
from attnlib.checks import outcome
import pytest
import torch

from attnlib.checks.output_projection import check_fuse, check_gauge


def gauge_right(W_V, W_O, M):
    return W_V @ M, torch.linalg.solve(M, W_O)


def fuse_right(W_O, b_O, W_1, b_1):
    return W_O @ W_1, b_O @ W_1 + b_1


def test_right_answers_pass():
    assert outcome(check_gauge, gauge_right)
    assert outcome(check_gauge, lambda W_V, W_O, M: [W_V @ M, torch.linalg.inv(M) @ W_O])
    assert outcome(check_fuse, fuse_right)
    assert outcome(check_fuse, lambda W_O, b_O, W_1, b_1: (W_O @ W_1, W_1.T @ b_O + b_1))


@pytest.mark.parametrize("wrong,fragment", [
    (lambda W_V, W_O, M: (W_V @ torch.linalg.inv(M), M @ W_O), "swapped"),
    (lambda W_V, W_O, M: (W_V @ M, M @ W_O), "needs the inverse"),
    (lambda W_V, W_O, M: (W_V @ M, M.T @ W_O), "transpose"),
    (lambda W_V, W_O, M: (W_V @ M, W_O), "wrong side"),
    (lambda W_V, W_O, M: (W_V, W_O), "unchanged"),
    (lambda W_V, W_O, M: (W_V @ M, W_O @ torch.linalg.inv(M)), "raised"),
    (lambda W_V, W_O, M: (W_V @ M, (torch.linalg.inv(M) @ W_O).T), "shape"),
    (lambda W_V, W_O, M: W_V @ M, "expected a pair"),
    (lambda W_V, W_O, M: (W_V @ M,), "expected a pair"),
    (lambda W_V, W_O, M: None, "returned None"),
    (lambda W_V, W_O, M: (W_V @ M, 3), "should be a torch.Tensor"),
    (lambda W_V, W_O, M: (W_V @ M * float("nan"), torch.linalg.inv(M) @ W_O), "NaN"),
    (lambda W_V, W_O, M: (W_V @ M, torch.linalg.inv(M) @ W_O + 0.1), "wrong values"),
    (None, "expected a function"),
])
def test_gauge_mistakes_get_a_message(wrong, fragment):
    result = outcome(check_gauge, wrong)
    assert not result and fragment in result.message, result.message
    assert "inv(M) @" not in result.message and "solve(M" not in result.message  # no solution given away


@pytest.mark.parametrize("wrong,fragment", [
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1, b_1), "ignores b_O"),
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1, b_O @ W_1), "missing b_1"),
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1, b_O + b_1), "raised"),
    (lambda W_O, b_O, W_1, b_1: (W_1 @ W_O, b_O @ W_1 + b_1), "raised"),
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1.T.T[:, :3], b_O @ W_1 + b_1), "shape"),
    (lambda W_O, b_O, W_1, b_1: ((W_O @ W_1).T, b_O @ W_1 + b_1), "shape"),
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1 * float("nan"), b_O @ W_1 + b_1), "NaN"),
    (lambda W_O, b_O, W_1, b_1: (W_O @ W_1 + 1, b_O @ W_1 + b_1), "wrong values"),
    (lambda W_O, b_O, W_1, b_1: None, "returned None"),
    (lambda W_O, b_O, W_1, b_1: "W_O W_1", "expected a pair"),
])
def test_fuse_mistakes_get_a_message(wrong, fragment):
    result = outcome(check_fuse, wrong)
    assert not result and fragment in result.message, result.message
    assert "b_O @ W_1 + b_1" not in result.message


def test_stubs_raise_not_implemented():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        outcome(check_gauge, stub)
    with pytest.raises(NotImplementedError):
        outcome(check_fuse, stub)
