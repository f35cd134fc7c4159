"""attnlib.readout: sum pooling, learning-rate tuning on validation data, pooling costs, [CLS] and
pooling weights, length accuracy, the baseline."""
import numpy as np
import pytest
import torch

from attnlib.models import SequenceClassifier
from attnlib.pooling import POOLINGS
from attnlib.readout import (READOUTS, attention_to, classifier, cls_attention, key_weights, length_accuracy,
                             logistic_baseline, make_readout, pooling_cost, pooling_weights, tune_lr)
from attnlib.tasks import find_the_needle


@pytest.mark.parametrize("name", READOUTS)
def test_pooling_cost_fields(name):
    c = pooling_cost(name, 8, 5, batch=2, rounds=2, repeats=1)
    expected = {"cls": 8, "mean": 0, "sum": 0, "max": 0, "last": 0, "attention": 8,
                "rnn": 2 * 3 * 8 * 8 + 3 * 8}[name]
    assert c["params"] == expected and 0 <= c["us_lo"] <= c["us"] <= c["us_hi"]
    assert c["sequential_steps"] == (5 if name == "rnn" else 1)


def test_cls_attention_matches_model_internals():
    torch.manual_seed(0)
    m = SequenceClassifier(2, 8, 2, 1, vocab_size=5, pooling="cls", positions="learned", max_len=10)
    X = torch.randint(0, 5, (3, 6))
    w = cls_attention(m, X)
    assert w.shape == (3, 6) and (w >= 0).all() and (w.sum(1) <= 1 + 1e-6).all()
    # the same input the encoder builds: recompute through the block and compare its output
    enc = m.encoder
    h = torch.cat([enc.cls.expand(3, 1, -1), enc.embed(X)], 1) + enc.pos.weight[:7]
    _, full = enc.blocks[0].attn(enc.blocks[0].ln1(h), return_weights=True)
    assert torch.allclose(w, full[:, :, 0, 1:].mean(1))


def test_cls_attention_refuses_other_poolings():
    m = SequenceClassifier(2, 8, 2, 1, vocab_size=5, pooling="mean", positions=None)
    with pytest.raises(ValueError):
        cls_attention(m, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        pooling_weights(m, torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_attention_to_all_and_none(pooling):
    torch.manual_seed(0)
    m = SequenceClassifier(2, 8, 2, 1, vocab_size=5, pooling=pooling, positions=None)
    X = torch.randint(0, 5, (3, 6))
    everything = attention_to(m, X, torch.ones(3, 6, dtype=torch.bool))
    nothing = attention_to(m, X, torch.zeros(3, 6, dtype=torch.bool))
    one = attention_to(m, X, torch.arange(6).expand(3, 6) == 2)
    assert everything.shape == (3,) and torch.allclose(nothing, torch.zeros(3))
    assert (one > 0).all() and (one < everything + 1e-6).all()
    if pooling == "mean":  # no [CLS]: the weights over the n keys sum to 1
        assert torch.allclose(everything, torch.ones(3), atol=1e-5)
    else:  # the [CLS] key is left out, so less than 1 remains
        assert (everything < 1).all()


def test_attention_to_refuses_models_without_blocks():
    m = SequenceClassifier(2, 8, 2, 0, vocab_size=5, pooling="mean", positions=None)
    with pytest.raises(ValueError):
        attention_to(m, torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool))


def test_pooling_weights_sum_to_one():
    m = SequenceClassifier(2, 8, 2, 1, input_dim=4, pooling="attention", positions="sinusoidal")
    w = pooling_weights(m, torch.randn(2, 7, 4))
    assert w.shape == (2, 7) and torch.allclose(w.sum(1), torch.ones(2))


def test_length_accuracy_shape():
    models = [SequenceClassifier(2, 8, 1, 0, vocab_size=16, pooling="max", positions=None) for _ in range(2)]
    tests = {L: find_the_needle(20, L, seed=L) for L in (4, 8, 16)}
    acc = length_accuracy(models, tests)
    assert acc.shape == (2, 3) and ((0 <= acc) & (acc <= 1)).all()


def test_logistic_baseline_separable():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2, 3))
    y = (X[:, 0, 0] > 0).astype(int)
    assert logistic_baseline(X[:150], y[:150], X[150:], y[150:], C=100.0) > 0.9


