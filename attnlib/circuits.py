"""What W_O does, one head at a time (chapter 3).

Multi-head attention ends with ``concat(head_1, ..., head_h) W_O``. Cut ``W_O``
into ``h`` blocks of ``d_v`` rows, ``W_O^h`` (head h's rows), and the product is
a sum over heads::

    concat(head_1, ..., head_h) W_O = sum_h head_h W_O^h        head_h: (n, d_v), W_O^h: (d_v, d_model)

Since ``head_h = A_h X W_V^h + b_V^h`` (the attention weights ``A_h`` of a row
sum to 1), each head writes ``A_h X (W_V^h W_O^h)`` into the residual stream:
the ``d_model x d_model`` matrix ``W_V^h W_O^h`` of rank at most ``d_v`` is the
head's *OV circuit* (Elhage et al. 2021). This module computes OV circuits,
applies the symmetry ``W_V^h M``, ``M^-1 W_O^h`` that leaves them unchanged,
truncates them to a lower rank, and fuses ``W_O`` into the MLP's ``W_1`` in a
block with no LayerNorm and no residual connection.

Orientation is the paper's (``x @ W``), as in :class:`attnlib.mha.MultiHeadAttention`;
``nn.Linear`` stores the transpose, so the MLP's ``W_1`` is ``linear1.weight.T``.
"""
import copy

import torch
import torch.nn as nn

from .block import TransformerBlock
from .mha import MultiHeadAttention, merge_heads


def _require_linear_values(mha: MultiHeadAttention, what: str):
    """OV circuits and the value-bias algebra assume V = X W_V + b_V, with nothing after it."""
    if mha.qkv_activation is not None:
        raise ValueError(f"{what} assumes V = X W_V + b_V, but this layer applies "
                         f"qkv_activation={mha.qkv_activation!r} to V: use qkv_activation=None")


def _require_one_value_head_per_query_head(mha: MultiHeadAttention, what: str):
    if mha.num_kv_heads != mha.num_heads:
        raise ValueError(f"{what} needs one value head per query head (num_kv_heads == num_heads), "
                         f"got num_kv_heads={mha.num_kv_heads}, num_heads={mha.num_heads}")


def _kv_head(mha: MultiHeadAttention, i: int) -> int:
    """The key/value head that query head ``i`` reads (grouped-query attention)."""
    return i // (mha.num_heads // mha.num_kv_heads)


