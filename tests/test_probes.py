"""attnlib.probes: the measurements of chapter 1."""
import pytest
import torch

from attnlib import MultiHeadAttention, TokenClassifier, TransformerBlock
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


# ---------------------------------------------------------------- the per-token nonlinearity tasks
from attnlib.probes import (additive_bound, additive_logistic_fit, additive_search, bigram_lookup, bigram_table, draw_residual_unit,  # noqa: E402
                            relu_after_norms, xor_tokens)
from attnlib.tasks import IGNORE  # noqa: E402


def test_xor_tokens_labels_are_the_xor_of_the_signs_and_deterministic():
    X, y = xor_tokens(50, 6, noise=0.0, seed=3)
    assert X.shape == (50, 6, 2) and y.shape == (50, 6) and X.dtype == torch.float32
    assert torch.equal(y, (X[..., 0] != X[..., 1]).long())
    X2, y2 = xor_tokens(50, 6, noise=0.0, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    Xn, _ = xor_tokens(50, 6, noise=0.3, seed=3)
    assert not torch.equal(Xn, X) and (Xn - X).abs().max() < 2.0
    with pytest.raises(ValueError):
        xor_tokens(0, 4)


def test_xor_is_not_linearly_separable_beyond_three_clusters():
    X, y = xor_tokens(2000, 1, noise=0.3, seed=0)
    X, y = X.reshape(-1, 2).double(), y.reshape(-1).double()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")
    feats = torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(feats @ w, y)
        loss.backward()
        return loss

    opt.step(closure)
    assert ((feats @ w > 0).double() == y).double().mean() < 0.8


def test_bigram_table_and_lookup():
    T = bigram_table(6, seed=1)
    assert T.shape == (6, 6) and int(T.sum()) == 18 and set(T.unique().tolist()) <= {0, 1}
    assert not torch.equal(T, bigram_table(6, seed=2)) and torch.equal(T, bigram_table(6, seed=1))
    X, y = bigram_lookup(40, 5, T, seed=0)
    assert X.shape == y.shape == (40, 5) and (y[:, 0] == IGNORE).all()
    assert torch.equal(y[:, 1:], T[X[:, :-1], X[:, 1:]])
    with pytest.raises(ValueError):
        bigram_lookup(4, 1, T)
    with pytest.raises(ValueError):
        bigram_lookup(4, 5, torch.zeros(3, 4, dtype=torch.long))


def test_additive_readouts_fit_additive_tables_and_bracket_the_best_on_random_ones():
    u, v = torch.randn(5), torch.randn(5)
    additive = (u[:, None] + v[None, :] > 0.3).long()
    for f in (additive_logistic_fit, additive_search, additive_bound):
        assert f(additive) == 1.0, f
    xor = torch.tensor([[0, 1], [1, 0]])  # one crossing: at most 3 of 4 cells
    assert additive_logistic_fit(xor) <= 0.75 and additive_search(xor) == 0.75 and additive_bound(xor) == 0.75
    for seed in range(3):
        T = bigram_table(16, seed=seed)
        fit, found, bound = additive_logistic_fit(T), additive_search(T), additive_bound(T)
        assert 0.5 <= fit <= found <= bound < 1, (fit, found, bound)


def test_additive_search_is_achieved_by_some_u_v():
    """Brute force on a small table: no sign pattern of u_a + v_b beats the search, and the bound holds."""
    import itertools
    T = bigram_table(4, seed=1)
    best = 0.0
    for perm in itertools.permutations(range(8)):  # an order of the 4 row keys -u_a and 4 column keys v_b
        pos = {item: i for i, item in enumerate(perm)}
        pred = torch.tensor([[float(pos[4 + b] > pos[a]) for b in range(4)] for a in range(4)])
        best = max(best, float((pred == T).float().mean()))
    assert additive_search(T) == best <= additive_bound(T)


def test_additive_search_reports_what_its_keys_reach_on_random_tables():
    """Ties between keys cannot inflate the score: the accuracy returned is that of the keys returned."""
    for seed in range(4):
        T = bigram_table(16, seed=100 + seed)
        acc, u, v = additive_search(T, restarts=10, return_keys=True)
        assert acc == float(((torch.tensor(u)[:, None] + torch.tensor(v)[None, :] > 0).long() == T).float().mean())
        assert acc <= additive_bound(T)


def test_relu_after_norms_makes_sublayers_read_relu_of_the_norm():
    torch.manual_seed(0)
    m = TokenClassifier(2, 8, 2, 2, vocab_size=5, max_len=6)
    ref = TokenClassifier(2, 8, 2, 2, vocab_size=5, max_len=6)
    ref.load_state_dict(m.state_dict())
    relu_after_norms(m)
    X = torch.randint(0, 5, (3, 6))
    b, h = ref.encoder.blocks[0], ref.encoder.embed_input(X)
    by_hand = h + b.attn(torch.relu(b.ln1(h)))
    by_hand = by_hand + b.mlp(torch.relu(b.ln2(by_hand)))
    assert torch.allclose(m.encoder.blocks[0](h), by_hand, atol=1e-6)
    assert not torch.allclose(m(X), ref(X))
    with pytest.raises(ValueError, match="pre-LN"):
        relu_after_norms(TokenClassifier(2, 8, 2, 1, vocab_size=5, max_len=6, norm="post"))


def test_draw_residual_unit_draws_boxes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    draw_residual_unit(ax, ["LN", "MHA"], ["ReLU"], title="t")
    assert len(ax.patches) == 4 and ax.get_title() == "t"  # 3 boxes and the addition
    plt.close(fig)


def test_mask_self_attention_hides_a_tokens_own_key():
    from attnlib.probes import mask_self_attention
    torch.manual_seed(0)
    model = TokenClassifier(2, 8, 2, 1, input_dim=2, positions=None, norm="none", mlp=False)
    X = torch.randn(3, 5, 2)
    block = model.encoder.blocks[0]
    h = model.encoder.embed(X)
    expected = h + block.attn(h, attn_mask=torch.eye(5, dtype=torch.bool))  # residual + masked attention
    mask_self_attention(model)
    with torch.no_grad():
        assert torch.allclose(model.encoder.blocks[0](h), expected, atol=1e-6)
        # the masked block differs from the plain one
        assert not torch.allclose(expected, h + block.attn.__class__.forward(block.attn, h), atol=1e-4)


def test_rank_collapse_zero_mlp_bias_changes_only_the_biases():
    kw = dict(norm="none", residual=False)
    a = rank_collapse(kw, depth=2, seeds=[0, 1])
    b = rank_collapse(kw, depth=2, seeds=[0, 1], zero_mlp_bias=True)
    assert a.shape == b.shape == (2, 3)
    assert torch.allclose(a[:, 0], b[:, 0]) and not torch.allclose(a[:, 1], b[:, 1])
    c = rank_collapse(dict(norm="none", residual=False, mlp=False), depth=2, seeds=[0], zero_mlp_bias=True)
    assert torch.allclose(c, rank_collapse(dict(norm="none", residual=False, mlp=False), depth=2, seeds=[0]))


# ----------------------------------------------------------------------------------------------
# TransformerBlock's input_activation (chapter 1's "ReLU in front of each sub-layer")

def test_input_activation_pre_ln_is_relu_after_norms():
    """Pre-LN with input_activation="relu" is the pre-activation block x + f(ReLU(LN(x))), weight for weight."""
    torch.manual_seed(0)
    m = TokenClassifier(2, 8, 2, 2, vocab_size=5, max_len=6, input_activation="relu")
    torch.manual_seed(0)
    ref = relu_after_norms(TokenClassifier(2, 8, 2, 2, vocab_size=5, max_len=6))
    X = torch.randint(0, 5, (3, 6))
    with torch.no_grad():
        assert torch.allclose(m(X), ref(X), atol=1e-6)


def test_input_activation_post_ln_is_the_learners_literal_proposal():
    """Post-LN with input_activation="relu": LN(x + MHA(ReLU(x))), then LN(h + MLP(ReLU(h))); the skip adds x itself."""
    torch.manual_seed(1)
    block = TransformerBlock(8, 2, norm="post", input_activation="relu").double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        h = block.ln1(x + block.attn(torch.relu(x)))
        by_hand = block.ln2(h + block.mlp(torch.relu(h)))
        assert torch.allclose(block(x), by_hand)
        plain = TransformerBlock(8, 2, norm="post").double()
        plain.load_state_dict(block.state_dict())
        assert not torch.allclose(plain(x), by_hand)


def test_input_activation_leaves_the_stream_alone():
    """With the branches silenced, the block passes negative stream values through: the ReLU is on the branch."""
    block = TransformerBlock(8, 2, norm="none", input_activation="relu")
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        x = -torch.rand(2, 4, 8) - 0.1  # every coordinate negative
        assert torch.equal(block(x), x)
    with pytest.raises(ValueError, match="input_activation"):
        TransformerBlock(8, 2, input_activation="swish")


def test_default_block_is_unchanged_by_the_new_switch():
    torch.manual_seed(2)
    a = TransformerBlock(8, 2)
    torch.manual_seed(2)
    b = TransformerBlock(8, 2, input_activation=None)
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert a.input_act is None


def test_steps_to_reads_the_first_evaluation_at_the_level():
    from attnlib.experiments.activation import steps_to
    curves = [[0.5, 0.96, 0.97], [0.5, 0.6, 0.7], [0.99, 0.9, 0.99]]
    assert steps_to([10, 20, 30], curves, 0.95, never=40) == [20.0, 40.0, 10.0]
