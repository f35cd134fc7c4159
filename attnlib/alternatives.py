"""Tools for chapter 4 (can ReLU replace softmax?): honest timing, FLOP counts,
linear attention as a recurrence, and a one-layer recall model.

Timing on a shared machine is noisy, so :func:`time_fn` warms up, repeats and
reports the *median*; claims built on it should be ratios or log-log slopes
(:func:`fit_loglog`), never absolute times.
"""
import math
import statistics
import time
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from .sdpa import elu_feature_map
from .mha import MultiHeadAttention


# ----------------------------------------------------------------- timing
def time_samples(fn: Callable, *args, warmup: int = 1, repeats: int = 5, clock: str = "cpu") -> list[float]:
    """Every one of ``repeats`` timed calls of ``fn(*args)``, in seconds, after ``warmup`` untimed ones.

    ``clock="cpu"`` (default) measures the CPU time of this process
    (``time.process_time``): on a machine shared with other jobs it counts the
    work done, not the time spent waiting for a core, so it is far less noisy
    than wall time. With several threads it adds their times up; the chapters
    run on one thread. ``clock="wall"`` measures wall time (``time.perf_counter``).

    Runs under ``torch.no_grad()``. Keep all the samples to show the spread;
    :func:`time_fn` summarises them by their median.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    with torch.no_grad():
        for _ in range(warmup):
            fn(*args)
        times = []
        for _ in range(repeats):
            start = now()
            fn(*args)
            times.append(now() - start)
    return times


def time_fn(fn: Callable, *args, warmup: int = 1, repeats: int = 5, clock: str = "cpu") -> float:
    """Median time of ``fn(*args)`` in seconds, after ``warmup`` untimed calls (see :func:`time_samples`).

    The median of a few repeats is robust to the odd slow call; the minimum would
    flatter, the mean would be pulled up by a single hiccup.
    """
    return statistics.median(time_samples(fn, *args, warmup=warmup, repeats=repeats, clock=clock))


class LogLogFit(NamedTuple):
    slope: float  # time ~ n ** slope
    intercept: float  # log10(time) at n = 1

    def predict(self, n):
        """Fitted time at ``n`` (same unit as the data)."""
        return 10 ** (self.intercept + self.slope * np.log10(n))


def fit_loglog(ns, times) -> LogLogFit:
    """Least-squares line through ``(log10 n, log10 time)``: its slope is the empirical exponent."""
    ns, times = np.asarray(ns, dtype=float), np.asarray(times, dtype=float)
    if ns.shape != times.shape or ns.size < 2:
        raise ValueError(f"need two or more matching points, got {ns.shape} and {times.shape}")
    if (ns <= 0).any() or (times <= 0).any():
        raise ValueError("ns and times must be positive for a log-log fit")
    slope, intercept = np.polyfit(np.log10(ns), np.log10(times), 1)
    return LogLogFit(float(slope), float(intercept))


def crossover(fit_a: LogLogFit, fit_b: LogLogFit) -> float:
    """The ``n`` where the two fitted lines meet (``inf`` if they are parallel)."""
    if math.isclose(fit_a.slope, fit_b.slope):
        return math.inf
    return 10 ** ((fit_b.intercept - fit_a.intercept) / (fit_a.slope - fit_b.slope))


# -------------------------------------------------------------- FLOP counts
def attention_flops(n: int, d_k: int, d_v: int | None = None, kind: str = "quadratic") -> int:
    """Multiply-adds x 2 of one head's forward pass on ``n`` queries and ``n`` keys.

    ``"quadratic"`` (softmax, ReLU, sigmoid: anything applied element-wise to
    ``Q K^T``): ``2 n^2 d_k`` for the scores, ``2 n^2 d_v`` for ``weights @ V``,
    plus a few operations per score (counted as 5 n^2).
    ``"linear"`` (a factorised feature map): ``2 n d_k d_v`` for ``phi(K)^T V``,
    ``2 n d_k d_v`` for ``phi(Q) S``, ``4 n d_k`` for the normaliser, ``2 n d_k`` for phi.
    """
    d_v = d_k if d_v is None else d_v
    if kind == "quadratic":
        return 2 * n * n * d_k + 2 * n * n * d_v + 5 * n * n
    if kind == "linear":
        return 4 * n * d_k * d_v + 6 * n * d_k
    raise ValueError(f"kind must be 'quadratic' or 'linear', got {kind!r}")


def predicted_crossover(d_k: int, d_v: int | None = None) -> float:
    """The ``n`` at which the two FLOP counts of :func:`attention_flops` are equal.

    Solving ``(2 d_k + 2 d_v + 5) n^2 = (4 d_k d_v + 6 d_k) n`` gives
    ``n = (4 d_k d_v + 6 d_k) / (2 d_k + 2 d_v + 5)``, about ``d`` when ``d_k = d_v = d``.
    """
    d_v = d_k if d_v is None else d_v
    return (4 * d_k * d_v + 6 * d_k) / (2 * d_k + 2 * d_v + 5)


# ------------------------------------------------- linear attention, as an RNN
def linear_attention_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention computed one position at a time, like an RNN.

    The state is ``S`` of shape ``(..., d_k, d_v)`` and ``z`` of shape ``(..., d_k)``::

        S_i = S_{i-1} + phi(k_i)^T v_i,   z_i = z_{i-1} + phi(k_i),
        out_i = phi(q_i) S_i / (phi(q_i) . z_i)

    Shapes: q, k ``(..., n, d_k)``, v ``(..., n, d_v)`` -> ``(..., n, d_v)``.
    Memory does not grow with ``n``: this is how a decoder would run it.
    """
    phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)
    S = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])
    z = q.new_zeros(*q.shape[:-2], q.shape[-1])
    outs = []
    for i in range(q.shape[-2]):
        S = S + phi_k[..., i, :, None] * v[..., i, None, :]  # outer product phi(k_i)^T v_i
        z = z + phi_k[..., i, :]
        num = (phi_q[..., i, None, :] @ S).squeeze(-2)  # (..., d_v)
        den = (phi_q[..., i, :] * z).sum(-1, keepdim=True)  # (..., 1)
        outs.append(num / den)
    return torch.stack(outs, dim=-2)


