"""attnlib.circuits: OV matrices, the M, M^-1 symmetry, rank truncation, W_O-W_1 fusion."""
import pytest
import torch

from attnlib import MultiHeadAttention, TransformerBlock
from attnlib.circuits import (FusedAttentionMLP, apply_gauge, centring_matrix, change_stream_basis,
                              concat_heads, head_contributions, mha_via_ov, output_bias, ov_matrices,
                              truncate_ov)


@pytest.fixture
def mha():
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4).double()
    with torch.no_grad():
        for b in (m.b_Q, m.b_K, m.b_V, m.b_O):
            b.normal_()
    return m


@pytest.fixture
def x():
    return torch.randn(2, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_ov_shapes_and_rank(mha):
    OV = ov_matrices(mha)
    assert OV.shape == (4, 16, 16)
    assert (torch.linalg.matrix_rank(OV) == 4).all()


def test_sum_over_heads_and_ov_give_the_output(mha, x):
    assert torch.allclose(head_contributions(mha, x).sum(1) + mha.b_O, mha(x))
    assert torch.allclose(mha_via_ov(mha, x), mha(x))
    assert torch.allclose(concat_heads(mha, x) @ mha.W_O + mha.b_O, mha(x))


def test_identity_switches(x):
    m = MultiHeadAttention(16, 4, use_W_V=False, use_W_O=False).double()
    assert torch.allclose(mha_via_ov(m, x), m(x))
    assert torch.allclose(ov_matrices(m).sum(0), torch.eye(16, dtype=torch.float64))


def test_gauge_keeps_the_function(mha, x):
    Ms = torch.randn(4, 4, 4, dtype=torch.float64) + 2 * torch.eye(4, dtype=torch.float64)
    g = apply_gauge(mha, Ms)
    assert not torch.allclose(g.W_V, mha.W_V)
    assert torch.allclose(g(x), mha(x))
    with pytest.raises(ValueError, match="shape"):
        apply_gauge(mha, torch.eye(3))


def test_truncation(mha, x):
    assert torch.allclose(truncate_ov(mha, 4)(x), mha(x))
    t = truncate_ov(mha, 2)
    assert (torch.linalg.matrix_rank(ov_matrices(t)) == 2).all()
    assert not torch.allclose(t(x), mha(x))


def test_fusion_is_exact_only_without_norm_and_residual(x):
    torch.manual_seed(2)
    block = TransformerBlock(16, 4, norm="none", residual=False).double()
    fused = FusedAttentionMLP.from_block(block)
    assert torch.allclose(fused(x), block(x))
    assert fused.W_fused.shape == (16, 64)
    with pytest.raises(ValueError, match="fused exactly"):
        FusedAttentionMLP.from_block(TransformerBlock(16, 4))


def test_centring_matrix():
    y = torch.randn(3, 8, dtype=torch.float64)
    assert torch.allclose(y @ centring_matrix(8, torch.float64), y - y.mean(-1, keepdim=True))


def test_change_of_basis_frees_one_W_O(x):
    torch.manual_seed(3)
    blocks = [TransformerBlock(16, 4, norm="none").double() for _ in range(2)]
    B = torch.linalg.inv(blocks[0].attn.W_O)
    new = change_stream_basis(blocks, B)

    def run(bs, h):
        for b in bs:
            h = b(h)
        return h
    assert torch.allclose(run(new, x @ B), run(blocks, x) @ B, atol=1e-8)
    assert torch.allclose(new[0].attn.W_O, torch.eye(16, dtype=torch.float64), atol=1e-10)
    assert not torch.allclose(new[1].attn.W_O, torch.eye(16, dtype=torch.float64), atol=0.1)
    with pytest.raises(ValueError, match="LayerNorm"):
        change_stream_basis([TransformerBlock(16, 4)], B)


def _with_biases(m):
    with torch.no_grad():
        for b in (m.b_Q, m.b_K, m.b_V, m.b_O):
            b.normal_()
    return m


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
@pytest.mark.parametrize("qkv_activation", [None, "gelu"])
@pytest.mark.parametrize("normaliser", ["softmax", "relu"])
def test_head_contributions_sum_to_the_output_with_gqa(x, num_kv_heads, qkv_activation, normaliser):
    torch.manual_seed(3)
    m = _with_biases(MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, qkv_activation=qkv_activation,
                                        normaliser=normaliser).double())
    out = m(x)
    assert head_contributions(m, x).shape == (2, 4, 5, 16)
    assert torch.allclose(head_contributions(m, x).sum(1) + m.b_O, out)
    assert torch.allclose(concat_heads(m, x) @ m.W_O + m.b_O, out)


