"""Ways to turn a sequence of token vectors into one vector (chapter 5).

Every pooling maps ``(batch, n, d_model) -> (batch, d_model)``.

``cls``        the output at position 0, where the model put a learned [CLS]
               token (Devlin et al. 2018). The pooling itself is a lookup; the
               work is done by the attention layers that fill that position.
``mean``       the average over positions: permutation-invariant; a single
               token's contribution shrinks like 1/n.
``max``        the element-wise maximum over positions: keeps the extremes.
``attention``  one learned query attends over the positions (softmax weights).
``last``       the output at the last position.
``rnn``        a GRU reads the positions in order; its final state is the summary.
"""
import math

import torch
import torch.nn as nn

POOLINGS = ("cls", "mean", "max", "attention", "last", "rnn")


class FirstToken(nn.Module):
    """``x[:, 0]``: the [CLS] position."""

    def forward(self, x):
        return x[:, 0]


class LastToken(nn.Module):
    """``x[:, -1]``."""

    def forward(self, x):
        return x[:, -1]


class MeanPooling(nn.Module):
    """``x.mean(1)``."""

    def forward(self, x):
        return x.mean(dim=1)


class MaxPooling(nn.Module):
    """``x.max(1)``, per feature."""

    def forward(self, x):
        return x.max(dim=1).values


class AttentionPooling(nn.Module):
    """A single learned query ``q`` attends over the positions.

    ``w = softmax(x q / sqrt(d_model))`` over the n positions, output ``w^T x``.
    """

    def __init__(self, d_model):
        super().__init__()
        self.query = nn.Parameter(torch.randn(d_model) / math.sqrt(d_model))

    def weights(self, x):
        """``(batch, n, d_model) -> (batch, n)``: the pooling weights, rows sum to 1."""
        return torch.softmax(x @ self.query / math.sqrt(x.shape[-1]), dim=-1)

    def forward(self, x):
        return (self.weights(x).unsqueeze(-1) * x).sum(dim=1)


class RNNPooling(nn.Module):
    """A GRU (Cho et al. 2014) over the positions; returns its last hidden state.

    Written out step by step so it works under ``torch.func.vmap``::

        r = sigmoid(x W_r + h U_r),  z = sigmoid(x W_z + h U_z)
        c = tanh(x W_c + (r * h) U_c),   h = (1 - z) * h + z * c
    """

    def __init__(self, d_model):
        super().__init__()
        self.W = nn.Linear(d_model, 3 * d_model)
        self.U = nn.Linear(d_model, 3 * d_model, bias=False)

    def forward(self, x):
        batch, n, d = x.shape
        h = x.new_zeros(batch, d)
        xw = self.W(x)  # (batch, n, 3d), all inputs projected at once
        for t in range(n):
            x_r, x_z, x_c = xw[:, t].chunk(3, dim=-1)
            U_r, U_z, U_c = self.U.weight.chunk(3, dim=0)
            r = torch.sigmoid(x_r + h @ U_r.T)
            z = torch.sigmoid(x_z + h @ U_z.T)
            c = torch.tanh(x_c + (r * h) @ U_c.T)
            h = (1 - z) * h + z * c
        return h


def make_pooling(name: str, d_model: int) -> nn.Module:
    """The pooling module called ``name`` (one of :data:`POOLINGS`)."""
    table = {
        "cls": FirstToken,
        "mean": MeanPooling,
        "max": MaxPooling,
        "last": LastToken,
        "attention": lambda: AttentionPooling(d_model),
        "rnn": lambda: RNNPooling(d_model),
    }
    if name not in table:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {name!r}")
    return table[name]()
