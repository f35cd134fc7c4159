"""attnlib.MultiHeadAttention equals torch.nn.MultiheadAttention after from_torch."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlib import MultiHeadAttention, TransformerBlock, merge_heads, split_heads

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def torch_mha(d_model, num_heads, dtype, bias=True, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(d_model, num_heads, bias=bias, batch_first=True).to(dtype)
    if bias:  # torch initialises biases to zero; make them count
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    return m.eval()


def rows_with_a_key(out, mask_blocks_all):
    return out[~mask_blocks_all]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch,n_q,n_k", [(1, 1, 1), (2, 5, 5), (3, 4, 9), (4, 11, 3)])
@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 16])
def test_matches_torch(dtype, batch, n_q, n_k, num_heads, monkeypatch):
    d_model = 32
    ref = torch_mha(d_model, num_heads, dtype, seed=num_heads)
    ours = MultiHeadAttention.from_torch(ref)
    g = torch.Generator().manual_seed(batch * 100 + n_q)
    q = torch.randn(batch, n_q, d_model, generator=g).to(dtype)
    kv = torch.randn(batch, n_k, d_model, generator=g).to(dtype)
    expected, w_ref = ref(q, kv, kv, need_weights=True, average_attn_weights=False)
    out, w = ours(q, kv, kv, return_weights=True)  # explicit path (weights asked for)
    assert (out - expected).abs().max() <= TOL[dtype]
    assert (ours(q, kv, kv) - expected).abs().max() <= TOL[dtype]  # fused shortcut
    assert (w - w_ref).abs().max() <= TOL[dtype]
    if n_q == n_k:  # self-attention through the defaults key=value=query
        assert (ours(q) - ref(q, q, q, need_weights=False)[0]).abs().max() <= TOL[dtype]


def test_matches_torch_without_bias():
    ref = torch_mha(16, 4, torch.float64, bias=False)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    assert ours.b_Q is None and (ours(x) - ref(x, x, x)[0]).abs().max() <= 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["kpm_bool", "kpm_float", "attn_bool", "attn_float", "attn_3d", "both"])
def test_masks_match_torch(dtype, kind):
    batch, n_q, n_k, d_model, h = 3, 5, 7, 16, 4
    ref = torch_mha(d_model, h, dtype)
    ours = MultiHeadAttention.from_torch(ref)
    g = torch.Generator().manual_seed(7)
    q = torch.randn(batch, n_q, d_model, generator=g).to(dtype)
    kv = torch.randn(batch, n_k, d_model, generator=g).to(dtype)
    kpm = torch.rand(batch, n_k, generator=g) < 0.4
    kpm[:, 0] = False
    am = torch.rand(n_q, n_k, generator=g) < 0.4
    am[:, 1] = False
    am3 = torch.rand(batch * h, n_q, n_k, generator=g) < 0.4
    am3[..., 2] = False

    def to_float(m):
        return torch.zeros(m.shape, dtype=dtype).masked_fill(m, float("-inf"))

    kwargs = {
        "kpm_bool": dict(key_padding_mask=kpm),
        "kpm_float": dict(key_padding_mask=to_float(kpm)),
        "attn_bool": dict(attn_mask=am),
        "attn_float": dict(attn_mask=to_float(am)),
        "attn_3d": dict(attn_mask=am3),
        "both": dict(key_padding_mask=kpm, attn_mask=to_float(am)),
    }[kind]
    expected = ref(q, kv, kv, need_weights=False, **kwargs)[0]
    out = ours(q, kv, kv, **kwargs)
    assert torch.isfinite(expected).all()
    assert (out - expected).abs().max() <= TOL[dtype]


def test_causal_matches_torch_attn_mask():
    ref = torch_mha(16, 2, torch.float64)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    blocked = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (ours(x, causal=True) - ref(x, x, x, attn_mask=blocked)[0]).abs().max() <= 1e-10


def test_fully_masked_query_gives_defined_output():
    ours = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1] = True  # the second sequence is all padding
    out = ours(x, key_padding_mask=kpm)
    assert torch.isfinite(out).all()
    # no key: every head outputs 0, so what remains is W_O's bias
    assert torch.allclose(out[1], ours.b_O.expand(5, 16))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_head_matrices_reproduce_the_module():
    ours = MultiHeadAttention(24, 3).double()
    with torch.no_grad():
        for b in (ours.b_Q, ours.b_K, ours.b_V, ours.b_O):
            b.zero_()
    x = torch.randn(2, 4, 24, dtype=torch.float64)
    total = 0
    for i in range(3):
        m = ours.head_matrices(i)
        Q, K, V = x @ m["W_Q"], x @ m["W_K"], x @ m["W_V"]
        A = torch.softmax(Q @ K.transpose(-2, -1) / 8 ** 0.5, -1)
        total = total + A @ V @ m["W_O"]
    assert (total - ours(x)).abs().max() <= 1e-10


def test_split_merge_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 8).reshape(2, 3, 8).float()
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 2)
    assert torch.equal(h[1, 2, 0], x[1, 0, 4:6])  # head 2 = columns 4..5
    assert torch.equal(merge_heads(h), x)


def test_gqa_and_mqa_shapes_and_parameter_counts():
    d, h = 32, 8
    full = MultiHeadAttention(d, h)
    gqa = MultiHeadAttention(d, h, num_kv_heads=2)
    mqa = MultiHeadAttention(d, h, num_kv_heads=1)
    x = torch.randn(2, 5, d)
    for m in (full, gqa, mqa):
        assert m(x).shape == (2, 5, d)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(full) == 4 * d * d + 4 * d
    d_k = d // h
    assert n(mqa) == 2 * (d * d + d) + 2 * (d * d_k + d_k)
    assert n(gqa) == 2 * (d * d + d) + 2 * (d * 2 * d_k + 2 * d_k)


def test_gqa_with_one_kv_head_equals_shared_heads():
    mqa = MultiHeadAttention(16, 4, num_kv_heads=1).double()
    x = torch.randn(1, 3, 16, dtype=torch.float64)
    m0, m3 = mqa.head_matrices(0), mqa.head_matrices(3)
    assert torch.equal(m0["W_K"], m3["W_K"]) and torch.equal(m0["W_V"], m3["W_V"])
    assert mqa(x).shape == (1, 3, 16)


def test_parameter_count_independent_of_heads():
    counts = {h: sum(p.numel() for p in MultiHeadAttention(64, h).parameters()) for h in (1, 2, 4, 8, 16)}
    assert set(counts.values()) == {4 * 64 * 64 + 4 * 64}


def test_without_W_V_and_W_O():
    m = MultiHeadAttention(8, 2, use_W_V=False, use_W_O=False)
    assert m.W_V is None and m.W_O is None
    x = torch.randn(1, 3, 8)
    out, w = m(x, return_weights=True)
    # output = concat of per-head weighted sums of x's own columns
    assert torch.allclose(out[..., :4], w[:, 0] @ x[..., :4], atol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda: MultiHeadAttention(10, 3), r"d_model \(10\) must be divisible by num_heads \(3\)"),
    (lambda: MultiHeadAttention(8, 4, num_kv_heads=3), "num_kv_heads"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(3, 8)), r"shape \(batch, seq_len, d_model=8\)"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(1, 3, 6)), "d_model=8 features"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(1, 3, 8), torch.zeros(1, 4, 8), torch.zeros(1, 5, 8)),
     "key and value must have the same length"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(1, 3, 8), torch.zeros(2, 4, 8)), "batch size"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(2, 3, 8), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
     r"key_padding_mask must have shape \(batch, n_k\) = \(2, 3\)"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(2, 3, 8), key_padding_mask=torch.zeros(2, 3, dtype=torch.int64)),
     "key_padding_mask must be bool"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(2, 3, 8), attn_mask=torch.zeros(3, 4, dtype=torch.bool)),
     r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\)"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(2, 3, 8), attn_mask=torch.zeros(3, 3, dtype=torch.int32)),
     "attn_mask must be bool"),
    (lambda: MultiHeadAttention(8, 2)(torch.zeros(1, 3, 8, dtype=torch.float64)), "dtype"),
])
def test_bad_input_raises_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_matches_torch_encoder_layer(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first).double().eval()
    ours = TransformerBlock.from_torch(layer)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    assert (ours(x) - layer(x)).abs().max() <= 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "gelu", F.relu, F.gelu, nn.ReLU(), nn.GELU()],
                         ids=["relu", "gelu", "F.relu", "F.gelu", "nn.ReLU", "nn.GELU"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_block_copies_the_mlp_activation(activation, dtype, norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first).to(dtype).eval()
    ours = TransformerBlock.from_torch(layer)
    x = torch.randn(3, 6, 16, dtype=dtype)
    assert (ours(x) - layer(x)).abs().max() <= TOL[dtype]


@pytest.mark.parametrize("activation", [nn.GELU(approximate="tanh"), nn.SiLU(), torch.tanh, lambda x: x])
def test_block_refuses_an_activation_it_cannot_copy(activation):
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation=activation, batch_first=True)
    with pytest.raises(ValueError, match="only a ReLU or an exact GELU"):
        TransformerBlock.from_torch(layer)


def test_block_refuses_a_layer_without_biases():
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, bias=False)
    with pytest.raises(ValueError, match="bias"):
        TransformerBlock.from_torch(layer)


def test_block_copy_stays_on_the_layer_device():
    """Device-agnostic: nothing is created on the CPU (the meta device stands in for a GPU)."""
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation="gelu", batch_first=True, device="meta")
    ours = TransformerBlock.from_torch(layer)
    assert {p.device.type for p in ours.parameters()} == {"meta"}
    assert ours(torch.empty(2, 5, 16, device="meta")).shape == (2, 5, 16)


@pytest.mark.parametrize("kwargs", [
    dict(norm="pre"), dict(norm="post"), dict(norm="none"), dict(residual=False), dict(mlp=False),
    dict(attn_activation="relu"), dict(stream_activation="relu"), dict(qkv_activation="relu"),
    dict(use_W_O=False), dict(use_W_V=False, use_W_O=False), dict(normaliser="linear"),
])
def test_block_variants_keep_shape(kwargs):
    block = TransformerBlock(16, 2, **kwargs)
    x = torch.randn(2, 5, 16)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if kwargs.get("stream_activation") == "relu":
        assert (y >= 0).all()


def _init_stats(make, d_model=256, num_heads=8, seeds=range(3)):
    """Per-entry std of W_Q, W_K, W_V, W_O and the variance of head 0's scores at init."""
    d_k = d_model // num_heads
    x = torch.randn(4, 64, d_model, generator=torch.Generator().manual_seed(123))
    stats = {k: [] for k in ("W_Q", "W_K", "W_V", "W_O", "score_var")}
    for s in seeds:
        torch.manual_seed(s)
        W_Q, W_K, W_V, W_O = make()  # attnlib's layout: (d_in, d_out)
        for k, W in zip(("W_Q", "W_K", "W_V", "W_O"), (W_Q, W_K, W_V, W_O)):
            stats[k].append(W.std().item())
        scores = (x @ W_Q[:, :d_k]) @ (x @ W_K[:, :d_k]).transpose(-2, -1) / d_k ** 0.5
        stats["score_var"].append(scores.var().item())
    return {k: sum(v) / len(v) for k, v in stats.items()}


