"""attnlib.probes: the measurements of chapter 1."""
import pytest
import torch

from attnlib import MultiHeadAttention, TokenClassifier
from attnlib.probes import (additivity_violation, block_grad_norms, frozen_pattern, homogeneity_violation,
                            rank1_residual, rank_collapse, stream_zero_fraction)


def test_rank1_residual_zero_for_identical_rows_and_scale_free():
    x = torch.randn(2, 1, 5).expand(2, 7, 5)
    assert torch.allclose(rank1_residual(x), torch.zeros(2), atol=1e-6)
    X = torch.randn(3, 6, 4)
    assert rank1_residual(X).shape == (3,)
    assert torch.allclose(rank1_residual(3 * X), rank1_residual(X))
    with pytest.raises(ValueError):
        rank1_residual(torch.randn(6, 4))


def test_linear_maps_have_no_violation_attention_does():
    torch.manual_seed(0)
    W = torch.randn(8, 8)
    X, Y = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    assert homogeneity_violation(lambda Z: Z @ W, X) < 1e-6
    assert additivity_violation(lambda Z: Z @ W, X, Y) < 1e-6
    mha = MultiHeadAttention(8, 2)
    assert homogeneity_violation(mha, X) > 0.1
    g = frozen_pattern(mha, X)
    assert homogeneity_violation(g, Y, 3.0) < 1e-5 and additivity_violation(g, X, Y) < 1e-5
    assert torch.allclose(g(X), mha(X), atol=1e-6)  # same pattern, same output


def test_rank_collapse_shapes_and_collapse():
    r = rank_collapse(dict(norm="none", residual=False, mlp=False), depth=4, seeds=[0, 1], d_model=8, num_heads=2)
    assert r.shape == (2, 5) and (r[:, -1] < 1e-6).all()


def test_stream_fractions_and_grad_norms():
    torch.manual_seed(0)
    m = TokenClassifier(2, 8, 2, 3, vocab_size=5, max_len=6, stream_activation="relu")
    X = torch.randint(0, 5, (4, 6))
    f = stream_zero_fraction(m, X)
    assert len(f) == 6 and all(0 <= v <= 1 for v in f)
    assert m.encoder.blocks[0].stream_act is torch.relu or m.encoder.blocks[0].stream_act.__name__ == "relu"
    g = block_grad_norms(m, X, torch.randint(0, 2, (4, 6)))
    assert len(g) == 3 and all(v > 0 for v in g)