def _head_outputs(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Every head's ``head_h = A_h V_h`` for self-attention on ``x``: ``(batch, num_heads, n, d_v)``.

    Computed as the layer does: bias and ``qkv_activation`` on V, each key/value head
    shared by its group of query heads.
    """
    _, weights = mha(x, return_weights=True)  # (batch, h, n, n); also checks x's shape
    return weights @ mha.head_values(x)


def _value_map(mha: MultiHeadAttention, i: int) -> torch.Tensor:
    """Head ``i``'s ``W_V^i``, ``(d_model, d_v)``; the identity's columns if ``use_W_V=False``."""
    W_V = mha.head_matrices(i)["W_V"]
    if W_V is None:
        eye = torch.eye(mha.d_model, dtype=mha.W_Q.dtype, device=mha.W_Q.device)
        W_V = eye[:, i * mha.d_v:(i + 1) * mha.d_v]
    return W_V


def _output_map(mha: MultiHeadAttention, i: int) -> torch.Tensor:
    """Head ``i``'s rows of ``W_O``, ``(d_v, d_model)``; the identity's rows if ``use_W_O=False``."""
    W_O = mha.head_matrices(i)["W_O"]
    if W_O is None:
        eye = torch.eye(mha.d_model, dtype=mha.W_Q.dtype, device=mha.W_Q.device)
        W_O = eye[i * mha.d_v:(i + 1) * mha.d_v, :]
    return W_O


def ov_matrices(mha: MultiHeadAttention) -> torch.Tensor:
    """The OV circuits ``W_V^h W_O^h`` of every head: ``(num_heads, d_model, d_model)``.

    Each has rank at most ``d_v = d_model / num_heads``. Needs ``num_kv_heads == num_heads``.
    """
    _require_one_value_head_per_query_head(mha, "ov_matrices")
    return torch.stack([_value_map(mha, i) @ _output_map(mha, i) for i in range(mha.num_heads)])


def head_contributions(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """What each head adds to the output, ``head_h W_O^h``: ``(batch, num_heads, n, d_model)``.

    Summed over heads and added to ``b_O`` they give ``mha(x)`` (self-attention), for
    every normaliser, ``qkv_activation`` and number of key/value heads.
    """
    heads = _head_outputs(mha, x)  # (batch, h, n, d_v)
    out = [heads[:, i] @ _output_map(mha, i) for i in range(mha.num_heads)]  # (batch, n, d_model) each
    return torch.stack(out, dim=1)


def mha_via_ov(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention computed from the fused OV matrices; ``(batch, n, d_model)``.

    ``sum_h A_h (x OV_h) + sum_h b_V^h W_O^h + b_O``: the value bias passes
    through unchanged because each row of ``A_h`` sums to 1 (softmax only).
    """
    if mha.normaliser != "softmax":
        raise ValueError("mha_via_ov assumes softmax weights, whose rows sum to 1")
    _require_linear_values(mha, "mha_via_ov")
    _, weights = mha(x, return_weights=True)  # (batch, h, n, n)
    OV = ov_matrices(mha)  # (h, d_model, d_model)
    out = torch.einsum("bhqk,bkd,hde->bqe", weights, x, OV)
    return out + output_bias(mha)


def output_bias(mha: MultiHeadAttention) -> torch.Tensor:
    """The constant the layer adds to every position: ``b_O + sum_h b_V^h W_O^h``, ``(d_model,)``.

    ``b_V^h`` is the value bias of the key/value head that query head ``h`` reads. A
    constant only when the rows of the weights sum to 1 (softmax) and V has no activation.
    """
    _require_linear_values(mha, "output_bias")
    bias = torch.zeros(mha.d_model, dtype=mha.W_Q.dtype, device=mha.W_Q.device)
    if mha.b_O is not None:
        bias = bias + mha.b_O
    if mha.b_V is not None:
        for i in range(mha.num_heads):
            g = _kv_head(mha, i)
            bias = bias + mha.b_V[g * mha.d_v:(g + 1) * mha.d_v] @ _output_map(mha, i)
    return bias


@torch.no_grad()
def apply_gauge(mha: MultiHeadAttention, Ms) -> MultiHeadAttention:
    """A copy of ``mha`` with ``W_V^h <- W_V^h M_h``, ``b_V^h <- b_V^h M_h``, ``W_O^h <- M_h^-1 W_O^h``.

    ``Ms``: ``(num_heads, d_v, d_v)`` invertible matrices. The copy computes the
    same function: every OV circuit, and the output bias, is unchanged.
    """
    if mha.W_V is None or mha.W_O is None:
        raise ValueError("apply_gauge needs both W_V and W_O")
    _require_one_value_head_per_query_head(mha, "apply_gauge")
    _require_linear_values(mha, "apply_gauge")
    Ms = torch.as_tensor(Ms, dtype=mha.W_Q.dtype, device=mha.W_Q.device)
    if Ms.shape != (mha.num_heads, mha.d_v, mha.d_v):
        raise ValueError(f"Ms must have shape (num_heads, d_v, d_v) = {(mha.num_heads, mha.d_v, mha.d_v)}, "
                         f"got {tuple(Ms.shape)}")
    out = copy.deepcopy(mha)
    for i in range(mha.num_heads):
        cols = slice(i * mha.d_v, (i + 1) * mha.d_v)
        out.W_V[:, cols] = mha.W_V[:, cols] @ Ms[i]
        if mha.b_V is not None:
            out.b_V[cols] = mha.b_V[cols] @ Ms[i]
        out.W_O[cols, :] = torch.linalg.solve(Ms[i], mha.W_O[cols, :])
    return out


@torch.no_grad()
def truncate_ov(mha: MultiHeadAttention, rank: int) -> MultiHeadAttention:
    """A copy of ``mha`` whose every OV circuit is replaced by its best rank-``rank`` approximation.

    The value bias is first folded into ``b_O`` (same function), then each
    ``W_V^h W_O^h = U S V^T`` is cut to its ``rank`` largest singular values and
    written back as ``W_V^h = U_r S_r`` (padded with zeros to ``d_v`` columns),
    ``W_O^h = V_r^T`` (padded with zero rows). ``rank >= d_v`` gives the same function.
    """
    if mha.W_V is None or mha.W_O is None:
        raise ValueError("truncate_ov needs both W_V and W_O")
    _require_one_value_head_per_query_head(mha, "truncate_ov")
    _require_linear_values(mha, "truncate_ov")
    if not 0 <= rank:
        raise ValueError(f"rank must be non-negative, got {rank}")
    out = copy.deepcopy(mha)
    if out.b_O is None:
        raise ValueError("truncate_ov needs the output bias b_O (bias=True) to hold the folded value bias")
    out.b_O.copy_(output_bias(mha))
    if out.b_V is not None:
        out.b_V.zero_()
    OV = ov_matrices(mha)
    r = min(rank, mha.d_v)
    for i in range(mha.num_heads):
        U, S, Vh = torch.linalg.svd(OV[i])
        cols = slice(i * mha.d_v, (i + 1) * mha.d_v)
        out.W_V[:, cols] = 0.0
        out.W_O[cols, :] = 0.0
        out.W_V[:, i * mha.d_v:i * mha.d_v + r] = U[:, :r] * S[:r]
        out.W_O[i * mha.d_v:i * mha.d_v + r, :] = Vh[:r]
    return out


def centring_matrix(d: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``C = I - 1 1^T / d``, ``(d, d)``: ``y @ C`` subtracts each row's mean (LayerNorm's first step)."""
    return torch.eye(d, dtype=dtype, device=device) - torch.full((d, d), 1.0 / d, dtype=dtype, device=device)


class FusedAttentionMLP(nn.Module):
    """A no-LayerNorm, no-residual block with ``W_O`` fused into the MLP's ``W_1``.

    The original block computes ``MLP(concat(heads) W_O + b_O)`` with
    ``MLP(u) = act(u W_1 + b_1) W_2 + b_2``. Since nothing stands between the two
    linear maps, ``(c W_O + b_O) W_1 + b_1 = c (W_O W_1) + (b_O W_1 + b_1)``: one
    matrix ``W_OW_1`` of shape ``(h d_v, d_ff)`` replaces ``W_O`` and ``W_1``.

    Build it with :meth:`from_block`. ``forward``: ``(batch, n, d_model) -> (batch, n, d_model)``.
    """

    def __init__(self, attn: MultiHeadAttention, W_fused: torch.Tensor, b_fused: torch.Tensor,
                 linear2: nn.Linear, act):
        super().__init__()
        self.attn = attn  # its W_O is None: it returns concat(heads)
        self.W_fused = nn.Parameter(W_fused)  # (h * d_v, d_ff)
        self.b_fused = nn.Parameter(b_fused)  # (d_ff,)
        self.linear2 = linear2
        self.act = act

    @classmethod
    @torch.no_grad()
    def from_block(cls, block: TransformerBlock) -> "FusedAttentionMLP":
        """Fuse a ``TransformerBlock(norm="none", residual=False)``; the result computes the same function."""
        if block.norm != "none" or block.residual or block.mlp is None:
            raise ValueError("only a block with norm='none', residual=False and an MLP can be fused exactly")
        if block.attn_act is not None or block.stream_act is not None:
            raise ValueError("an activation between attention and MLP prevents the fusion")
        old = block.attn
        if old.W_O is None:
            raise ValueError("the block has no W_O to fuse")
        attn = MultiHeadAttention(old.d_model, old.num_heads, num_kv_heads=old.num_kv_heads,
                                  bias=old.b_Q is not None, use_W_V=old.W_V is not None, use_W_O=False,
                                  normaliser=old.normaliser, qkv_activation=old.qkv_activation)
        attn = attn.to(dtype=old.W_Q.dtype, device=old.W_Q.device)
        state = {k: v for k, v in old.state_dict().items() if k not in ("W_O", "b_O")}
        attn.load_state_dict(state)
        W_1 = block.mlp.linear1.weight.T  # (d_model, d_ff), paper orientation
        b_O = old.b_O if old.b_O is not None else torch.zeros(old.d_model, dtype=W_1.dtype, device=W_1.device)
        W_fused = old.W_O @ W_1  # (h d_v, d_ff)
        b_fused = b_O @ W_1 + block.mlp.linear1.bias
        return cls(attn, W_fused.clone(), b_fused.clone(), copy.deepcopy(block.mlp.linear2), block.mlp.act)

    def forward(self, x, *, key_padding_mask=None, causal=False):
        c = self.attn(x, key_padding_mask=key_padding_mask, causal=causal)  # (batch, n, h d_v)
        return self.linear2(self.act(c @ self.W_fused + self.b_fused))


def concat_heads(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """``concat(head_1, ..., head_h)`` before ``W_O``: ``(batch, n, num_heads * d_v)``."""
    return merge_heads(_head_outputs(mha, x))


@torch.no_grad()
def change_stream_basis(blocks, B: torch.Tensor) -> list:
    """Copies of no-LayerNorm blocks that compute the same function in the stream basis ``x B``.

    For blocks with ``norm="none"`` (residual or not), if ``h -> blocks -> out``
    then ``h B -> new blocks -> out B``: every matrix that *reads* the stream
    (``W_Q, W_K, W_V, W_1``) is multiplied by ``B^-1`` on the left, every matrix
    and bias that *writes* to it (``W_O, b_O, W_2, b_2``) by ``B`` on the right.
    With ``B = W_O^-1`` of one layer, that layer's ``W_O`` becomes the identity.

    Args:
        blocks: :class:`~attnlib.block.TransformerBlock` s with ``norm="none"`` and both W_V and W_O.
        B: ``(d_model, d_model)`` invertible.

    Returns:
        a list of new blocks.
    """
    out = []
    for block in blocks:
        if block.norm != "none":
            raise ValueError("a LayerNorm does not commute with a general change of basis; use norm='none'")
        attn = block.attn
        if attn.W_V is None or attn.W_O is None:
            raise ValueError("change_stream_basis needs both W_V and W_O")
        if B.shape != (attn.d_model, attn.d_model):
            raise ValueError(f"B must have shape (d_model, d_model) = {(attn.d_model, attn.d_model)}, "
                             f"got {tuple(B.shape)}")
        if block.attn_act is not None or block.stream_act is not None:
            raise ValueError("activations on the stream do not commute with a change of basis")
        B = B.to(dtype=attn.W_Q.dtype, device=attn.W_Q.device)
        new = copy.deepcopy(block)
        for name in ("W_Q", "W_K", "W_V"):
            getattr(new.attn, name).copy_(torch.linalg.solve(B, getattr(attn, name)))
        new.attn.W_O.copy_(attn.W_O @ B)
        if attn.b_O is not None:
            new.attn.b_O.copy_(attn.b_O @ B)
        if block.mlp is not None:
            W_1 = torch.linalg.solve(B, block.mlp.linear1.weight.T)  # (d_model, d_ff)
            new.mlp.linear1.weight.copy_(W_1.T)
            new.mlp.linear2.weight.copy_((block.mlp.linear2.weight.T @ B).T)
            new.mlp.linear2.bias.copy_(block.mlp.linear2.bias @ B)
        out.append(new)
    return out


# ------------------------------------------------------------ a trained OV circuit
def previous_token_task(num_examples: int, length: int, *, vocab_size: int = 16, seed: int = 0):
    """Copy the previous token: the label at position ``t`` is the token at ``t - 1``.

    Tokens are drawn uniformly from ``0 .. vocab_size-1``; position 0 has no label
    (``IGNORE``). A one-layer, attention-only model solves it with a head that looks
    one position back (its QK circuit, from the positions) and copies what it finds
    there (its OV circuit). Returns a :class:`attnlib.tasks.TaskData`.
    """
    from .tasks import IGNORE, TaskData

    if length < 2 or vocab_size < 2:
        raise ValueError(f"need length >= 2 and vocab_size >= 2, got {length} and {vocab_size}")
    g = torch.Generator().manual_seed(int(seed))
    X = torch.randint(0, vocab_size, (num_examples, length), generator=g)
    y = torch.full_like(X, IGNORE)
    y[:, 1:] = X[:, :-1]
    return TaskData(X, y, vocab_size, vocab_size)


@torch.no_grad()
def token_ov_circuits(model) -> torch.Tensor:
    """Every head's OV circuit read in tokens: ``W_E W_V^(i) W_O^(i) W_U``, ``(num_heads, V, V)``.

    Row ``a``, column ``b``: how much head ``i``, attending to a token ``a``, raises the
    logit of output ``b``. For a one-layer :class:`attnlib.models.TokenClassifier` over
    token ids with ``norm="none"`` (no LayerNorm between the embedding, the head and the
    unembedding, so the product is exactly what the model computes, up to biases and the
    attention weights). ``W_E``: the embedding ``(V, d_model)``; ``W_U``: the output layer
    in the paper's orientation ``(d_model, num_classes)``.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not getattr(encoder, "tokens", False) or len(encoder.blocks) != 1:
        raise ValueError("token_ov_circuits needs a one-layer TokenClassifier over token ids")
    block = encoder.blocks[0]
    if block.norm != "none" or encoder.final_ln is not None:
        raise ValueError("token_ov_circuits needs norm='none': a LayerNorm would stand inside the product")
    W_E = encoder.embed.weight  # (V, d_model)
    W_U = model.head.weight.T  # (d_model, num_classes)
    return torch.stack([W_E @ ov @ W_U for ov in ov_matrices(block.attn)])


def diagonal_share(M: torch.Tensor) -> torch.Tensor:
    """The share of rows whose largest entry is the diagonal one: ``(..., V, V) -> (...)``.

    1.0 for a matrix that maps every token to itself ahead of every other token (a copy);
    about ``1 / V`` for a random matrix.
    """
    if M.dim() < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"expected square matrices (..., V, V), got shape {tuple(M.shape)}")
    V = M.shape[-1]
    return (M.argmax(-1) == torch.arange(V, device=M.device)).float().mean(-1)


