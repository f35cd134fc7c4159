"""attnlib.readout: pooling costs, [CLS] and pooling weights, length accuracy, the baseline."""
import numpy as np
import pytest
import torch

from attnlib.models import SequenceClassifier
from attnlib.pooling import POOLINGS
from attnlib.readout import (attention_to, cls_attention, length_accuracy, logistic_baseline, pooling_cost,
                             pooling_weights)
from attnlib.tasks import find_the_needle


@pytest.mark.parametrize("name", POOLINGS)
def test_pooling_cost_fields(name):
    c = pooling_cost(name, 8, 5, batch=2, repeats=1)
    expected = {"cls": 8, "mean": 0, "max": 0, "last": 0, "attention": 8, "rnn": 2 * 3 * 8 * 8 + 3 * 8}[name]
    assert c["params"] == expected and c["ms"] >= 0
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
