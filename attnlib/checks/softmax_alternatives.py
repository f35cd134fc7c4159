"""Checkers for chapter 4, "Can ReLU replace softmax in attention?"
(chapters/04_softmax_alternatives.ipynb).

Each compares the learner's function with attnlib's on fresh random inputs and,
when it differs, says which common mistake it looks like, never the answer.
"""
import math

import torch
import torch.nn.functional as F

from ..alternatives import linear_attention_recurrent
from ..sdpa import attention
from .core import CheckResult, check_function, checker


def _inputs(g):
    """Random (Q, K, V): (batch, n, d_k), (batch, n, d_k), (batch, n, d_v); n varies, so length matters."""
    batch, n, d_k, d_v = 2, int(torch.randint(5, 40, (1,), generator=g)), 8, 3
    return (torch.randn(batch, n, d_k, generator=g) * 2, torch.randn(batch, n, d_k, generator=g) * 2,
            torch.randn(batch, n, d_v, generator=g))


def _scores(Q, K, scale=True):
    s = Q @ K.transpose(-2, -1)
    return s / math.sqrt(Q.shape[-1]) if scale else s


@checker("ReLU/n attention")
def check_relu_attention(fn) -> CheckResult:
    """Check ``fn(Q, K, V)`` = ReLU(Q K^T / sqrt(d_k)) / n_k @ V (Wortsman et al. 2023)."""
    def reference(Q, K, V):
        return attention(Q, K, V, normaliser="relu")

    n = lambda K: K.shape[-2]  # noqa: E731
    return check_function(
        fn, reference, _inputs, name="ReLU/n attention", forbidden=[attention],
        mistakes={
            "your weights are not divided by the sequence length: ReLU alone makes every output grow "
            "with the number of keys.": lambda Q, K, V: F.relu(_scores(Q, K)) @ V,
            "the scores are not scaled by 1/sqrt(d_k) before the ReLU.":
                lambda Q, K, V: F.relu(_scores(Q, K, False)) / n(K) @ V,
            "you divided by d_k instead of sqrt(d_k).":
                lambda Q, K, V: F.relu(Q @ K.transpose(-2, -1) / Q.shape[-1]) / n(K) @ V,
            "you divided by sqrt(n) (or by d_k): the division is by the number of keys n itself.":
                lambda Q, K, V: F.relu(_scores(Q, K)) / math.sqrt(n(K)) @ V,
            "it looks as if a softmax is still in there: this exercise replaces it.":
                lambda Q, K, V: torch.softmax(F.relu(_scores(Q, K)), -1) @ V,
        },
        hint="scores, then an element-wise ReLU, then a division by the number of keys, then @ V.",
    )


@checker("sigmoid attention")
def check_sigmoid_attention(fn) -> CheckResult:
    """Check ``fn(Q, K, V)`` = sigmoid(Q K^T / sqrt(d_k) - log n_k) @ V (Ramapuram et al. 2024)."""
    def reference(Q, K, V):
        return attention(Q, K, V, normaliser="sigmoid")

    logn = lambda K: math.log(K.shape[-2])  # noqa: E731
    return check_function(
        fn, reference, _inputs, name="sigmoid attention", forbidden=[attention],
        mistakes={
            "the bias is missing: without subtracting log n, each row's weights add up to about n/2.":
                lambda Q, K, V: torch.sigmoid(_scores(Q, K)) @ V,
            "the bias has the wrong sign: it should make the weights smaller as n grows.":
                lambda Q, K, V: torch.sigmoid(_scores(Q, K) + logn(K)) @ V,
            "the bias should be the logarithm of n, not n itself.":
                lambda Q, K, V: torch.sigmoid(_scores(Q, K) - K.shape[-2]) @ V,
            "the scores are not scaled by 1/sqrt(d_k) before the sigmoid.":
                lambda Q, K, V: torch.sigmoid(_scores(Q, K, False) - logn(K)) @ V,
            "you used log(d_k) where the bias needs the log of the number of keys.":
                lambda Q, K, V: torch.sigmoid(_scores(Q, K) - math.log(Q.shape[-1])) @ V,
        },
        hint="scores, minus a bias that depends on the number of keys, then an element-wise sigmoid, then @ V.",
    )


@checker("causal linear attention as a recurrence")
def check_linear_recurrence(fn) -> CheckResult:
    """Check ``fn(Q, K, V)`` = causal linear attention with phi = elu + 1, shapes (batch, n, d)."""
    def reference(Q, K, V):
        return attention(Q, K, V, normaliser="linear", causal=True)

    def phi(x):
        return F.elu(x) + 1

    def no_denominator(Q, K, V):
        return torch.einsum("bid,bjd,bje,ij->bie", phi(Q), phi(K), V,
                            torch.ones(Q.shape[1], Q.shape[1]).tril())

    def with_phi(phi, Q, K, V):  # any feature map (not importable: with elu + 1 it is the answer)
        mask = torch.ones(Q.shape[1], Q.shape[1]).tril()
        num = torch.einsum("bid,bjd,bje,ij->bie", phi(Q), phi(K), V, mask)
        den = torch.einsum("bid,bjd,ij->bi", phi(Q), phi(K), mask)
        return num / den.unsqueeze(-1)

    def shifted(Q, K, V):  # reads the state before adding position i
        num = torch.einsum("bid,bjd,bje,ij->bie", phi(Q), phi(K), V,
                           torch.ones(Q.shape[1], Q.shape[1]).tril(-1))
        den = torch.einsum("bid,bjd,ij->bi", phi(Q), phi(K), torch.ones(Q.shape[1], Q.shape[1]).tril(-1))
        return num / den.unsqueeze(-1).clamp(min=1e-30)

    return check_function(
        fn, reference, _inputs, name="causal linear attention as a recurrence",
        forbidden=[attention, linear_attention_recurrent],
        mistakes={
            "your output does not depend on order: every position sees every key. A recurrence must "
            "only use keys up to the current position.":
                lambda Q, K, V: attention(Q, K, V, normaliser="linear"),
            "the normaliser is missing: divide by phi(q_i) . z_i, with z the running sum of phi(k_j).":
                no_denominator,
            "position i does not see its own key: update the state before you read it.": shifted,
            "the feature map looks like plain elu: phi(x) = elu(x) + 1 keeps every feature positive.":
                lambda Q, K, V: with_phi(F.elu, Q, K, V),
            "the feature map looks like ReLU: this exercise uses phi(x) = elu(x) + 1.":
                lambda Q, K, V: with_phi(F.relu, Q, K, V),
        },
        hint="keep a state S (d_k x d_v) and z (d_k); at each step add phi(k_i)^T v_i to S and phi(k_i) to z, "
             "then read out with phi(q_i).",
    )

