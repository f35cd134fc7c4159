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


@pytest.mark.parametrize("num_kv_heads,qkv_activation", [(2, None), (1, None), (4, "gelu"), (2, "relu")])
def test_frozen_pattern_is_the_layer_on_its_own_pattern(num_kv_heads, qkv_activation):
    torch.manual_seed(1)
    mha = MultiHeadAttention(8, 4, num_kv_heads=num_kv_heads, qkv_activation=qkv_activation).double()
    with torch.no_grad():
        mha.b_V.normal_()
    X, Y = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    g = frozen_pattern(mha, X)
    assert torch.allclose(g(X), mha(X))
    if qkv_activation is None:  # with the bias b_V the map is affine: g(Y) - g(0) is linear
        lin = lambda Z: g(Z) - g(torch.zeros_like(Z))  # noqa: E731
        assert additivity_violation(lin, X, Y) < 1e-10


def test_frozen_pattern_refuses_a_z_of_another_shape():
    mha = MultiHeadAttention(8, 2)
    g = frozen_pattern(mha, torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"shape of X_pattern, \(2, 5, 8\)"):
        g(torch.randn(1, 5, 8))  # would broadcast over the batch silently


@pytest.mark.parametrize("mlp", [True, False])
def test_stream_zero_fraction_counts_one_relu_per_sublayer(mlp):
    torch.manual_seed(0)
    m = TokenClassifier(2, 8, 2, 3, vocab_size=5, max_len=6, stream_activation="relu", mlp=mlp)
    assert len(stream_zero_fraction(m, torch.randint(0, 5, (4, 6)))) == (6 if mlp else 3)


def test_stream_zero_fraction_refuses_a_model_without_stream_relu():
    m = TokenClassifier(2, 8, 2, 2, vocab_size=5, max_len=6)
    X = torch.randint(0, 5, (4, 6))
    before = m(X)
    with pytest.raises(ValueError, match="stream_activation='relu'"):
        stream_zero_fraction(m, X)
    assert torch.equal(m(X), before) and m.encoder.blocks[0].stream_act is None


def test_additivity_violation_refuses_inputs_that_would_broadcast():
    with pytest.raises(ValueError, match="same shape"):
        additivity_violation(lambda Z: Z, torch.randn(2, 5, 8), torch.randn(1, 5, 8))
