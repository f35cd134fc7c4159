"""Measurements for chapter 1: how nonlinear attention is, how fast tokens collapse, what a ReLU on the stream does.

``rank1_residual``        how far the tokens of a sequence are from a rank-1 matrix ``1 x^T``
``homogeneity_violation`` ``||f(aX) - a f(X)|| / ||a f(X)||``: 0 for a linear map
``additivity_violation``  ``||f(X+Y) - f(X) - f(Y)|| / ||f(X) + f(Y)||``: 0 for a linear map
``frozen_pattern``        multi-head attention with its weights computed once and then held fixed
``rank_collapse``         ``rank1_residual`` after each of ``depth`` random blocks
``stream_zero_fraction``  what a ReLU on the residual stream zeroes, layer by layer
``block_grad_norms``      gradient norm of each block's parameters for one batch

All tensors are batch-first: ``(batch, n, d_model)``.
"""
import torch
import torch.nn.functional as F

from .block import TransformerBlock
from .mha import merge_heads
from .training import loss_fn


def rank1_residual(X: torch.Tensor) -> torch.Tensor:
    """Relative distance of each sequence's tokens from a matrix whose rows are all equal.

    ``X``: ``(batch, n, d)``. Returns ``(batch,)``:
    ``||X - 1 x^T||_F / ||X||_F`` with ``x`` the mean token (the best choice of
    ``x`` in the Frobenius norm). This is the course's own measure, a relative,
    Frobenius-norm variant of the residual of Dong, Cordonnier & Loukas (2021), who
    use the composite ``l1,inf`` norm ``sqrt(||R||_1 ||R||_inf)`` of
    ``R = X - 1 x^T`` with ``x`` chosen to minimise it, unnormalised.
    0 means every token is the same vector: the sequence has collapsed to rank 1.
    """
    if not isinstance(X, torch.Tensor) or X.dim() != 3:
        raise ValueError(f"X must be a (batch, n, d) tensor, got {getattr(X, 'shape', type(X).__name__)}")
    res = X - X.mean(dim=1, keepdim=True)
    return res.flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1).clamp_min(1e-30)


def homogeneity_violation(f, X: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """``||f(alpha X) - alpha f(X)||_F / ||alpha f(X)||_F`` (a 0-d tensor); 0 for any linear ``f``."""
    with torch.no_grad():
        target = alpha * f(X)
        return (f(alpha * X) - target).norm() / target.norm()


def additivity_violation(f, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``||f(X + Y) - f(X) - f(Y)||_F / ||f(X) + f(Y)||_F`` (a 0-d tensor); 0 for any linear ``f``."""
    with torch.no_grad():
        target = f(X) + f(Y)
        return (f(X + Y) - target).norm() / target.norm()


def frozen_pattern(mha, X_pattern: torch.Tensor):
    """``Z -> concat_h(A_h V_h(Z)) W_O + b_O`` with ``A_h`` the weights ``mha`` computes on ``X_pattern``.

    ``V_h(Z)`` is what ``mha`` makes of ``Z`` for head h (:meth:`~attnlib.mha.MultiHeadAttention.head_values`):
    ``Z W_V + b_V``, then the layer's ``qkv_activation`` if it has one, each key/value head
    shared by its group of query heads. So ``g(X_pattern) == mha(X_pattern)``.

    ``X_pattern`` and ``Z``: ``(batch, n, d_model)``, the same shape. With the pattern held
    fixed and no ``qkv_activation`` the map is linear in ``Z`` (affine if the biases b_V, b_O
    are not 0); a ``qkv_activation`` on V stays a nonlinearity of ``Z``.
    """
    with torch.no_grad():
        _, A = mha(X_pattern, return_weights=True)  # (batch, h, n, n); checks X_pattern

    def g(Z):
        if not isinstance(Z, torch.Tensor) or Z.shape != X_pattern.shape:
            got = tuple(Z.shape) if isinstance(Z, torch.Tensor) else type(Z).__name__
            raise ValueError(f"Z must have the shape of X_pattern, {tuple(X_pattern.shape)}, got {got}")
        heads = A @ mha.head_values(Z)  # (batch, h, n, d_v)
        return mha.project(merge_heads(heads), mha.W_O, mha.b_O)

    return g


@torch.no_grad()
def rank_collapse(block_kwargs: dict, *, depth: int, seeds, batch: int = 4, n: int = 16,
                  d_model: int = 32, num_heads: int = 4) -> torch.Tensor:
    """``rank1_residual`` of random inputs passed through ``depth`` freshly initialised blocks.

    ``block_kwargs`` go to :class:`~attnlib.block.TransformerBlock`. Returns
    ``(len(seeds), depth + 1)``: column 0 is the input, column ``l`` the output of
    block ``l``, each averaged over the ``batch`` sequences.
    """
    out = torch.empty(len(seeds), depth + 1)
    for i, s in enumerate(seeds):
        torch.manual_seed(int(s))
        x = torch.randn(batch, n, d_model, dtype=torch.float64)
        out[i, 0] = rank1_residual(x).mean()
        for layer in range(depth):
            block = TransformerBlock(d_model, num_heads, **block_kwargs).double()
            x = block(x)
            out[i, layer + 1] = rank1_residual(x).mean()
    return out


@torch.no_grad()
def stream_zero_fraction(model, X: torch.Tensor) -> list:
    """For a model whose blocks have ``stream_activation="relu"``: the fraction of
    stream coordinates that each ReLU sets to zero, in the order they run.

    A block applies its stream ReLU after each of its sub-layers (after the add, or after
    the LayerNorm in a post-LN block): after the attention and, if the block has an MLP,
    after the MLP. So there are two entries per block with ``mlp=True``, one with
    ``mlp=False``. Each entry is averaged over every coordinate of every token of ``X``.

    ``model`` has ``model.encoder.blocks``; ``X`` is what ``model`` takes.
    """
    fractions = []
    blocks = model.encoder.blocks
    saved = [b.stream_act for b in blocks]
    if not all(act is F.relu for act in saved):
        raise ValueError("stream_zero_fraction needs every block built with stream_activation='relu'; "
                         f"got stream activations {[getattr(a, '__name__', a) for a in saved]}")

    def recording(x):
        fractions.append((x < 0).float().mean().item())
        return torch.relu(x)

    try:
        for b in blocks:
            b.stream_act = recording
        model(X)
    finally:
        for b, act in zip(blocks, saved):
            b.stream_act = act
    return fractions


def block_grad_norms(model, X: torch.Tensor, y: torch.Tensor) -> list:
    """Gradient norm of the loss with respect to each block's parameters (one entry per block)."""
    model.zero_grad(set_to_none=True)
    loss_fn(model(X), y).backward()
    norms = []
    for b in model.encoder.blocks:
        sq = sum(p.grad.pow(2).sum() for p in b.parameters() if p.grad is not None)
        norms.append(float(sq) ** 0.5)
    model.zero_grad(set_to_none=True)
    return norms
