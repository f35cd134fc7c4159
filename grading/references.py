"""What each auto-graded exercise must compute, and on which hidden inputs.

One :class:`Reference` per checker of ``attnlib/checks`` (the checker that a chapter's
checker cell calls names the exercise). Two places use it:

* ``grading/assignment.py`` copies the source of its ``inputs`` function into the exercise's
  graded cell, in the hidden region that students never see, with a seed (``--seed``, drawn
  at random by default). There the learner's function runs on those inputs and its outputs
  are printed (``attnlib.checks.report``).
* ``grading/judge.py``, which runs inside nbgrader (not in the learner's notebook), draws the
  same inputs, runs ``function`` on them and compares. The references never enter the
  notebook, so nothing a notebook does can read or replace them.

The references are attnlib's own implementations wherever the chapter's checker uses them
(one reference per exercise, tested with the library); the two exercises of chapter 3 have
one-line references here, which ``tests/test_grading.py`` checks against their checkers.
Each ``inputs`` function uses only ``torch`` and ``math`` (the graded cell imports both),
with explicit dtypes, so that the notebook and the grader draw the same numbers.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from attnlib.counting import mha_parameter_count
from attnlib.mha import merge_heads, split_heads
from attnlib.pooling import AttentionPooling
from attnlib.probes import rank1_residual
from attnlib.sdpa import attention

#: torch's own implementations of attention, which an attention exercise's answer may not use.
TORCH_ATTENTION = ("scaled_dot_product_attention", "multi_head_attention_forward", "MultiheadAttention",
                   "_native_multi_head_attention")


@dataclass
class Reference:
    """An auto-graded exercise, as the grader sees it.

    Args:
        function: the right answer, called on float64 copies of the inputs.
        inputs: ``torch.Generator -> tuple of arguments`` (see the module's docstring).
        output: ``"tensor"``, ``"pair"`` (of tensors) or ``"int"``.
        forbid: names (of torch's own implementation of the exercise) that an answer may not use;
            attnlib is never allowed.
        own_module: the answer may not call the ``nn.Module`` it is given (its forward).
    """
    function: Callable
    inputs: Callable
    output: str = "tensor"
    trials: int = 3
    atol: float = 1e-5
    rtol: float = 1e-4
    forbid: tuple = ()
    own_module: bool = False


# ----------------------------------------------------------------------------- hidden inputs
def qkv_inputs(g):
    n_k = int(torch.randint(4, 8, (1,), generator=g))
    n_q = int(torch.randint(2, 5, (1,), generator=g))
    return (torch.randn(2, n_q, 4, generator=g, dtype=torch.float32),
            torch.randn(2, n_k, 4, generator=g, dtype=torch.float32),
            torch.randn(2, n_k, 3, generator=g, dtype=torch.float32))


def square_qkv_inputs(g):
    n = int(torch.randint(5, 13, (1,), generator=g))
    return (2 * torch.randn(2, n, 4, generator=g, dtype=torch.float32),
            2 * torch.randn(2, n, 4, generator=g, dtype=torch.float32),
            torch.randn(2, n, 3, generator=g, dtype=torch.float32))


def token_inputs(g):
    n = int(torch.randint(4, 8, (1,), generator=g))
    return (torch.randn(3, n, 5, generator=g, dtype=torch.float32)
            + 2 * torch.randn(3, 1, 5, generator=g, dtype=torch.float32),)


def split_inputs(g):
    h, d_k = int(torch.randint(2, 4, (1,), generator=g)), int(torch.randint(2, 4, (1,), generator=g))
    n = int(torch.randint(3, 6, (1,), generator=g))
    n = n + 1 if n == h else n  # n and h distinct, so that swapping them changes the shape
    batch = int(torch.randint(1, 3, (1,), generator=g))
    return torch.randn(batch, n, h * d_k, generator=g, dtype=torch.float32), h


def merge_inputs(g):
    h, d_k = int(torch.randint(2, 4, (1,), generator=g)), int(torch.randint(2, 4, (1,), generator=g))
    n = int(torch.randint(3, 6, (1,), generator=g))
    n = n + 1 if n == h else n
    batch = int(torch.randint(1, 3, (1,), generator=g))
    return (torch.randn(batch, h, n, d_k, generator=g, dtype=torch.float32),)


def mha_inputs(g):
    d_model, h = 8, [2, 4][int(torch.randint(0, 2, (1,), generator=g))]
    mha = torch.nn.MultiheadAttention(d_model, h, batch_first=True)
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) / math.sqrt(d_model))
    batch, n = int(torch.randint(1, 3, (1,), generator=g)), int(torch.randint(3, 5, (1,), generator=g))
    return torch.randn(batch, n, d_model, generator=g, dtype=torch.float32), mha.eval()


def count_inputs(g):
    h = int(torch.randint(2, 13, (1,), generator=g))
    d_model = h * int(torch.randint(2, 65, (1,), generator=g))
    # key/value heads: 1 (multi-query) up to h's largest proper divisor (grouped-query), never h
    # itself, so that every hidden input tells a count that gives each head its own K/V from the
    # right one (with kv == h on all five, such a count would score: a chance of about 1 in 140
    # per class); the self-check covers kv == h.
    divisors = [k for k in range(1, h) if h % k == 0]
    return d_model, h, divisors[int(torch.randint(0, len(divisors), (1,), generator=g))]


def gauge_inputs(g):
    d_model, d_k = 6, int(torch.randint(2, 4, (1,), generator=g))
    M = torch.randn(d_k, d_k, generator=g, dtype=torch.float64) + 3 * torch.eye(d_k, dtype=torch.float64)
    return (torch.randn(d_model, d_k, generator=g, dtype=torch.float64),
            torch.randn(d_k, d_model, generator=g, dtype=torch.float64), M)


def fuse_inputs(g):
    d = int(torch.randint(4, 6, (1,), generator=g))
    return (torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64),
            torch.randn(d, 2 * d, generator=g, dtype=torch.float64),
            torch.randn(2 * d, generator=g, dtype=torch.float64))


def pool_inputs(g):
    n = int(torch.randint(4, 8, (1,), generator=g))
    return (2 * torch.randn(3, n, 5, generator=g, dtype=torch.float32),
            2 * torch.randn(5, generator=g, dtype=torch.float32))


# ----------------------------------------------------------------------------- references
def gauge(W_V_h, W_O_h, M):
    """Chapter 3: one head's pair after the change of basis ``M`` (same OV circuit)."""
    return W_V_h @ M, torch.linalg.solve(M, W_O_h)


def fuse(W_O, b_O, W_1, b_1):
    """Chapter 3: ``W_O`` and its bias folded into the MLP's first layer."""
    return W_O @ W_1, b_O @ W_1 + b_1


def attention_pool(x, q):
    """Chapter 5: attnlib's AttentionPooling with the query ``q``."""
    pool = AttentionPooling(x.shape[-1]).to(x.dtype)
    pool.query.data = q
    return pool(x)


REFERENCES = {
    "check_attention": Reference(attention, qkv_inputs, forbid=TORCH_ATTENTION),
    "check_rank1_residual": Reference(rank1_residual, token_inputs),
    "check_split_heads": Reference(split_heads, split_inputs),
    "check_merge_heads": Reference(merge_heads, merge_inputs),
    "check_mha_from_heads": Reference(lambda x, mha: mha(x, x, x, need_weights=False)[0], mha_inputs, trials=2,
                                      atol=1e-4, rtol=1e-3, own_module=True,
                                      forbid=("multi_head_attention_forward", "_native_multi_head_attention",
                                              "MultiheadAttention")),
    "check_parameter_count": Reference(lambda d, h, kv: mha_parameter_count(d, h, num_kv_heads=kv)["total"],
                                       count_inputs, output="int", trials=5),
    "check_gauge": Reference(gauge, gauge_inputs, output="pair", atol=1e-8, rtol=1e-6),
    "check_fuse": Reference(fuse, fuse_inputs, output="pair", atol=1e-8, rtol=1e-6),
    "check_relu_attention": Reference(lambda Q, K, V: attention(Q, K, V, normaliser="relu"), square_qkv_inputs,
                                      forbid=TORCH_ATTENTION),
    "check_sigmoid_attention": Reference(lambda Q, K, V: attention(Q, K, V, normaliser="sigmoid"),
                                         square_qkv_inputs, forbid=TORCH_ATTENTION),
    "check_linear_recurrence": Reference(lambda Q, K, V: attention(Q, K, V, normaliser="linear", causal=True),
                                         square_qkv_inputs, forbid=TORCH_ATTENTION),
    "check_attention_pooling": Reference(attention_pool, pool_inputs, forbid=TORCH_ATTENTION),
}


def reference(checker: str) -> Reference:
    if checker not in REFERENCES:
        raise KeyError(f"no hidden test for {checker}: add its reference to grading/references.py")
    return REFERENCES[checker]


def float64(a):
    """A copy of an argument in float64, so that the reference is exact to the tolerance."""
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        return a.double()
    if isinstance(a, torch.nn.Module):
        return copy.deepcopy(a).double()
    return a


def expected_outputs(checker: str, inputs: Callable, seed: int, trials: int) -> list:
    """``[(args, reference output)]`` on the hidden inputs that ``inputs`` draws with ``seed``."""
    ref = reference(checker)
    g = torch.Generator().manual_seed(seed)
    cases = [inputs(g) for _ in range(trials)]
    with torch.no_grad():
        return [(args, ref.function(*[float64(a) for a in args])) for args in cases]