def test_sum_pooling_and_readouts():
    x = torch.randn(2, 5, 4)
    assert torch.allclose(make_readout("sum", 4)(x), x.sum(1))
    assert set(READOUTS) == set(POOLINGS) | {"sum"}
    with pytest.raises(ValueError):
        make_readout("median", 4)
    torch.manual_seed(0)
    summed = classifier("sum", 3, 8, 2, 1, vocab_size=5, positions=None)
    torch.manual_seed(0)
    mean = classifier("mean", 3, 8, 2, 1, vocab_size=5, positions=None)
    X = torch.randint(0, 5, (4, 6))
    h = mean.encoder(X)
    # same weights, only the readout differs: the sum is n times the mean
    assert torch.allclose(summed.head(summed.pool(summed.encoder(X))), mean.head(6 * h.mean(1)), atol=1e-5)


def test_tune_lr_picks_the_rate_that_learns_on_validation():
    tr, va = find_the_needle(600, 8, seed=1), find_the_needle(200, 8, seed=2)
    build = lambda: classifier("max", 2, 8, 1, 0, vocab_size=16, positions=None)
    # 1e-6 cannot learn anything in 60 steps; 3e-2 can: validation must choose 3e-2
    run = tune_lr({"max": build}, tr[:2], va[:2], [1e-6, 3e-2], seeds=[0, 1], steps=60)
    assert run.lr == {"max": 3e-2}
    models, hist = run.best("max")
    assert len(models) == 2 and hist.eval.shape[0] == 2 and hist.eval_step[-1] == 60
    assert run.val_acc[("max", 3e-2)].mean() > run.val_acc[("max", 1e-6)].mean() + 0.2
    assert np.allclose(run.val_acc[("max", 3e-2)], hist.eval[:, -1])
    with pytest.raises(ValueError):
        tune_lr({"max": build}, tr[:2], va[:2], [], seeds=[0], steps=2)


def test_tune_lr_ties_go_to_the_lower_validation_loss():
    tr, va = find_the_needle(400, 8, seed=1), find_the_needle(200, 8, seed=2)
    build = lambda: classifier("max", 2, 8, 1, 0, vocab_size=16, positions=None)
    run = tune_lr({"max": build}, tr[:2], va[:2], [1e-2, 3e-2], seeds=[0], steps=80, tie=1.0)
    losses = {lr: run.val_loss[("max", lr)].mean() for lr in (1e-2, 3e-2)}
    assert run.lr["max"] == min(losses, key=losses.get)


def test_pooling_cost_spread_and_growth():
    c = pooling_cost("mean", 8, 16, batch=2, rounds=3, repeats=2)
    assert 0 < c["us_lo"] <= c["us"] <= c["us_hi"]
    short = pooling_cost("rnn", 8, 4, batch=2, rounds=3, repeats=2)
    long = pooling_cost("rnn", 8, 64, batch=2, rounds=3, repeats=2)
    assert long["us"] > 4 * short["us"]  # 16x the sequential steps
    with pytest.raises(ValueError):
        pooling_cost("mean", 8, 4, rounds=0)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_key_weights_agree_with_attention_to(pooling):
    torch.manual_seed(0)
    m = SequenceClassifier(2, 8, 2, 1, vocab_size=5, pooling=pooling, positions=None)
    X = torch.randint(0, 5, (3, 6))
    w = key_weights(m, X)
    assert w.shape == (3, 6) and (w >= 0).all()
    for j in range(6):
        assert torch.allclose(w[:, j], attention_to(m, X, torch.arange(6).expand(3, 6) == j), atol=1e-6)
    if pooling == "mean":
        assert torch.allclose(w.sum(1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError):
        key_weights(SequenceClassifier(2, 8, 2, 0, vocab_size=5, pooling="mean", positions=None), X)
