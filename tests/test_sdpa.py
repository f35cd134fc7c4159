"""attnlib.sdpa: equal to PyTorch where they overlap; each normaliser as specified."""
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from attnlib.sdpa import NORMALISERS, attention, elu_feature_map, explicit_softmax, linear_attention_weights


def rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


@pytest.fixture(params=[False, True], ids=["explicit", "fused"])
def fused(request, monkeypatch):
    """Run a test with attnlib's explicit softmax path and with the fused-kernel shortcut."""
    monkeypatch.setattr(sys.modules["attnlib.sdpa"], "USE_FUSED_KERNEL", request.param)
    return request.param


@pytest.mark.parametrize("shape", [(1, 4, 4, 8), (3, 2, 5, 7), (2, 1, 9, 3)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_softmax_equals_sdpa(shape, dtype, tol, fused):
    b, h, n_q, d = shape
    q, k, v = rand(b, h, n_q, d, dtype=dtype, seed=1), rand(b, h, 6, d, dtype=dtype, seed=2), rand(b, h, 6, 5, dtype=dtype, seed=3)
    assert (attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max() <= tol


@pytest.mark.parametrize("mask_kind", ["bool", "float", "causal"])
def test_softmax_masks_equal_sdpa(mask_kind, fused):
    q, k, v = rand(2, 3, 6, 4, seed=1), rand(2, 3, 6, 4, seed=2), rand(2, 3, 6, 4, seed=3)
    g = torch.Generator().manual_seed(4)
    if mask_kind == "causal":
        ours = attention(q, k, v, causal=True)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        allowed = torch.rand(2, 1, 6, 6, generator=g) > 0.3
        allowed[..., 0] = True  # every query sees at least one key (SDPA gives NaN otherwise)
        mask = allowed if mask_kind == "bool" else torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, -math.inf)
        ours = attention(q, k, v, mask)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ours - ref).abs().max() <= 1e-10


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = rand(1, 1, 3, 4), rand(1, 1, 5, 4), rand(1, 1, 5, 2)
    allowed = torch.ones(3, 5, dtype=torch.bool)
    allowed[1] = False
    for norm in NORMALISERS:
        if norm == "linear":
            out, w = attention(q, k, v, torch.zeros(1, 5, dtype=torch.bool), normaliser=norm, return_weights=True)
            assert torch.equal(out, torch.zeros_like(out)) and torch.equal(w, torch.zeros_like(w))
            continue
        out, w = attention(q, k, v, allowed, normaliser=norm, return_weights=True)
        assert torch.isfinite(out).all() and torch.isfinite(w).all(), norm
        assert torch.equal(out[..., 1, :], torch.zeros(1, 1, 2, dtype=out.dtype)), norm
        assert torch.equal(w[..., 1, :], torch.zeros(1, 1, 5, dtype=w.dtype)), norm


def test_fully_masked_row_has_finite_gradients():
    q, k, v = (rand(1, 1, 3, 4, seed=s).requires_grad_() for s in (1, 2, 3))
    mask = torch.tensor([[True, True, True], [False, False, False], [True, False, False]])
    attention(q, k, v, mask).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_logits_stay_finite(dtype, fused):
    q = torch.full((1, 4, 8), 100.0, dtype=dtype)
    k = torch.full((1, 6, 8), 100.0, dtype=dtype)  # scores = 1e4 * 8 / sqrt(8)
    k[0, 0] = -100.0
    v = rand(1, 6, 3, dtype=dtype)
    q.requires_grad_()
    for norm in ("softmax", "relu", "sigmoid"):
        out = attention(q, k, v, normaliser=norm, scale=1e4 / 8)
        assert torch.isfinite(out).all(), norm
    out = attention(q, k, v)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_relu_is_divided_by_key_count():
    q, k, v = rand(2, 5, 4, seed=1), rand(2, 7, 4, seed=2), rand(2, 7, 3, seed=3)
    _, w = attention(q, k, v, normaliser="relu", return_weights=True)
    _, w_plain = attention(q, k, v, normaliser="relu_plain", return_weights=True)
    scores = q @ k.transpose(-2, -1) / 2.0
    assert torch.allclose(w_plain, scores.relu()) and torch.allclose(w, scores.relu() / 7)
    assert (w >= 0).all() and (w == 0).any()  # exact zeros: sparsity


def test_relu_with_causal_mask_divides_by_visible_keys():
    q, k, v = rand(1, 4, 4, seed=1), rand(1, 4, 4, seed=2), rand(1, 4, 3, seed=3)
    _, w = attention(q, k, v, normaliser="relu", causal=True, return_weights=True)
    scores = (q @ k.transpose(-2, -1) / 2.0).relu().tril()
    assert torch.allclose(w, scores / torch.arange(1, 5, dtype=w.dtype).view(4, 1))


def test_sigmoid_has_minus_log_n_bias():
    q, k, v = rand(1, 3, 4, seed=1), rand(1, 9, 4, seed=2), rand(1, 9, 2, seed=3)
    _, w = attention(q, k, v, normaliser="sigmoid", return_weights=True)
    assert torch.allclose(w, torch.sigmoid(q @ k.transpose(-2, -1) / 2.0 - math.log(9)))


def test_softmax_rows_sum_to_one():
    _, w = attention(rand(2, 5, 4), rand(2, 8, 4), rand(2, 8, 4), return_weights=True)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5, dtype=w.dtype)) and (w > 0).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padding", [False, True])
