"""Scaled dot-product attention with a pluggable normaliser.

Vaswani et al. (2017) write attention as::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

The softmax is one way to turn the scores ``S = Q K^T / sqrt(d_k)`` into
weights. :func:`attention` lets you swap it for the alternatives that
chapter 4 compares:

``"softmax"``     ``softmax(S)``: rows are non-negative and sum to 1.
``"relu"``        ``relu(S) / n``, with ``n`` the number of keys a query may see
                  (Wortsman et al. 2023). Rows no longer sum to 1.
``"relu_plain"``  ``relu(S)``, no division: its row sums grow with ``n``.
``"sigmoid"``     ``sigmoid(S - log n)`` (Ramapuram et al. 2024).
``"linear"``      ``phi(q) . phi(k)`` normalised over the keys, with the
                  feature map ``phi(x) = elu(x) + 1`` (Katharopoulos et al.
                  2020). Computed in O(n) by associativity:
                  ``phi(Q) (phi(K)^T V)`` instead of ``(phi(Q) phi(K)^T) V``.

Masks follow :func:`torch.nn.functional.scaled_dot_product_attention`: a
boolean mask is ``True`` where a query *may* attend to a key; a float mask is
added to the scores (``-inf`` blocks). A query that may attend to no key at all
gets weights of zero and an output of zero, never NaN.
"""
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

NORMALISERS = ("softmax", "relu", "relu_plain", "sigmoid", "linear")

# Whether the softmax path may hand its work to PyTorch's fused kernel
# (F.scaled_dot_product_attention) when nothing but the output is asked for.
# attnlib.training turns it off while it trains seeds under torch.func.vmap,
# where the fused kernel has no batching rule and falls back slowly.
USE_FUSED_KERNEL = True