def test_init_matches_torch_multihead_attention_in_distribution():
    def torch_weights():
        m = nn.MultiheadAttention(256, 8, batch_first=True)
        W = m.in_proj_weight.detach()
        assert (m.in_proj_bias == 0).all() and (m.out_proj.bias == 0).all()
        return W[:256].T, W[256:512].T, W[512:].T, m.out_proj.weight.detach().T

    def our_weights():
        m = MultiHeadAttention(256, 8)
        assert all((b == 0).all() for b in (m.b_Q, m.b_K, m.b_V, m.b_O))
        return m.W_Q.detach(), m.W_K.detach(), m.W_V.detach(), m.W_O.detach()

    ref, ours = _init_stats(torch_weights), _init_stats(our_weights)
    for k in ("W_Q", "W_K", "W_V", "W_O"):
        assert ours[k] == pytest.approx(ref[k], rel=0.02), (k, ours[k], ref[k])
    # The old Xavier init of each d x d block gave sqrt(2) larger W_Q, W_K: 4x the score variance.
    assert ours["score_var"] == pytest.approx(ref["score_var"], rel=0.15), (ours, ref)
    # The distributions, not only their std: uniform on (-a, a).
    a = (6 / (4 * 256)) ** 0.5
    m = MultiHeadAttention(256, 8)
    assert m.W_Q.abs().max() <= a and m.W_Q.abs().max() > 0.99 * a
    assert m.W_O.abs().max() <= 256 ** -0.5 and m.W_O.abs().max() > 0.99 * 256 ** -0.5


