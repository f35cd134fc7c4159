"""Checkers for chapter 1 (chapters/01_activation.ipynb)."""
import torch

from ..probes import rank1_residual
from .core import check_function, checker


def _inputs(g):
    batch, n, d = 3, int(torch.randint(4, 9, (1,), generator=g)), 6
    X = torch.randn(batch, n, d, generator=g) + 2.0 * torch.randn(batch, 1, d, generator=g)
    return (X,)


@checker("rank-1 residual")
def check_rank1_residual(fn):
    """Check ``fn(X)`` for ``X`` of shape (batch, n, d): the relative distance of each
    sequence's tokens from the closest matrix with identical rows, shape (batch,)."""
    def wrong_axis(X):
        return (X - X.mean(-1, keepdim=True)).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1)

    def not_relative(X):
        return (X - X.mean(1, keepdim=True)).flatten(1).norm(dim=1)

    def squared(X):
        return (X - X.mean(1, keepdim=True)).flatten(1).pow(2).sum(1) / X.flatten(1).pow(2).sum(1)

    def first_token(X):
        return (X - X[:, :1]).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1)

    def whole_batch(X):
        return ((X - X.mean(1, keepdim=True)).norm() / X.norm()).expand(X.shape[0])

    return check_function(
        fn, rank1_residual, _inputs, name="rank-1 residual", forbidden=[rank1_residual],
        mistakes={
            "you subtracted each token's mean over its features; the rank-1 matrix repeats one "
            "token vector down the sequence, so average over the positions instead.": wrong_axis,
            "the value is not relative: divide by the size of X itself, so that scaling X "
            "does not change the answer.": not_relative,
            "these are squared norms; take the Frobenius norm itself (a square root).": squared,
            "you compared every token with the first one; the closest rank-1 matrix uses the "
            "token that minimises the distance, which is not the first token.": first_token,
            "this is one number for the whole batch repeated; compute one value per sequence.": whole_batch,
        },
        hint="one value per sequence: ||X - 1 x^T||_F / ||X||_F with the best choice of the row x.",
    )
