"""attnlib.counting against real modules: shapes of the forward pass, parameter counts."""
import pytest
import torch

from attnlib.counting import mha_flops, mha_parameter_count, mha_shapes, shapes_table_html
from attnlib.mha import MultiHeadAttention


@pytest.mark.parametrize("d,h,kv", [(16, 4, 4), (16, 4, 2), (16, 4, 1), (12, 1, 1), (512, 8, 8)])
def test_parameter_count_matches_module(d, h, kv):
    m = MultiHeadAttention(d, h, num_kv_heads=kv)
    assert mha_parameter_count(d, h, num_kv_heads=kv)["total"] == sum(p.numel() for p in m.parameters())
    m = MultiHeadAttention(d, h, num_kv_heads=kv, bias=False)
    assert mha_parameter_count(d, h, num_kv_heads=kv, bias=False)["total"] == sum(p.numel() for p in m.parameters())


def test_parameter_count_independent_of_heads():
    assert {mha_parameter_count(64, h)["total"] for h in (1, 2, 4, 8, 16, 64)} == {4 * 64 * 64 + 4 * 64}


def test_flops_scores_independent_of_heads():
    f = [mha_flops(64, h, 10) for h in (1, 2, 8)]
    assert len({x["total"] for x in f}) == 1
    assert f[0]["scores Q K^T"] == 2 * 10 * 10 * 64


def test_shapes_end_to_end():
    rows = mha_shapes(2, 5, 16, 4, n_k=7, num_kv_heads=2)
    assert rows[0][1] == (2, 5, 16) and rows[-1][1] == (2, 5, 16)
    assert ("scores Q K^T / sqrt(d_k)", (2, 4, 5, 7), "(batch, h, n_q, n_k)") in rows
    m = MultiHeadAttention(16, 4, num_kv_heads=2)
    out, w = m(torch.randn(2, 5, 16), torch.randn(2, 7, 16), return_weights=True)
    assert tuple(w.shape) == (2, 4, 5, 7) and tuple(out.shape) == rows[-1][1]


def test_html_and_errors():
    html = shapes_table_html(2, 6, 16, 4, num_kv_heads=1)
    assert "multi-query" in html and "<table" in html
    with pytest.raises(ValueError):
        mha_parameter_count(10, 3)
    with pytest.raises(ValueError):
        mha_flops(16, 4, 5, num_kv_heads=3)


@pytest.mark.parametrize("d,h,kv,n_q,n_k", [(16, 4, 4, 5, 5), (16, 4, 2, 5, 7), (32, 8, 1, 3, 6)])
def test_flops_match_a_counted_forward(d, h, kv, n_q, n_k):
    """mha_flops equals what PyTorch's FlopCounterMode counts on a step-by-step forward pass."""
    import math

    from torch.utils.flop_counter import FlopCounterMode

    from attnlib.mha import merge_heads, split_heads

    torch.manual_seed(0)
    m = MultiHeadAttention(d, h, num_kv_heads=kv)
    xq, xkv = torch.randn(2, n_q, d), torch.randn(2, n_k, d)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        Q = split_heads(m.project(xq, m.W_Q, m.b_Q), h)
        K = split_heads(m.project(xkv, m.W_K, m.b_K), kv).repeat_interleave(h // kv, dim=1)
        V = split_heads(m.project(xkv, m.W_V, m.b_V), kv).repeat_interleave(h // kv, dim=1)
        w = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(m.d_k), dim=-1)
        out = m.project(merge_heads(w @ V), m.W_O, m.b_O)
    with torch.no_grad():
        assert torch.allclose(out, m(xq, xkv), atol=1e-5)  # the counted pass is the module's computation
    assert counter.get_total_flops() == mha_flops(d, h, n_q, n_k, batch=2, num_kv_heads=kv)["total"]
