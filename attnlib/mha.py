"""Multi-head attention with every matrix in plain sight.

The weights are stored the way Vaswani et al. (2017) write them, so that the
code reads like the paper::

    Q = X W_Q + b_Q            W_Q: (d_model, num_heads * d_k)
    K = X W_K + b_K            W_K: (d_model, num_kv_heads * d_k)
    V = X W_V + b_V            W_V: (d_model, num_kv_heads * d_v)
    head_i = Attention(Q_i, K_i, V_i)           Q_i: columns i*d_k .. (i+1)*d_k of Q
    MultiHead(X) = concat(head_1, ..., head_h) W_O + b_O     W_O: (num_heads * d_v, d_model)

with ``d_k = d_v = d_model / num_heads``. (``torch.nn.Linear`` stores the
transpose, ``(out_features, in_features)``; :meth:`MultiHeadAttention.from_torch`
takes care of that.)

All tensors are batch-first: ``(batch, seq_len, d_model)``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .sdpa import attention

ACTIVATIONS = {None: None, "relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(batch, n, num_heads * d_head)`` -> ``(batch, num_heads, n, d_head)``.

    The reshape gives ``(batch, n, num_heads, d_head)``; the transpose then puts
    the heads before the positions, so that each head is a separate
    ``(n, d_head)`` matrix to attend over.
    """
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (batch, n, features), got shape {tuple(x.shape)}")
    batch, n, features = x.shape
    if features % num_heads != 0:
        raise ValueError(f"features ({features}) must be divisible by num_heads ({num_heads})")
    return x.reshape(batch, n, num_heads, features // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(batch, num_heads, n, d_head)`` -> ``(batch, n, num_heads * d_head)``: the concat."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (batch, heads, n, d_head), got shape {tuple(x.shape)}")
    batch, num_heads, n, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, n, num_heads * d_head)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch-first.

    Args:
        d_model: width of the residual stream.
        num_heads: number of query heads ``h``; must divide ``d_model``.
        num_kv_heads: number of key/value heads (default ``num_heads``). 1 gives
            multi-query attention (Shazeer 2019), values in between grouped-query
            attention (Ainslie et al. 2023). Must divide ``num_heads``.
        bias: whether the four projections have biases.
        use_W_V: if False, V = X (no value projection; needs num_kv_heads == num_heads).
        use_W_O: if False, the output is the concatenated heads (W_O = identity).
        normaliser: how scores become weights, see :func:`attnlib.sdpa.attention`.
        qkv_activation: optional activation applied to Q, K and V right after
            their projections (``"relu"``, ``"gelu"``, ``"tanh"``); chapter 1.
    """

    def __init__(self, d_model, num_heads, *, num_kv_heads=None, bias=True, use_W_V=True,
                 use_W_O=True, normaliser="softmax", qkv_activation=None):
        super().__init__()
        if not isinstance(d_model, int) or not isinstance(num_heads, int) or d_model < 1 or num_heads < 1:
            raise ValueError(f"d_model and num_heads must be positive integers, got {d_model!r}, {num_heads!r}")
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}), "
                f"since each head gets d_k = d_model / num_heads features"
            )
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads < 1 or num_heads % num_kv_heads != 0:
            raise ValueError(f"num_kv_heads ({num_kv_heads}) must divide num_heads ({num_heads})")
        if not use_W_V and num_kv_heads != num_heads:
            raise ValueError("use_W_V=False needs num_kv_heads == num_heads (V = X has d_model features)")
        if qkv_activation not in ACTIVATIONS:
            raise ValueError(f"qkv_activation must be one of {list(ACTIVATIONS)}, got {qkv_activation!r}")
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.d_k = self.d_v = d_model // num_heads
        self.normaliser, self.qkv_activation = normaliser, qkv_activation

        def param(*shape):
            return nn.Parameter(torch.empty(*shape))

        self.W_Q = param(d_model, num_heads * self.d_k)
        self.W_K = param(d_model, num_kv_heads * self.d_k)
        self.W_V = param(d_model, num_kv_heads * self.d_v) if use_W_V else None
        self.W_O = param(num_heads * self.d_v, d_model) if use_W_O else None
        self.b_Q = param(num_heads * self.d_k) if bias else None
        self.b_K = param(num_kv_heads * self.d_k) if bias else None
        self.b_V = param(num_kv_heads * self.d_v) if (bias and use_W_V) else None
        self.b_O = param(d_model) if (bias and use_W_O) else None
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise as ``torch.nn.MultiheadAttention`` does (same distributions, not the same draws).

        - ``W_Q``, ``W_K``, ``W_V``: every entry uniform on ``(-a, a)`` with
          ``a = sqrt(6 / (d_model + 3 d_model))``. torch Xavier-initialises its packed
          ``(3 d_model, d_model)`` ``in_proj_weight``, whose fan-out is ``3 d_model``, so
          each of its three blocks gets this bound: ``sqrt(2)`` smaller than a
          Xavier init of a ``d_model x d_model`` matrix on its own. With
          ``num_kv_heads < num_heads`` (a layer torch does not have), ``W_K`` and ``W_V``
          keep the same bound, so that every head's scores have torch's variance.
        - ``W_O``: ``nn.Linear``'s default (Kaiming-uniform with ``a = sqrt(5)``),
          uniform on ``(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = num_heads * d_v``,
          as torch's ``out_proj``.
        - biases: zero, as torch's ``in_proj_bias`` and ``out_proj.bias``.
        """
        a = (6.0 / (self.d_model + 3 * self.d_model)) ** 0.5
        for W in (self.W_Q, self.W_K, self.W_V):
            if W is not None:
                nn.init.uniform_(W, -a, a)
        if self.W_O is not None:
            bound = 1.0 / self.W_O.shape[0] ** 0.5  # W_O is (fan_in, fan_out) in attnlib's layout
            nn.init.uniform_(self.W_O, -bound, bound)
        for b in (self.b_Q, self.b_K, self.b_V, self.b_O):
            if b is not None:
                nn.init.zeros_(b)

    # ------------------------------------------------------------------ checks
    def _check(self, query, key, value, key_padding_mask, attn_mask):
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 3:
                raise ValueError(
                    f"{name} must have shape (batch, seq_len, d_model={self.d_model}), "
                    f"got shape {tuple(t.shape)}"
                )
            if t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must have d_model={self.d_model} features in its last dimension, "
                    f"got shape {tuple(t.shape)}"
                )
            if t.dtype != self.W_Q.dtype:
                raise ValueError(f"{name} has dtype {t.dtype} but the weights are {self.W_Q.dtype}")
        batch, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]
        if not (query.shape[0] == key.shape[0] == value.shape[0]):
            raise ValueError(
                f"query, key and value must share the batch size, got {query.shape[0]}, "
                f"{key.shape[0]}, {value.shape[0]}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key and value must have the same length, got {key.shape[1]} and {value.shape[1]}")
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.shape != (batch, n_k):
                got = tuple(key_padding_mask.shape) if isinstance(key_padding_mask, torch.Tensor) else type(key_padding_mask).__name__
                raise ValueError(f"key_padding_mask must have shape (batch, n_k) = {(batch, n_k)}, got {got}")
            if key_padding_mask.dtype not in (torch.bool, query.dtype):
                raise ValueError(
                    f"key_padding_mask must be bool (True = ignore this key) or {query.dtype}, "
                    f"got {key_padding_mask.dtype}"
                )
        if attn_mask is not None:
            shapes = [(n_q, n_k), (batch * self.num_heads, n_q, n_k)]
            if not isinstance(attn_mask, torch.Tensor) or tuple(attn_mask.shape) not in shapes:
                got = tuple(attn_mask.shape) if isinstance(attn_mask, torch.Tensor) else type(attn_mask).__name__
                raise ValueError(f"attn_mask must have shape {shapes[0]} or {shapes[1]}, got {got}")
            if attn_mask.dtype not in (torch.bool, query.dtype):
                raise ValueError(
                    f"attn_mask must be bool (True = not allowed) or {query.dtype}, got {attn_mask.dtype}"
                )

    def _combined_mask(self, batch, n_q, n_k, key_padding_mask, attn_mask, dtype):
        """torch's two masks (True = blocked) -> one mask in attention()'s convention
        (bool True = allowed, or an additive float), shape (batch, h or 1, n_q or 1, n_k)."""
        masks = []
        if key_padding_mask is not None:
            masks.append(key_padding_mask.view(batch, 1, 1, n_k))
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                masks.append(attn_mask.view(1, 1, n_q, n_k))
            else:
                masks.append(attn_mask.view(batch, self.num_heads, n_q, n_k))
        if not masks:
            return None
        if all(m.dtype == torch.bool for m in masks):
            blocked = masks[0]
            for m in masks[1:]:
                blocked = blocked | m
            return ~blocked
        bias = 0.0
        for m in masks:
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
            bias = bias + m
        return bias

    # ----------------------------------------------------------------- forward
    def project(self, x, W, b):
        """``x W + b`` on every row: (batch, n, d_in) @ (d_in, d_out) -> (batch, n, d_out)."""
        if W is None:
            return x
        y = x @ W
        return y if b is None else y + b

    def head_values(self, value):
        """The values every query head reads: ``(batch, n_k, d_model) -> (batch, num_heads, n_k, d_v)``.

        ``value W_V + b_V``, then ``qkv_activation``, cut into ``num_kv_heads`` heads, each
        repeated for its group of ``num_heads / num_kv_heads`` query heads.
        """
        V = self.project(value, self.W_V, self.b_V)  # (batch, n_k, h_kv * d_v)
        act = ACTIVATIONS[self.qkv_activation]
        if act is not None:
            V = act(V)
        V = split_heads(V, self.num_kv_heads)  # (batch, h_kv, n_k, d_v)
        if self.num_kv_heads != self.num_heads:  # each V head serves a group of query heads
            V = V.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        return V  # (batch, h, n_k, d_v)

    def forward(self, query, key=None, value=None, *, key_padding_mask=None, attn_mask=None,
                causal=False, return_weights=False):
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(batch, n_q, d_model)``.
            key: ``(batch, n_k, d_model)``; defaults to ``query`` (self-attention).
            value: ``(batch, n_k, d_model)``; defaults to ``key``.
            key_padding_mask: ``(batch, n_k)``, bool ``True`` = ignore this key
                (torch.nn.MultiheadAttention's convention), or float added to scores.
            attn_mask: ``(n_q, n_k)`` or ``(batch * num_heads, n_q, n_k)``, bool
                ``True`` = not allowed, or float added to scores.
            causal: query ``i`` sees keys ``j <= i`` only.
            return_weights: also return the per-head weights ``(batch, num_heads, n_q, n_k)``.

        Returns:
            ``(batch, n_q, d_model)``, or ``(output, weights)``.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check(query, key, value, key_padding_mask, attn_mask)
        batch, n_q, n_k = query.shape[0], query.shape[1], key.shape[1]

        Q = self.project(query, self.W_Q, self.b_Q)  # (batch, n_q, h * d_k)
        K = self.project(key, self.W_K, self.b_K)  # (batch, n_k, h_kv * d_k)
        act = ACTIVATIONS[self.qkv_activation]
        if act is not None:
            Q, K = act(Q), act(K)

        Q = split_heads(Q, self.num_heads)  # (batch, h, n_q, d_k)
        K = split_heads(K, self.num_kv_heads)  # (batch, h_kv, n_k, d_k)
        if self.num_kv_heads != self.num_heads:  # each K/V head serves a group of query heads
            K = K.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        V = self.head_values(value)  # (batch, h, n_k, d_v), the same for the K/V groups

        mask = self._combined_mask(batch, n_q, n_k, key_padding_mask, attn_mask, query.dtype)
        result = attention(Q, K, V, mask, normaliser=self.normaliser, causal=causal,
                           return_weights=return_weights)
        heads, weights = result if return_weights else (result, None)  # heads: (batch, h, n_q, d_v)
        out = self.project(merge_heads(heads), self.W_O, self.b_O)  # (batch, n_q, d_model)
        return (out, weights) if return_weights else out

    # ------------------------------------------------------------ inspection
    def head_matrices(self, i: int) -> dict:
        """Head ``i``'s own matrices, sliced out of the fused ones.

        Returns ``W_Q`` and ``W_K`` of shape ``(d_model, d_k)``, ``W_V`` of shape
        ``(d_model, d_v)`` (None if use_W_V=False) and ``W_O`` of shape
        ``(d_v, d_model)``: head i's rows of W_O (None if use_W_O=False).
        """
        if not 0 <= i < self.num_heads:
            raise ValueError(f"head index must be in [0, {self.num_heads}), got {i}")
        kv = i // (self.num_heads // self.num_kv_heads)
        q_cols = slice(i * self.d_k, (i + 1) * self.d_k)
        kv_cols = slice(kv * self.d_k, (kv + 1) * self.d_k)
        return {
            "W_Q": self.W_Q[:, q_cols],
            "W_K": self.W_K[:, kv_cols],
            "W_V": None if self.W_V is None else self.W_V[:, kv_cols],
            "W_O": None if self.W_O is None else self.W_O[q_cols, :],
        }

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of ``mha``'s weights in attnlib's layout; same outputs, same dtype.

        Call the copy with batch-first tensors, whatever ``mha.batch_first`` is.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise ValueError(f"from_torch expects torch.nn.MultiheadAttention, got {type(mha).__name__}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not supported by attnlib")
        if not mha._qkv_same_embed_dim:
            raise ValueError("kdim/vdim different from embed_dim are not supported by attnlib")
        d = mha.embed_dim
        has_bias = mha.in_proj_bias is not None
        ours = cls(d, mha.num_heads, bias=has_bias)
        ours = ours.to(dtype=mha.in_proj_weight.dtype, device=mha.in_proj_weight.device)
        W_in = mha.in_proj_weight.detach()  # (3d, d): rows = outputs of [Q; K; V]
        with torch.no_grad():
            ours.W_Q.copy_(W_in[:d].T)
            ours.W_K.copy_(W_in[d:2 * d].T)
            ours.W_V.copy_(W_in[2 * d:].T)
            ours.W_O.copy_(mha.out_proj.weight.detach().T)
            if has_bias:
                b_in = mha.in_proj_bias.detach()
                ours.b_Q.copy_(b_in[:d])
                ours.b_K.copy_(b_in[d:2 * d])
                ours.b_V.copy_(b_in[2 * d:])
                ours.b_O.copy_(mha.out_proj.bias.detach())
        return ours

    def extra_repr(self):
        return (f"d_model={self.d_model}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
                f"d_k={self.d_k}, normaliser={self.normaliser!r}, W_V={'yes' if self.W_V is not None else 'identity'}, "
                f"W_O={'yes' if self.W_O is not None else 'identity'}")
