"""Training is deterministic; the seeds trained together follow the paths they would follow alone."""
import numpy as np
import pytest
import torch

from attnlib import SequenceClassifier, TokenClassifier, tasks, training
from attnlib.stats import format_table, paired_difference, summarise


def small_model():
    return SequenceClassifier(2, 16, 2, 1, vocab_size=8, pooling="mean", positions=None)


def data():
    d = tasks.find_the_needle(256, 8, vocab_size=8, seed=0)
    return d.X, d.y


def test_same_seed_same_history():
    _, h1 = training.train(small_model, data(), seeds=[3, 4], steps=20, lr=1e-2, progress=False)
    _, h2 = training.train(small_model, data(), seeds=[3, 4], steps=20, lr=1e-2, progress=False)
    assert np.array_equal(h1.loss, h2.loss) and np.array_equal(h1.step, h2.step)


def test_other_seed_other_history():
    _, h1 = training.train(small_model, data(), seeds=[3], steps=20, lr=1e-2, progress=False)
    _, h2 = training.train(small_model, data(), seeds=[5], steps=20, lr=1e-2, progress=False)
    assert not np.array_equal(h1.loss, h2.loss)


def test_seeds_together_equal_seeds_alone():
    _, together = training.train(small_model, data(), seeds=[3, 4], steps=15, lr=1e-2, progress=False)
    _, alone = training.train(small_model, data(), seeds=[4], steps=15, lr=1e-2, progress=False)
    assert np.allclose(together.loss[1], alone.loss[0], rtol=1e-4, atol=1e-5)


def test_training_learns_something():
    d = tasks.majority(512, 9, num_classes=3, seed=0)
    models, h = training.train(lambda: SequenceClassifier(3, 16, 2, 1, vocab_size=3, pooling="mean", positions=None),
                               (d.X, d.y), seeds=[0], steps=150, lr=3e-3, progress=False)
    test = tasks.majority(512, 9, num_classes=3, seed=1)
    assert h.loss[0, -1] < h.loss[0, 0]
    assert training.accuracy(models[0], test.X, test.y) > 0.6


def test_per_seed_data_and_token_outputs():
    def per_seed(s):
        d = tasks.counting(128, 6, vocab_size=4, seed=s)
        return d.X, d.y
    models, h = training.train(lambda: TokenClassifier(6, 16, 2, 1, vocab_size=4, max_len=6), per_seed,
                               seeds=[0, 1], steps=10, progress=False, clip_norm=1.0, warmup_steps=3)
    assert h.loss.shape == (2, len(h.step)) and len(models) == 2


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", "attention", "last", "rnn"])
def test_every_pooling_trains_under_vmap(pooling):
    build = lambda: SequenceClassifier(2, 8, 1, 1, vocab_size=8, pooling=pooling, max_len=9)
    models, h = training.train(build, data(), seeds=[0, 1], steps=3, progress=False)
    assert np.isfinite(h.loss).all()


def test_run_grid_returns_tidy_rows_and_stats():
    d = tasks.find_the_needle(128, 8, vocab_size=8, seed=0)
    rows = training.run_grid(
        {"mean": dict(pooling="mean"), "max": dict(pooling="max", train=dict(lr=1e-2))},
        lambda pooling: SequenceClassifier(2, 8, 1, 0, vocab_size=8, pooling=pooling, positions=None),
        (d.X, d.y), lambda m, s: {"acc": training.accuracy(m, d.X, d.y)},
        seeds=[0, 1, 2], steps=5, progress=False)
    assert [r["config"] for r in rows] == ["mean"] * 3 + ["max"] * 3
    s = summarise(rows, "acc")
    assert [r["n"] for r in s] == [3, 3] and all(r["lo"] <= r["mean"] <= r["hi"] for r in s)
    diff = paired_difference(rows, "acc", "max", "mean")
    assert diff["n"] == 3
    assert "config" in format_table(s, ["config", "mean", "ci95"])
    rows2, hists = training.run_grid(
        {"mean": dict(pooling="mean")},
        lambda pooling: SequenceClassifier(2, 8, 1, 0, vocab_size=8, pooling=pooling, positions=None),
        (d.X, d.y), lambda m, s: {"acc": training.accuracy(m, d.X, d.y)},
        seeds=[0, 1, 2], steps=5, progress=False, return_histories=True)
    assert list(hists) == ["mean"] and hists["mean"].loss.shape[0] == 3
    assert [r["acc"] for r in rows2] == [r["acc"] for r in rows[:3]]


