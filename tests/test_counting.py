"""attnlib.counting against real modules: shapes of the forward pass, parameter counts."""
import pytest
import torch

from attnlib.counting import (mha_elementwise_ops, mha_flops, mha_parameter_count, mha_shapes, shapes_diagram,
                              shapes_table_html)
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


@pytest.mark.parametrize("d,h,n_q,n_k", [(64, 1, 10, None), (64, 8, 10, 7), (512, 64, 16, None)])
def test_elementwise_ops_grow_with_heads(d, h, n_q, n_k):
    ops = mha_elementwise_ops(d, h, n_q, n_k, batch=2)
    m = MultiHeadAttention(d, h)
    x_q, x_k = torch.randn(2, n_q, d), torch.randn(2, n_k or n_q, d)
    _, w = m(x_q, x_k, return_weights=True)
    assert ops["scale"] == ops["mask"] == w.numel()  # one operation per score, in every head
    assert ops["total"] == 5 * w.numel()
    assert ops["share of attention products"] == pytest.approx(5 * h / (4 * d))
    assert mha_elementwise_ops(d, h, n_q, n_k, batch=2, mask=False)["total"] == 4 * w.numel()
    if h > 1:  # the products do not grow with h; the element-wise work does, h times
        assert mha_elementwise_ops(d, 1, n_q, n_k, batch=2)["total"] * h == ops["total"]


@pytest.mark.parametrize("n,d,h", [(4, 12, 3), (3, 8, 2), (5, 8, 4)])
def test_shapes_diagram_draws_every_block(n, d, h):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    colors = ["#ff0000", "#00ff00", "#0000ff", "#ffff00"][:h]
    fig = shapes_diagram(n=n, d_model=d, num_heads=h, colors=colors)
    rects = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    faces = [to_hex(p.get_facecolor()) for p in rects]
    d_k = d // h
    for c in colors:  # per head: W_Q block, Q block, viewed block, transposed Q_i, head_i, concat block, W_O block
        mine = [p for p, f in zip(rects, faces) if f == c]
        assert len(mine) == 7, (c, len(mine))
        sizes = sorted((p.get_width(), p.get_height()) for p in mine)
        assert sizes.count((d_k, n)) == 5  # Q block, viewed, transposed, head_i, concat block
        assert (d_k, d) in sizes and (d, d_k) in sizes  # W_Q's column block, W_O's row block
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert f"({h}, {n}, {d_k})" in texts and f"({n}, {h}, {d_k})" in texts
    plt.close(fig)
    with pytest.raises(ValueError):
        shapes_diagram(n=4, d_model=10, num_heads=3)
