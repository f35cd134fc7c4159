"""Chapter 1's checker: right answers pass, typical mistakes get a hint, odd input no traceback."""
from attnlib.checks import outcome
import pytest
import torch

from attnlib.checks.activation import check_rank1_residual
from attnlib.probes import rank1_residual


def _right(X):
    centred = X - X.mean(dim=1, keepdim=True)
    return torch.linalg.matrix_norm(centred) / torch.linalg.matrix_norm(X)


def test_right_answers_pass():
    assert not outcome(check_rank1_residual, rank1_residual)  # only calls the library's own
    assert outcome(check_rank1_residual, _right)
    assert outcome(check_rank1_residual, lambda X: _right(X.double()))  # float64 is fine


@pytest.mark.parametrize("wrong,fragment", [
    (lambda X: (X - X.mean(-1, keepdim=True)).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1), "positions"),
    (lambda X: (X - X.mean(1, keepdim=True)).flatten(1).norm(dim=1), "not relative"),
    (lambda X: (X - X.mean(1, keepdim=True)).flatten(1).pow(2).sum(1) / X.flatten(1).pow(2).sum(1), "squared"),
    (lambda X: (X - X[:, :1]).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1), "first one"),
    (lambda X: ((X - X.mean(1, keepdim=True)).norm() / X.norm()).expand(X.shape[0]), "per sequence"),
    (lambda X: _right(X)[None], "shape"),
    (lambda X: _right(X) * float("nan"), "NaN"),
    (lambda X: None, "returned None"),
    (lambda X: 0.5, "expected a torch.Tensor"),
    (lambda X: X @ torch.ones(3), "raised"),
    (lambda X: _right(X) + 0.1, "wrong values"),
    ("not a function", "expected a function"),
])
def test_mistakes_get_a_message(wrong, fragment):
    result = outcome(check_rank1_residual, wrong)
    assert not result and fragment in result.message, result.message
    assert "mean(" not in result.message  # never reveals the solution


def test_stub_raises_not_implemented():
    def stub(X):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        outcome(check_rank1_residual, stub)
