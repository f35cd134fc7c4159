"""Checkers for chapter 3, "Is the output projection W_O redundant?" (chapters/03_output_projection.ipynb).

Both exercises return a *pair* of tensors. :func:`_check_pair` first checks
that the answer is a pair of tensors of the right shapes (with a message that
says which one is off), then compares the values with the reference through
:func:`attnlib.checks.core.check_function`, on the two tensors flattened and
joined, so that its typical-mistake hints apply.
"""
import torch

from ..circuits import FusedAttentionMLP, apply_gauge
from .core import CheckResult, _Calls, _describe, call_answer, check_function, checker


def _pack(pair):
    a, b = pair
    return torch.cat([a.reshape(-1), b.reshape(-1)])


def _check_pair(fn, reference, make_inputs, *, name, labels, mistakes, hint, forbidden=()):
    """Structure first (a tuple of two tensors with the expected shapes), then values."""
    if not callable(fn):
        return CheckResult(False, name, f"expected a function, got {_describe(fn)}.")
    args = make_inputs(torch.Generator().manual_seed(7))
    expected = reference(*args)
    with torch.no_grad(), _Calls(forbidden) as calls:
        got, failed = call_answer(name, fn, *[a.clone() for a in args])
    if failed is not None:
        return CheckResult(False, name, f"{failed.message}\nHint: {hint}")
    if calls.called is not None:
        used = getattr(calls.called, "__qualname__", repr(calls.called))
        return CheckResult(False, name, f"your function calls the library's own `{used}`: the exercise is to "
                           "write it yourself.")
    if got is None:
        return CheckResult(False, name, "your function returned None: is a `return` missing?")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return CheckResult(False, name, f"expected a pair ({labels[0]}, {labels[1]}), got {_describe(got)}"
                           + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "") + ".")
    for label, g, e in zip(labels, got, expected):
        if not isinstance(g, torch.Tensor):
            return CheckResult(False, name, f"{label} should be a torch.Tensor, got {_describe(g)}.")
        if g.shape != e.shape:
            shapes = ", ".join(str(tuple(a.shape)) for a in args)
            return CheckResult(False, name, f"for inputs of shape {shapes}, {label} should have shape "
                               f"{tuple(e.shape)}, yours has shape {tuple(g.shape)}.\nHint: {hint}")
        if g.is_floating_point() and not torch.isfinite(g).all():
            return CheckResult(False, name, f"{label} contains NaN or inf.\nHint: {hint}")

    def packed(f):
        def run(*a):
            return _pack(f(*a))
        return run

    return check_function(packed(fn), packed(reference), make_inputs, name=name, forbidden=forbidden,
                          mistakes={msg: packed(w) for msg, w in mistakes.items()}, hint=hint)


# ----------------------------------------------------------------- exercise 1
def _gauge_inputs(g):
    d_model, d_k = 12, int(torch.randint(3, 5, (1,), generator=g))
    M = torch.randn(d_k, d_k, generator=g, dtype=torch.float64) + 3 * torch.eye(d_k, dtype=torch.float64)
    return (torch.randn(d_model, d_k, generator=g, dtype=torch.float64),
            torch.randn(d_k, d_model, generator=g, dtype=torch.float64), M)


@checker("the M, M^-1 symmetry of one head")
def check_gauge(fn):
    """Check ``fn(W_V_h, W_O_h, M) -> (W_V_h M, M^-1 W_O_h)`` for one head.

    ``W_V_h``: ``(d_model, d_k)``, ``W_O_h``: ``(d_k, d_model)``, ``M``: ``(d_k, d_k)`` invertible.
    """
    def reference(W_V, W_O, M):  # not importable: graded assignments carry their own (grading/)
        return W_V @ M, torch.linalg.inv(M) @ W_O

    return _check_pair(
        fn, reference, _gauge_inputs, name="the M, M^-1 symmetry of one head", forbidden=[apply_gauge],
        labels=("the new W_V_h", "the new W_O_h"),
        mistakes={
            "M and its inverse are swapped: W_V_h is multiplied by M, W_O_h by the inverse.":
                lambda W_V, W_O, M: (W_V @ torch.linalg.inv(M), M @ W_O),
            "the new W_O_h uses M itself; it needs the inverse of M, so that the product "
            "W_V_h W_O_h is unchanged.": lambda W_V, W_O, M: (W_V @ M, M @ W_O),
            "the new W_O_h uses the transpose of M, not its inverse (they agree only for "
            "orthogonal M).": lambda W_V, W_O, M: (W_V @ M, M.T @ W_O),
            "the new W_O_h multiplies by the inverse on the wrong side: it acts on W_O_h's rows "
            "(the d_k side).": lambda W_V, W_O, M: (W_V @ M, W_O),
            "you returned the matrices unchanged.": lambda W_V, W_O, M: (W_V, W_O),
        },
        hint="the new pair must multiply to the same d_model x d_model matrix W_V_h W_O_h; M sits "
             "between them. torch.linalg.inv or torch.linalg.solve give the inverse.",
    )


# ----------------------------------------------------------------- exercise 2
def _fuse_inputs(g):
    d_model = int(torch.randint(6, 10, (1,), generator=g))
    d_ff = 3 * d_model
    return (torch.randn(d_model, d_model, generator=g, dtype=torch.float64),
            torch.randn(d_model, generator=g, dtype=torch.float64),
            torch.randn(d_model, d_ff, generator=g, dtype=torch.float64),
            torch.randn(d_ff, generator=g, dtype=torch.float64))


@checker("fusing W_O into W_1")
def check_fuse(fn):
    """Check ``fn(W_O, b_O, W_1, b_1) -> (W, b)`` with ``(c W_O + b_O) W_1 + b_1 = c W + b``.

    ``W_O``: ``(h d_v, d_model)``, ``b_O``: ``(d_model,)``, ``W_1``: ``(d_model, d_ff)``
    (paper orientation), ``b_1``: ``(d_ff,)``.
    """
    def reference(W_O, b_O, W_1, b_1):  # not importable: graded assignments carry their own (grading/)
        return W_O @ W_1, b_O @ W_1 + b_1

    return _check_pair(
        fn, reference, _fuse_inputs, name="fusing W_O into W_1", forbidden=[FusedAttentionMLP.from_block],
        labels=("the fused matrix", "the fused bias"),
        mistakes={
            "the fused bias ignores b_O: W_O's bias also passes through W_1.":
                lambda W_O, b_O, W_1, b_1: (W_O @ W_1, b_1),
            "the fused bias is missing b_1.": lambda W_O, b_O, W_1, b_1: (W_O @ W_1, b_O @ W_1),
        },
        hint="write (c W_O + b_O) W_1 + b_1 out and collect the terms that multiply c and those that do not.",
    )
