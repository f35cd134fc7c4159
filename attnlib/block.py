"""One transformer block, with the switches the chapters compare.

Pre-LN (the default, as in GPT-2 and most models since)::

    x = x + attn_act(MHA(LN_1(x)))         ; x = stream_act(x)
    x = x + MLP(LN_2(x))                   ; x = stream_act(x)

Post-LN (Vaswani et al. 2017, "Add & Norm")::

    x = LN_1(x + attn_act(MHA(x)))         ; x = stream_act(x)
    x = LN_2(x + MLP(x))                   ; x = stream_act(x)

``norm="none"`` drops both LayerNorms; ``residual=False`` drops the ``x +``;
``mlp=False`` drops the second line. ``attn_act`` and ``stream_act`` are the
identity unless asked for: chapter 1 asks what happens if they are not. So is
``input_act``, an activation on what each sub-layer reads (the pre-activation
ResNet unit's ReLU in front of the weights)::

    pre-LN:   x = x + MHA(input_act(LN_1(x)))
    post-LN:  x = LN_1(x + MHA(input_act(x)))      (and likewise for the MLP)
"""
import torch.nn as nn
import torch.nn.functional as F

from .mha import ACTIVATIONS, MultiHeadAttention

NORMS = ("pre", "post", "none")


class MLP(nn.Module):
    """The position-wise feed-forward network: ``act(x W_1 + b_1) W_2 + b_2``.

    ``linear1`` holds ``W_1`` as ``(d_ff, d_model)`` (torch.nn.Linear layout);
    shapes: ``(batch, n, d_model) -> (batch, n, d_model)``.
    """

    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        if activation not in ACTIVATIONS or activation is None:
            raise ValueError(f"MLP activation must be one of {[a for a in ACTIVATIONS if a]}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.act = ACTIVATIONS[activation]

    def forward(self, x):
        return self.linear2(self.act(self.linear1(x)))


class TransformerBlock(nn.Module):
    """A transformer block; input and output ``(batch, n, d_model)``.

    Args:
        d_model, num_heads: as in :class:`~attnlib.mha.MultiHeadAttention`.
        d_ff: hidden width of the MLP (default ``4 * d_model``).
        norm: ``"pre"``, ``"post"`` or ``"none"``.
        residual: keep the skip connections.
        mlp: keep the MLP sub-layer.
        attn_activation: activation on the attention output, before the add.
        stream_activation: activation on the residual stream after each
            sub-layer (after the add in pre-LN and no-norm blocks, after the
            LayerNorm in post-LN blocks, so it always acts on what is passed on).
        input_activation: activation on what each sub-layer (attention and MLP)
            reads, in front of its weights: on ``LN(x)`` in a pre-LN block, on ``x``
            in post-LN and no-norm blocks; the stream itself is left untouched.
        mlp_activation: the MLP's own activation (default ``"relu"``).
        **mha_kwargs: passed to MultiHeadAttention (``normaliser``,
            ``qkv_activation``, ``use_W_V``, ``use_W_O``, ``num_kv_heads``, ``bias``).
    """

    def __init__(self, d_model, num_heads, d_ff=None, *, norm="pre", residual=True, mlp=True,
                 attn_activation=None, stream_activation=None, mlp_activation="relu", input_activation=None,
                 **mha_kwargs):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        for name, act in (("attn_activation", attn_activation), ("stream_activation", stream_activation),
                          ("input_activation", input_activation)):
            if act not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {list(ACTIVATIONS)}, got {act!r}")
        self.norm, self.residual = norm, residual
        self.attn = MultiHeadAttention(d_model, num_heads, **mha_kwargs)
        self.mlp = MLP(d_model, d_ff or 4 * d_model, mlp_activation) if mlp else None
        self.ln1 = nn.LayerNorm(d_model) if norm != "none" else None
        self.ln2 = nn.LayerNorm(d_model) if (norm != "none" and mlp) else None
        self.attn_act = ACTIVATIONS[attn_activation]
        self.stream_act = ACTIVATIONS[stream_activation]
        self.input_act = ACTIVATIONS[input_activation]

    def _sublayer(self, x, f, ln):
        """One ``Add & Norm`` step: x -> x + f(x) in the chosen arrangement."""
        if self.input_act is not None:
            f = lambda h, f=f: f(self.input_act(h))  # noqa: E731  (in front of the sub-layer's weights)
        if self.norm == "pre":
            y = f(ln(x))
            x = x + y if self.residual else y
        else:
            y = f(x)
            x = x + y if self.residual else y
            if self.norm == "post":
                x = ln(x)
        return x if self.stream_act is None else self.stream_act(x)

    def _attend(self, x, key_padding_mask, causal):
        y = self.attn(x, key_padding_mask=key_padding_mask, causal=causal)
        return y if self.attn_act is None else self.attn_act(y)

    def forward(self, x, *, key_padding_mask=None, causal=False):
        """``(batch, n, d_model) -> (batch, n, d_model)``; masks as in MultiHeadAttention."""
        x = self._sublayer(x, lambda h: self._attend(h, key_padding_mask, causal), self.ln1)
        if self.mlp is not None:
            x = self._sublayer(x, self.mlp, self.ln2)
        return x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> "TransformerBlock":
        """Copy a ``torch.nn.TransformerEncoderLayer``: same outputs, dtype and device (dropout ignored).

        The MLP activation is copied: ``"relu"``/``"gelu"``, ``F.relu``/``F.gelu`` or
        ``nn.ReLU()``/``nn.GELU()`` (exact GELU). Any other activation raises a ValueError,
        as does a layer built with ``bias=False``. Call the copy with batch-first tensors.
        """
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise ValueError(f"from_torch expects torch.nn.TransformerEncoderLayer, got {type(layer).__name__}")
        activation = _torch_activation_name(layer.activation)
        if layer.linear1.bias is None or layer.norm1.bias is None:
            raise ValueError("from_torch needs a layer with biases (torch's bias=True); attnlib's MLP "
                             "and LayerNorms always have them")
        d_model = layer.self_attn.embed_dim
        ours = cls(d_model, layer.self_attn.num_heads, layer.linear1.out_features,
                   norm="pre" if layer.norm_first else "post", mlp_activation=activation)
        ours = ours.to(dtype=layer.linear1.weight.dtype, device=layer.linear1.weight.device)
        ours.attn = MultiHeadAttention.from_torch(layer.self_attn)
        ours.mlp.linear1.load_state_dict(layer.linear1.state_dict())
        ours.mlp.linear2.load_state_dict(layer.linear2.state_dict())
        ours.ln1.load_state_dict(layer.norm1.state_dict())
        ours.ln2.load_state_dict(layer.norm2.state_dict())
        ours.ln1.eps, ours.ln2.eps = layer.norm1.eps, layer.norm2.eps
        return ours


def _torch_activation_name(act) -> str:
    """``"relu"`` or ``"gelu"`` for the activations a TransformerEncoderLayer may hold; else ValueError."""
    if act is F.relu or type(act) is nn.ReLU:
        return "relu"
    if act is F.gelu or (type(act) is nn.GELU and act.approximate == "none"):
        return "gelu"
    name = getattr(act, "__name__", None) or repr(act)
    raise ValueError(f"from_torch copies only a ReLU or an exact GELU MLP activation ('relu', 'gelu', "
                     f"F.relu, F.gelu, nn.ReLU(), nn.GELU()), got {name}")