def test_tasks_are_deterministic():
    for make in (lambda s: tasks.associative_recall(10, 4, seed=s), lambda s: tasks.find_the_needle(10, 5, seed=s),
                 lambda s: tasks.counting(10, 5, seed=s), lambda s: tasks.majority(10, 5, seed=s)):
        a, b, c = make(1), make(1), make(2)
        assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and not torch.equal(a.X, c.X)
    d1, d2 = tasks.digits_patches(seed=0), tasks.digits_patches(seed=0)
    assert torch.equal(d1.X_test, d2.X_test) and d1.X_train.shape[1:] == (16, 4)


def test_task_labels_are_right():
    d = tasks.associative_recall(50, 5, seed=0)
    for x, y in zip(d.X, d.y):
        pairs = {int(x[2 * i]): int(x[2 * i + 1]) - 10 for i in range(5)}  # num_keys = 10
        for t in range(10, 15):
            assert pairs[int(x[t])] == int(y[t])
    m = tasks.majority(100, 8, num_classes=3, seed=0)
    for x, y in zip(m.X, m.y):
        counts = torch.bincount(x, minlength=3)
        assert (counts == counts.max()).sum() == 1 and counts.argmax() == y
    n = tasks.find_the_needle(100, 6, seed=0)
    assert torch.equal((n.X == 0).any(1).long(), n.y)
    c = tasks.counting(20, 6, vocab_size=3, seed=0)
    assert torch.equal(c.y[0], torch.tensor([int((c.X[0] == t).sum()) - 1 for t in c.X[0]]))


def test_foreach_adamw_gives_the_same_numbers(monkeypatch):
    """train() uses AdamW(foreach=True) for speed; it must not change a single number."""
    histories = {}
    original = torch.optim.AdamW
    for foreach in (False, True):
        monkeypatch.setattr(torch.optim, "AdamW", lambda *a, _f=foreach, **k: original(*a, **{**k, "foreach": _f}))
        _, h = training.train(small_model, data(), seeds=[3, 4], steps=20, lr=1e-2, weight_decay=0.01,
                              clip_norm=1.0, progress=False)
        histories[foreach] = h.loss
    assert np.array_equal(histories[False], histories[True])


def test_evaluate_hook_gives_curves_of_the_metric():
    d = tasks.majority(512, 9, num_classes=3, seed=0)
    calls = []

    def evaluate(m):
        calls.append(m)
        return training.accuracy(m, d.X, d.y)

    models, h = training.train(lambda: SequenceClassifier(3, 16, 2, 1, vocab_size=3, pooling="mean", positions=None),
                               (d.X, d.y), seeds=[0, 1], steps=40, lr=3e-3, eval_every=10,
                               evaluate=evaluate, progress=False)
    assert list(h.eval_step) == [10, 20, 30, 40] and h.eval.shape == (2, 4)
    assert len(calls) == 8
    # the last evaluation is of the returned models
    assert np.allclose(h.eval[:, -1], [training.accuracy(m, d.X, d.y) for m in models])
    # evaluating does not change the training path
    _, plain = training.train(lambda: SequenceClassifier(3, 16, 2, 1, vocab_size=3, pooling="mean", positions=None),
                              (d.X, d.y), seeds=[0, 1], steps=40, lr=3e-3, progress=False)
    assert np.array_equal(plain.loss, h.loss) and plain.eval is None


def test_device_is_read_from_the_environment(monkeypatch):
    from attnlib import config

    monkeypatch.delenv("ATTNLIB_DEVICE", raising=False)
    assert config.device() == "cpu"
    monkeypatch.setenv("ATTNLIB_DEVICE", "no-such-device")
    with pytest.raises(ValueError, match="ATTNLIB_DEVICE"):
        config.device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("ATTNLIB_DEVICE", "cuda")
        with pytest.raises(ValueError, match="no CUDA"):
            config.device()
    monkeypatch.setenv("ATTNLIB_DEVICE", "cpu")
    models, _ = training.train(small_model, data(), seeds=[0], steps=2, progress=False)
    assert next(models[0].parameters()).device.type == "cpu"


def test_train_refuses_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        training.train(small_model, data(), seeds=[0], steps=0, progress=False)
