"""attnlib.readout: sum pooling, learning-rate tuning on validation data, pooling costs, [CLS] and
pooling weights, length accuracy, the baseline, the masked text classifier, a frozen embedding; and
attnlib.tasks.movie_reviews, the real text of chapter 5."""
import numpy as np
import pytest
import torch

from attnlib.models import SequenceClassifier, count_parameters
from attnlib.pooling import POOLINGS
from attnlib.readout import (READOUTS, TextClassifier, attention_to, classifier, cls_attention, frozen_embedding,
                             key_weights, length_accuracy, logistic_baseline, make_readout, pooling_cost,
                             pooling_weights, sequential_steps, tune_lr)
from attnlib.tasks import PAD, find_the_needle, movie_reviews
from attnlib.training import train


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


@pytest.mark.parametrize("pooling", TextClassifier.POOLINGS)
def test_text_classifier_ignores_padding(pooling):
    torch.manual_seed(0)
    model = TextClassifier(pooling, 2, 8, 2, 1, vocab_size=12, max_len=10).eval()
    X = torch.randint(1, 12, (3, 5))
    padded = torch.cat([X, torch.full((3, 4), PAD)], dim=1)
    assert torch.allclose(model(X), model(padded), atol=1e-5)
    assert not torch.allclose(model(X), model(X.flip(1)), atol=1e-4), "learned positions: the order matters"


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_text_classifier_matches_the_sequence_classifier_without_padding(pooling):
    """Same weights, no padding: the masked model computes what SequenceClassifier computes."""
    text = TextClassifier(pooling, 2, 8, 2, 1, vocab_size=12, max_len=10).eval()
    seq = SequenceClassifier(2, 8, 2, 1, vocab_size=12, pooling=pooling, positions="learned", max_len=11).eval()
    state = {"embed.weight": "encoder.embed.weight", "pos.weight": "encoder.pos.weight", "cls": "encoder.cls",
             "final_ln.weight": "encoder.final_ln.weight", "final_ln.bias": "encoder.final_ln.bias"}
    mapped = {state.get(k, "encoder." + k if k.startswith("blocks") else k): v for k, v in text.state_dict().items()}
    seq.load_state_dict(mapped)
    X = torch.randint(1, 12, (4, 6))
    assert torch.allclose(text(X), seq(X), atol=1e-5)


def test_text_classifier_trains_under_vmap_and_refuses_unknown_poolings():
    X = torch.randint(0, 12, (64, 10))
    y = (X == 3).any(1).long()
    models, h = train(lambda: TextClassifier("max", 2, 8, 2, 1, vocab_size=12, max_len=10), (X, y), seeds=[0, 1],
                      steps=5, progress=False)
    assert len(models) == 2 and h.loss.shape[0] == 2
    with pytest.raises(ValueError):
        TextClassifier("rnn", 2, 8, vocab_size=12, max_len=10)


def test_frozen_embedding_is_not_trained():
    tr = find_the_needle(200, 8, seed=1)
    build = lambda: frozen_embedding(classifier("mean", 2, 8, 1, 0, vocab_size=16, positions=None))  # noqa: E731
    torch.manual_seed(5)
    before = build().encoder.embed.weight.detach().clone()
    (model,), _ = train(build, tr[:2], seeds=[5], steps=20, lr=1e-1, progress=False)
    assert torch.equal(model.encoder.embed.weight, before)
    assert not torch.equal(model.head.weight, build().head.weight), "the head still learns"
    assert count_parameters(model) == count_parameters(classifier("mean", 2, 8, 1, 0, vocab_size=16,
                                                                  positions=None)) - 16 * 8


def test_sequential_steps():
    assert sequential_steps("rnn", 128) == 128
    assert all(sequential_steps(p, 128) == 1 for p in READOUTS if p != "rnn")


def test_movie_reviews_is_deterministic_and_split_by_movie():
    a = movie_reviews(vocab_size=500, max_len=20)
    b = movie_reviews(vocab_size=500, max_len=20)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert a.vocab[:2] == ["<pad>", "<unk>"] and len(a.vocab) == 500
    for X, y in ((a.X_train, a.y_train), (a.X_val, a.y_val), (a.X_test, a.y_test)):
        assert X.shape[1] == 20 and X.dtype == torch.long and len(X) == len(y) > 500
        assert set(y.unique().tolist()) == {0, 1} and 0.45 < y.float().mean() < 0.7
        assert (X[:, 0] != PAD).all(), "every snippet has at least one word"
        later_pad = (X[:, 1:] != PAD) & (X[:, :-1] == PAD)
        assert not later_pad.any(), "padding only after the last word"
    assert len(a.X_train) > 3 * len(a.X_test)
    other = movie_reviews(vocab_size=500, max_len=20, seed=1)
    assert not torch.equal(other.y_test[:50], a.y_test[:50]) or len(other.y_test) != len(a.y_test)
