"""Small models built from :class:`~attnlib.block.TransformerBlock`.

``Encoder``             inputs -> embeddings (+ positions, + optional [CLS]) -> blocks -> final LN
``SequenceClassifier``  Encoder -> pooling -> linear head: one label per sequence
``TokenClassifier``     Encoder -> linear head at every position: one label per token

Inputs are either token ids ``(batch, n)`` (give ``vocab_size``) or vectors
``(batch, n, input_dim)`` such as image patches (give ``input_dim``).
"""
import torch
import torch.nn as nn

from .block import TransformerBlock
from .pooling import POOLINGS, make_pooling

POSITIONS = ("learned", "sinusoidal", None)


def sinusoidal_positions(n: int, d_model: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The fixed positional encodings of Vaswani et al. (2017), shape ``(n, d_model)``."""
    pos = torch.arange(n, device=device, dtype=dtype).unsqueeze(1)
    i = torch.arange(0, d_model, 2, device=device, dtype=dtype)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=dtype, device=device), i / d_model)
    pe = torch.zeros(n, d_model, device=device, dtype=dtype)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe


class Encoder(nn.Module):
    """Embeds the input and runs ``num_layers`` blocks.

    Args:
        d_model, num_heads, num_layers: sizes (``num_layers=0`` gives no attention at all).
        vocab_size: number of token ids, for ``(batch, n)`` integer inputs.
        input_dim: feature size, for ``(batch, n, input_dim)`` float inputs.
        positions: ``"learned"`` (needs ``max_len``), ``"sinusoidal"`` or ``None``.
        max_len: longest sequence for learned positions ([CLS] included).
        cls_token: prepend a learned [CLS] vector at position 0.
        **block_kwargs: passed to every TransformerBlock (``norm``, ``mlp``, ...).

    ``forward``: ``(batch, n)`` or ``(batch, n, input_dim)`` -> ``(batch, n (+1), d_model)``.
    """

    def __init__(self, d_model, num_heads=1, num_layers=1, *, vocab_size=None, input_dim=None,
                 positions="learned", max_len=512, cls_token=False, **block_kwargs):
        super().__init__()
        if (vocab_size is None) == (input_dim is None):
            raise ValueError("give exactly one of vocab_size (token inputs) or input_dim (vector inputs)")
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.d_model, self.positions, self.max_len = d_model, positions, max_len
        self.tokens = vocab_size is not None
        self.embed = nn.Embedding(vocab_size, d_model) if self.tokens else nn.Linear(input_dim, d_model)
        self.pos = nn.Embedding(max_len, d_model) if positions == "learned" else None
        self.cls = nn.Parameter(torch.randn(d_model) * 0.02) if cls_token else None
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, num_heads, **block_kwargs) for _ in range(num_layers)
        )
        pre_ln = block_kwargs.get("norm", "pre") == "pre"
        self.final_ln = nn.LayerNorm(d_model) if (pre_ln and num_layers > 0) else None

    def embed_input(self, x):
        """What the first block reads: embeddings (+ [CLS]) + positions, ``(batch, n (+1), d_model)``."""
        if self.tokens and (x.dim() != 2 or x.is_floating_point()):
            raise ValueError(f"expected token ids of shape (batch, n), got {tuple(x.shape)} {x.dtype}")
        if not self.tokens and x.dim() != 3:
            raise ValueError(f"expected vectors of shape (batch, n, input_dim), got {tuple(x.shape)}")
        h = self.embed(x)  # (batch, n, d_model)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], dim=1)
        n = h.shape[1]
        if self.positions == "learned":
            if n > self.max_len:
                raise ValueError(f"sequence of length {n} is longer than max_len={self.max_len}")
            h = h + self.pos.weight[:n]
        elif self.positions == "sinusoidal":
            h = h + sinusoidal_positions(n, self.d_model, h.device, h.dtype)
        return h

    def forward(self, x):
        h = self.embed_input(x)
        for block in self.blocks:
            h = block(h)
        return h if self.final_ln is None else self.final_ln(h)


class SequenceClassifier(nn.Module):
    """One label per sequence: Encoder -> pooling -> ``nn.Linear(d_model, num_classes)``.

    ``pooling`` is one of :data:`attnlib.pooling.POOLINGS`; ``"cls"`` makes the
    encoder prepend a [CLS] token. Other arguments go to :class:`Encoder`.
    ``forward``: inputs -> logits ``(batch, num_classes)``.
    """

    def __init__(self, num_classes, d_model, num_heads=1, num_layers=1, *, pooling="mean", **encoder_kwargs):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = Encoder(d_model, num_heads, num_layers, cls_token=(pooling == "cls"), **encoder_kwargs)
        self.pool = make_pooling(pooling, d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.encoder(x)))


class TokenClassifier(nn.Module):
    """One label per position: Encoder -> ``nn.Linear(d_model, num_classes)`` at every position.

    ``forward``: inputs -> logits ``(batch, n, num_classes)``.
    """

    def __init__(self, num_classes, d_model, num_heads=1, num_layers=1, **encoder_kwargs):
        super().__init__()
        self.encoder = Encoder(d_model, num_heads, num_layers, **encoder_kwargs)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