def test_linear_attention_on_equals_quadratic_form(causal, padding):
    n = 7
    q, k, v = rand(2, 3, n, 4, seed=1), rand(2, 3, n, 4, seed=2), rand(2, 3, n, 5, seed=3)
    mask = None
    allowed = torch.ones(n, n, dtype=torch.bool)
    if padding:
        mask = torch.ones(2, 1, 1, n, dtype=torch.bool)
        mask[..., -2:] = False
        allowed = allowed & mask
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()
    out = attention(q, k, v, mask, normaliser="linear", causal=causal)
    # the O(n^2) form, written from the definition
    sim = (elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)).masked_fill(~allowed, 0)
    expected = (sim / sim.sum(-1, keepdim=True)) @ v
    assert (out - expected).abs().max() <= 1e-10
    w = linear_attention_weights(q, k, allowed)
    assert torch.allclose(w @ v, expected)


def test_linear_rejects_per_query_mask():
    q = rand(1, 4, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, n_k\)"):
        attention(q, q, q, torch.ones(4, 4, dtype=torch.bool), normaliser="linear")


@pytest.mark.parametrize("args,match", [
    (((2, 5, 4), (2, 6, 3), (2, 6, 4)), "same feature size d_k"),
    (((2, 5, 4), (2, 6, 4), (2, 7, 4)), "same length n_k"),
    (((5, 4), (2, 6, 4), (2, 6, 4)), "same number of dimensions"),
    (((2, 5, 4), (3, 6, 4), (3, 6, 4)), "leading"),
    (((4,), (4,), (4,)), "at least 2 dimensions"),
])
def test_bad_shapes_raise_clear_errors(args, match):
    with pytest.raises(ValueError, match=match):
        attention(*(torch.zeros(s) for s in args))


@pytest.mark.parametrize("mask,match", [
    (torch.ones(5, 5, dtype=torch.bool), r"mask must have shape \(\.\.\., 4 or 1, 6\)"),
    (torch.ones(3, 4, 6, dtype=torch.bool), "mask must have shape"),
    (torch.ones(4, 6, dtype=torch.int64), "mask must be bool"),
    (torch.ones(4, 6, dtype=torch.float64), "mask must be bool"),
])
def test_bad_masks_raise_clear_errors(mask, match):
    q, k = torch.zeros(2, 4, 3), torch.zeros(2, 6, 3)
    with pytest.raises(ValueError, match=match):
        attention(q, k, k, mask)


def test_unknown_normaliser():
    q = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="normaliser must be one of"):
        attention(q, q, q, normaliser="tanh")


def test_explicit_path_is_what_runs_without_the_shortcut():
    """The fused shortcut must be a pure speed-up: explicit and fused agree, causal too."""
    q, k, v = rand(2, 2, 5, 4, seed=1), rand(2, 2, 5, 4, seed=2), rand(2, 2, 5, 3, seed=3)
    with explicit_softmax():
        explicit = attention(q, k, v, causal=True)
    assert (attention(q, k, v, causal=True) - explicit).abs().max() <= 1e-12


@pytest.mark.parametrize("normaliser", NORMALISERS)
@pytest.mark.parametrize("causal", [False, True])
def test_stays_on_the_input_device(normaliser, causal, fused):
    """Device-agnostic: nothing is created on the CPU (the meta device stands in for a GPU)."""
    q = torch.empty(2, 3, 5, 4, device="meta")
    key_mask = torch.ones(2, 1, 1, 5, dtype=torch.bool, device="meta")
    out, w = attention(q, q, q, key_mask, normaliser=normaliser, causal=causal, return_weights=True)
    assert out.device.type == w.device.type == "meta" and out.shape == (2, 3, 5, 4)
    assert attention(q, q, q, normaliser=normaliser, causal=causal).device.type == "meta"