def test_output_bias_with_gqa(x):
    torch.manual_seed(4)
    m = _with_biases(MultiHeadAttention(16, 4, num_kv_heads=2).double())
    with torch.no_grad():  # no value input: every head outputs its value bias, softmax rows sum to 1
        m.W_V.zero_()
    assert torch.allclose(output_bias(m).expand(2, 5, 16), m(x))


def test_value_algebra_refuses_what_it_cannot_do(x):
    act = _with_biases(MultiHeadAttention(16, 4, qkv_activation="relu").double())
    gqa = MultiHeadAttention(16, 4, num_kv_heads=2).double()
    for f in (lambda m: mha_via_ov(m, x), output_bias, lambda m: truncate_ov(m, 2),
              lambda m: apply_gauge(m, torch.eye(4, dtype=torch.float64).expand(4, 4, 4))):
        with pytest.raises(ValueError, match="qkv_activation"):
            f(act)
    for f in (ov_matrices, lambda m: truncate_ov(m, 2),
              lambda m: apply_gauge(m, torch.eye(4, dtype=torch.float64).expand(4, 4, 4))):
        with pytest.raises(ValueError, match="num_kv_heads == num_heads"):
            f(gqa)


def test_circuits_stay_on_the_model_device():
    """Device-agnostic: nothing is created on the CPU (the meta device stands in for a GPU)."""
    x = torch.empty(2, 5, 16, device="meta")
    mha = MultiHeadAttention(16, 4).to("meta")
    on_meta = lambda t: t.device.type == "meta"  # noqa: E731
    assert on_meta(head_contributions(mha, x)) and on_meta(concat_heads(mha, x)) and on_meta(mha_via_ov(mha, x))
    assert on_meta(output_bias(mha)) and on_meta(ov_matrices(mha))
    for m in (apply_gauge(mha, torch.eye(4).expand(4, 4, 4)), truncate_ov(mha, 2)):
        assert {p.device.type for p in m.parameters()} == {"meta"}
    assert on_meta(centring_matrix(16, device="meta"))
    block = TransformerBlock(16, 4, norm="none", bias=False).to("meta")
    fused = FusedAttentionMLP.from_block(TransformerBlock(16, 4, norm="none", residual=False, bias=False).to("meta"))
    assert {p.device.type for p in fused.parameters()} == {"meta"}
    new, = change_stream_basis([block], torch.eye(16))
    assert {p.device.type for p in new.parameters()} == {"meta"}


# ------------------------------------------------------------ a trained OV circuit
from attnlib import TokenClassifier  # noqa: E402
from attnlib.circuits import diagonal_share, previous_token_task, token_ov_circuits  # noqa: E402
from attnlib.tasks import IGNORE  # noqa: E402


def test_previous_token_task():
    data = previous_token_task(50, 6, vocab_size=5, seed=3)
    assert data.X.shape == data.y.shape == (50, 6) and data.vocab_size == data.num_classes == 5
    assert (data.y[:, 0] == IGNORE).all() and torch.equal(data.y[:, 1:], data.X[:, :-1])
    assert torch.equal(previous_token_task(50, 6, vocab_size=5, seed=3).X, data.X)  # deterministic
    assert not torch.equal(previous_token_task(50, 6, vocab_size=5, seed=4).X, data.X)
    with pytest.raises(ValueError):
        previous_token_task(5, 1)