def relu_feature_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Linear attention with ReLU as the *feature map*: ``ReLU(q_i) . ReLU(k_j)`` as the weights.

    This is how EfficientViT (Cai et al. 2023) uses ReLU: not on the scores ``q . k``
    but on ``q`` and ``k`` separately, so that the weights factorise and the product is
    computed right to left in O(n)::

        out = ReLU(Q) (ReLU(K)^T V) / (ReLU(Q) (ReLU(K)^T 1) + eps)

    (``eps`` keeps a query whose features are all zero from dividing by zero.) Rows of
    the implied weights sum to 1 wherever the denominator is not zero. Non-causal.
    Shapes: q, k ``(..., n, d_k)``, v ``(..., n, d_v)`` -> ``(..., n, d_v)``.
    """
    phi_q, phi_k = torch.relu(q), torch.relu(k)
    state = phi_k.transpose(-2, -1) @ v  # (..., d_k, d_v): no n x n matrix anywhere
    norm = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # (..., n, 1)
    return (phi_q @ state) / (norm + eps)


# ------------------------------------------------------- a one-layer recall model
class ShiftRecall(nn.Module):
    """Token embedding + a shift of the previous token + one attention layer + readout.

    Associative recall needs two steps: bind each value to the key before it,
    then let each query find its key. The *shift* does the first step without
    attention (each position also sees the token before it, like the short
    convolutions of H3 and Based), so that a single attention layer, the part
    being compared, does the lookup::

        h = E[x_t] + P[x_{t-1}] + pos_t;   h = h + MHA(LN(h));   logits = h W

    Args:
        vocab_size, num_classes, d_model, num_heads, max_len: sizes.
        normaliser: passed to :class:`~attnlib.mha.MultiHeadAttention`.
        positions: add learned position embeddings (``pos_t``). Recall does not need
            them (the shift already tells a value from the key before it); without them
            the model runs on sequences of any length, so it can be tested on lengths
            it was not trained on.

    ``forward``: token ids ``(batch, n)`` -> logits ``(batch, n, num_classes)``.
    """

    def __init__(self, vocab_size, num_classes, d_model, *, num_heads=1, normaliser="softmax", max_len=128,
                 positions=True):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.prev = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model) if positions else None
        self.ln = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, normaliser=normaliser)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        if x.dim() != 2 or x.is_floating_point():
            raise ValueError(f"expected token ids of shape (batch, n), got {tuple(x.shape)} {x.dtype}")
        if self.pos is not None and x.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"sequence of length {x.shape[1]} is longer than max_len={self.pos.num_embeddings}")
        p = self.prev(x)  # (batch, n, d_model)
        h = self.embed(x) + torch.cat([torch.zeros_like(p[:, :1]), p[:, :-1]], dim=1)
        if self.pos is not None:
            h = h + self.pos.weight[: x.shape[1]]
        h = h + self.attn(self.ln(h))
        return self.head(h)


def describe_recall(x: torch.Tensor, y: torch.Tensor, num_keys: int) -> str:
    """One recall sequence as readable text: keys ``k3``, values ``v5``, and, under each
    query, the value the model must answer (``associative_recall``'s token ids: keys
    ``0 .. num_keys-1``, then values; labels are value indices)."""
    if x.dim() != 1 or y.shape != x.shape:
        raise ValueError(f"expected one sequence x and its labels y of the same shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    tokens = [f"k{t}" if t < num_keys else f"v{t - num_keys}" for t in x.tolist()]
    answers = ["" if t < 0 else f"v{t}" for t in y.tolist()]
    width = max(len(t) for t in tokens + answers) + 1
    return ("input:  " + "".join(t.rjust(width) for t in tokens) + "\n"
            + "target: " + "".join((a or ".").rjust(width) for a in answers))


# ------------------------------------------------------------ speed of learning
def steps_to_reach(eval_step, curves, level: float, never: float = math.inf) -> np.ndarray:
    """Per seed, the first step at which a learning curve reaches ``level``.

    Args:
        eval_step: ``(E,)`` the steps at which the curves were measured (increasing), as in
            ``History.eval_step``.
        curves: ``(num_seeds, E)`` held-out scores, as in ``History.eval``.
        level: the score to reach.
        never: what a seed whose curve never reaches ``level`` gets (default ``inf``; the
            last step is a lower bound that flatters the seed).

    The step is interpolated linearly between the two evaluations that straddle ``level``
    (the first evaluation itself if the curve starts at or above it), so the resolution is
    finer than the spacing of the evaluations. Returns ``(num_seeds,)`` floats.
    """
    step = np.asarray(eval_step, dtype=float)
    acc = np.asarray(curves, dtype=float)
    if acc.ndim != 2 or acc.shape[1] != step.shape[0] or step.ndim != 1:
        raise ValueError(f"expected eval_step (E,) and curves (num_seeds, E), got {step.shape} and {acc.shape}")
    out = np.full(acc.shape[0], float(never))
    for s, a in enumerate(acc):
        hit = np.nonzero(a >= level)[0]
        if hit.size == 0:
            continue
        i = hit[0]
        if i == 0:
            out[s] = step[0]
        else:
            out[s] = step[i - 1] + (level - a[i - 1]) / (a[i] - a[i - 1]) * (step[i] - step[i - 1])
    return out