@contextmanager
def explicit_softmax():
    """Within this block, softmax attention always runs the explicit matmul-softmax code."""
    global USE_FUSED_KERNEL
    before, USE_FUSED_KERNEL = USE_FUSED_KERNEL, False
    try:
        yield
    finally:
        USE_FUSED_KERNEL = before


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = elu(x) + 1``, the positive feature map of linear attention."""
    return F.elu(x) + 1.0


def _check_inputs(q, k, v, mask, normaliser):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., seq_len, features), "
                f"got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (q.dim() == k.dim() == v.dim()):
        raise ValueError(
            "q, k and v must have the same number of dimensions, got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            "q, k and v must agree on their leading (batch, head) dimensions, got "
            f"{tuple(q.shape[:-2])}, {tuple(k.shape[:-2])}, {tuple(v.shape[:-2])}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same feature size d_k: q has {q.shape[-1]}, k has {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length n_k: k has {k.shape[-2]}, v has {v.shape[-2]}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool and mask.dtype != q.dtype:
        raise ValueError(
            f"mask must be bool (True = may attend) or float of q's dtype {q.dtype} "
            f"(added to the scores), got {mask.dtype}"
        )
    n_q, n_k = q.shape[-2], k.shape[-2]
    expected = f"(..., {n_q} or 1, {n_k}) broadcastable to {tuple(q.shape[:-2]) + (n_q, n_k)}"
    if mask.dim() < 2 or mask.dim() > q.dim():
        raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}")
    if mask.shape[-1] != n_k or mask.shape[-2] not in (1, n_q):
        raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}")
    lead = q.shape[: q.dim() - 2]
    mlead = mask.shape[:-2]
    for m, t in zip(reversed(mlead), reversed(lead)):
        if m not in (1, t):
            raise ValueError(f"mask must have shape {expected}, got {tuple(mask.shape)}")


def attention(q, k, v, mask=None, *, normaliser="softmax", causal=False, scale=None,
              return_weights=False):
    """Scaled dot-product attention.

    Args:
        q: queries, shape ``(..., n_q, d_k)``.
        k: keys, shape ``(..., n_k, d_k)``.
        v: values, shape ``(..., n_k, d_v)``.
        mask: ``None``, a bool tensor (True = may attend) or a float tensor added
            to the scores, of shape ``(..., n_q, n_k)`` or ``(..., 1, n_k)``.
            ``"linear"`` accepts only a bool mask of shape ``(..., 1, n_k)``.
        normaliser: one of :data:`NORMALISERS`.
        causal: if True, query ``i`` may only attend to keys ``j <= i``.
        scale: multiplies the scores; default ``1 / sqrt(d_k)``. Not used by
            ``"linear"``, whose feature map takes the raw ``q`` and ``k``.
        return_weights: also return the weights, shape ``(..., n_q, n_k)``.
            For ``"linear"`` this builds the n_q x n_k matrix explicitly.

    Returns:
        ``out`` of shape ``(..., n_q, d_v)``, or ``(out, weights)``.
    """
    _check_inputs(q, k, v, mask, normaliser)
    n_q, n_k, d_k = q.shape[-2], k.shape[-2], q.shape[-1]
    if causal and n_q != n_k:
        raise ValueError(f"causal=True needs n_q == n_k, got n_q={n_q}, n_k={n_k}")

    if normaliser == "linear":
        return _linear_attention(q, k, v, mask, causal, return_weights)

    allowed, bias = None, None
    if mask is not None and mask.dtype == torch.bool:
        allowed = mask
    elif mask is not None:
        bias, allowed = mask, ~torch.isneginf(mask)
    if causal:
        tril = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        allowed = tril if allowed is None else (allowed & tril)

    if scale is None:
        scale = 1.0 / math.sqrt(d_k)
    if normaliser == "softmax" and mask is None and not return_weights and USE_FUSED_KERNEL:
        # Exactly the computation below, done by PyTorch's fused kernel (faster, less memory).
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., n_q, n_k)
    if bias is not None:
        scores = scores + bias

    if normaliser == "softmax":
        weights = _masked_softmax(scores, allowed)
    else:
        if allowed is not None:
            scores = scores.masked_fill(~allowed, 0.0)
            n_seen = allowed.sum(-1, keepdim=True).clamp(min=1).to(q.dtype)
        else:
            n_seen = torch.full((), float(n_k), dtype=q.dtype, device=q.device)
        if normaliser == "relu":
            weights = F.relu(scores) / n_seen
        elif normaliser == "relu_plain":
            weights = F.relu(scores)
        else:  # sigmoid
            weights = torch.sigmoid(scores - torch.log(n_seen))
        if allowed is not None:
            weights = weights.masked_fill(~allowed, 0.0)

    out = weights @ v
    return (out, weights) if return_weights else out


def _masked_softmax(scores, allowed):
    """Softmax over the last axis; blocked entries get 0, fully blocked rows get all 0."""
    if allowed is None:
        return torch.softmax(scores, dim=-1)
    blocked = ~allowed
    # A finite stand-in for -inf: exp(min - max) is exactly 0 for a row with any
    # allowed entry, and a fully blocked row stays finite (we zero it below).
    scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    return weights.masked_fill(blocked, 0.0)


def _linear_attention(q, k, v, mask, causal, return_weights):
    n_q, n_k = q.shape[-2], k.shape[-2]
    if mask is not None and (mask.dtype != torch.bool or (mask.shape[-2] != 1 and n_q != 1)):
        raise ValueError(
            "linear attention computes phi(Q) (phi(K)^T V), so it can honour only a bool "
            "key mask that is the same for every query, of shape (..., 1, n_k), and/or "
            f"causal=True; got a {mask.dtype} mask of shape {tuple(mask.shape)}"
        )
    phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)  # (..., n, d_k)
    if mask is not None:
        phi_k = phi_k * mask.transpose(-2, -1).to(phi_k.dtype)  # blocked keys contribute 0
    if causal:
        # Prefix sums: S_i = sum_{j<=i} phi(k_j)^T v_j  and  z_i = sum_{j<=i} phi(k_j)
        S = torch.cumsum(phi_k.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)  # (..., n, d_k, d_v)
        z = torch.cumsum(phi_k, dim=-2)  # (..., n, d_k)
        num = (phi_q.unsqueeze(-2) @ S).squeeze(-2)  # (..., n, d_v)
        den = (phi_q * z).sum(-1, keepdim=True)  # (..., n, 1)
    else:
        S = phi_k.transpose(-2, -1) @ v  # (..., d_k, d_v): the whole "memory"
        z = phi_k.sum(-2)  # (..., d_k)
        num = phi_q @ S  # (..., n_q, d_v)
        den = (phi_q * z.unsqueeze(-2)).sum(-1, keepdim=True)  # (..., n_q, 1)
    # phi > 0, so den == 0 only when a query sees no key: its output is then 0.
    out = num / den.masked_fill(den == 0, 1.0)
    if not return_weights:
        return out
    allowed = mask
    if causal:
        tril = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        allowed = tril if allowed is None else (allowed & tril)
    return out, linear_attention_weights(q, k, allowed)


def linear_attention_weights(q, k, allowed=None):
    """The n_q x n_k weights of linear attention, built explicitly (O(n^2)).

    ``w_ij = phi(q_i) . phi(k_j) / sum_j' phi(q_i) . phi(k_j')`` over allowed keys.
    Shapes: q ``(..., n_q, d_k)``, k ``(..., n_k, d_k)``, allowed bool
    broadcastable to ``(..., n_q, n_k)`` -> ``(..., n_q, n_k)``.
    """
    sim = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)
    if allowed is not None:
        sim = sim.masked_fill(~allowed, 0.0)
    den = sim.sum(-1, keepdim=True)
    return sim / den.masked_fill(den == 0, 1.0)