def test_token_ov_circuits_are_what_the_model_computes():
    torch.manual_seed(0)
    model = TokenClassifier(7, 8, num_heads=2, num_layers=1, vocab_size=7, max_len=4, norm="none", mlp=False)
    attn = model.encoder.blocks[0].attn
    with torch.no_grad():
        for b in (attn.b_V, attn.b_O):
            b.zero_()
    OV = token_ov_circuits(model)
    assert OV.shape == (2, 7, 7)
    # A head that attends only to token a adds row a of its circuit to the logits.
    W_E, W_U = model.encoder.embed.weight, model.head.weight.T
    for i in range(2):
        cols = slice(4 * i, 4 * i + 4)
        ref = W_E @ attn.W_V[:, cols] @ attn.W_O[cols, :] @ W_U
        assert torch.allclose(OV[i], ref, atol=1e-6)
    assert torch.allclose(OV.sum(0), W_E @ ov_matrices(attn).sum(0) @ W_U, atol=1e-5)
    with pytest.raises(ValueError):
        token_ov_circuits(TokenClassifier(7, 8, num_heads=2, num_layers=1, vocab_size=7, max_len=4))  # pre-LN
    with pytest.raises(ValueError):
        token_ov_circuits(TokenClassifier(7, 8, num_heads=2, num_layers=2, vocab_size=7, max_len=4, norm="none"))


def test_diagonal_share():
    assert diagonal_share(torch.eye(5)).item() == 1.0
    assert diagonal_share(-torch.eye(5)).item() == 0.0
    M = torch.eye(4)
    M[0, 1] = 2.0
    assert diagonal_share(M).item() == 0.75
    assert diagonal_share(torch.stack([torch.eye(3), torch.eye(3).flip(0)])).tolist() == pytest.approx([1.0, 1 / 3])
    random = diagonal_share(torch.randn(200, 16, 16, generator=torch.Generator().manual_seed(0))).mean()
    assert abs(random.item() - 1 / 16) < 0.02
    with pytest.raises(ValueError):
        diagonal_share(torch.zeros(3, 4))


# ------------------------------------------------------------ arms of the trained comparison
from attnlib.circuits import NoAttention, ScaledAttention, w_o_init_gain  # noqa: E402


def test_w_o_init_gain_is_one_over_sqrt_3_and_leaves_the_random_state():
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    gain = w_o_init_gain(16, 2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert abs(gain - 3 ** -0.5) < 0.01
    assert w_o_init_gain(16, 2) == gain  # its own seed: deterministic
    assert abs(w_o_init_gain(32, 4, draws=50) - 3 ** -0.5) < 0.02


def test_scaled_identity_starts_at_the_standard_scale_and_has_no_W_O(x):
    x = x.float()
    out_std, out_eye = [], []
    for s in range(40):
        torch.manual_seed(s)
        std = MultiHeadAttention(16, 2, bias=False)
        torch.manual_seed(s)
        eye = ScaledAttention(MultiHeadAttention(16, 2, bias=False, use_W_O=False), w_o_init_gain(16, 2))
        with torch.no_grad():
            out_std.append(std(x).pow(2).mean())
            out_eye.append(eye(x).pow(2).mean())
        assert eye.attn.W_O is None and not any("W_O" in n for n, _ in eye.named_parameters())
    ratio = (torch.stack(out_eye).mean() / torch.stack(out_std).mean()).sqrt().item()
    assert abs(ratio - 1) < 0.1
    with torch.no_grad():  # the gain is exactly a fixed multiple of the plain identity layer
        assert torch.allclose(eye(x), eye.gain * eye.attn(x))
        assert torch.allclose(eye(x, causal=True), eye.gain * eye.attn(x, causal=True))
    with pytest.raises(ValueError):
        ScaledAttention(MultiHeadAttention(16, 2), 0.0)


def test_no_attention_adds_nothing_and_trains():
    torch.manual_seed(0)
    model = TokenClassifier(3, 8, num_heads=2, num_layers=1, vocab_size=5, max_len=4)
    model.encoder.blocks[0].attn = NoAttention()
    X = torch.randint(0, 5, (6, 4))
    block = model.encoder.blocks[0]
    h = model.encoder.embed_input(X)
    with torch.no_grad():
        assert torch.equal(block(h), h + block.mlp(block.ln2(h)))
        # each position sees only itself: changing one token leaves the others' outputs unchanged
        X2 = X.clone()
        X2[:, 0] = (X[:, 0] + 1) % 5
        assert torch.allclose(model(X)[:, 1:], model(X2)[:, 1:])
    assert not any("attn" in n for n, _ in model.named_parameters())