def test_init_of_gqa_keeps_per_entry_scale():
    m = MultiHeadAttention(256, 8, num_kv_heads=2)
    full = MultiHeadAttention(256, 8)
    assert m.W_K.shape == (256, 64)
    assert m.W_K.std().item() == pytest.approx(full.W_K.std().item(), rel=0.05)
    assert m.W_V.std().item() == pytest.approx(full.W_V.std().item(), rel=0.05)


@pytest.mark.parametrize("num_kv_heads", [1, 4])
@pytest.mark.parametrize("normaliser", ["softmax", "relu", "linear"])
def test_layers_stay_on_the_input_device(num_kv_heads, normaliser):
    """Device-agnostic: nothing is created on the CPU (the meta device stands in for a GPU)."""
    x = torch.empty(2, 5, 16, device="meta")
    kpm = torch.zeros(2, 5, device="meta")  # float: added to the scores
    for m in (MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, normaliser=normaliser, qkv_activation="gelu"),
              TransformerBlock(16, 4, num_kv_heads=num_kv_heads, normaliser=normaliser, stream_activation="relu")):
        m = m.to("meta")
        kwargs = {} if normaliser == "linear" else dict(key_padding_mask=kpm)
        assert m(x, causal=True, **kwargs).device.type == "meta"
    out, w = MultiHeadAttention(16, 4).to("meta")(x, attn_mask=torch.ones(5, 5, dtype=torch.bool, device="meta"),
                                                  return_weights=True)
    assert out.device.type == w.device.type == "meta"