# ------------------------------------------------------------ arms of the trained comparison
class ScaledAttention(nn.Module):
    """An attention layer whose output is multiplied by a fixed number: ``gain * attn(x)``.

    ``gain`` is a plain float, not a parameter: nothing about it is learned. Wrapped around a
    layer built with ``use_W_O=False`` it gives ``W_O = gain * I``, which has no learned output
    projection but starts the branch at the scale a standard ``W_O`` gives it (see
    :func:`w_o_init_gain`). Keyword arguments (masks) pass through.
    """

    def __init__(self, attn: nn.Module, gain: float):
        super().__init__()
        if not gain > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        self.attn, self.gain = attn, float(gain)

    def forward(self, x, **kwargs):
        return self.gain * self.attn(x, **kwargs)


class NoAttention(nn.Module):
    """Stands in for a block's attention and adds nothing to the stream: ``x -> 0``.

    A pre-LN block with it is ``x + MLP(LN_2(x))``: every position sees only itself. The
    control arm of a comparison on a task that needs attention.
    """

    def forward(self, x, **kwargs):
        return torch.zeros_like(x)


def w_o_init_gain(d_model: int, num_heads: int, *, draws: int = 200, seed: int = 0) -> float:
    """The root-mean-square factor by which a freshly initialised ``W_O`` scales a vector.

    ``sqrt(E ||c W_O||^2 / ||c||^2)``, which for any fixed ``c`` is ``sqrt(E ||W_O||_F^2 / (h d_v))``,
    averaged over ``draws`` layers initialised as :class:`~attnlib.mha.MultiHeadAttention` does
    (entries uniform on ``+-1/sqrt(h d_v)``, so about ``1/sqrt(3)``): the gain that
    ``W_O = gain * I`` needs to start at the standard branch's scale. Measured under its own
    ``seed``; the caller's random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sq = [MultiHeadAttention(d_model, num_heads).W_O.detach().pow(2).sum().item() for _ in range(draws)]
    return float((sum(sq) / draws / (num_heads * (d_model // num_heads))) ** 0.5)
