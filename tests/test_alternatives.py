"""attnlib.alternatives: timing helpers, FLOP counts, the recurrent form of linear attention, ShiftRecall."""
import math

import numpy as np
import pytest
import torch

from attnlib.alternatives import (LogLogFit, ShiftRecall, attention_flops, crossover, describe_recall, fit_loglog,
                                  linear_attention_recurrent, predicted_crossover, relu_feature_attention,
                                  time_fn, time_samples)
from attnlib.sdpa import attention
from attnlib.tasks import associative_recall


def test_time_fn_returns_a_positive_median_and_validates():
    x = torch.randn(64, 64)
    for clock in ("cpu", "wall"):
        t = time_fn(torch.matmul, x, x, warmup=1, repeats=3, clock=clock)
        assert t >= 0 and math.isfinite(t)
    with pytest.raises(ValueError):
        time_fn(torch.matmul, x, x, repeats=0)
    with pytest.raises(ValueError):
        time_fn(torch.matmul, x, x, clock="sundial")


def test_fit_loglog_recovers_an_exponent_and_crossover():
    ns = np.array([10, 100, 1000])
    quad, lin = fit_loglog(ns, 2e-6 * ns ** 2), fit_loglog(ns, 1e-4 * ns)
    assert quad.slope == pytest.approx(2) and lin.slope == pytest.approx(1)
    assert crossover(quad, lin) == pytest.approx(50)  # 2e-6 n^2 = 1e-4 n
    assert quad.predict(50) == pytest.approx(lin.predict(50))
    assert crossover(LogLogFit(1.0, 0.0), LogLogFit(1.0, 1.0)) == math.inf
    with pytest.raises(ValueError):
        fit_loglog([1], [1])
    with pytest.raises(ValueError):
        fit_loglog([1, 2], [0, 1])


def test_flop_counts_and_predicted_crossover_agree():
    for d in (16, 64):
        n = predicted_crossover(d)
        assert attention_flops(n, d, kind="quadratic") == pytest.approx(attention_flops(n, d, kind="linear"))
    assert attention_flops(2048, 64) == 4 * attention_flops(1024, 64)  # quadratic: x4 for x2
    assert attention_flops(2048, 64, kind="linear") == 2 * attention_flops(1024, 64, kind="linear")
    with pytest.raises(ValueError):
        attention_flops(8, 8, kind="cubic")


@pytest.mark.parametrize("shape", [(5, 4, 3), (2, 3, 7, 4, 6)])
def test_recurrent_linear_attention_equals_the_parallel_causal_form(shape):
    g = torch.Generator().manual_seed(0)
    *lead, n, d_k, d_v = shape
    q, k = torch.randn(*lead, n, d_k, generator=g), torch.randn(*lead, n, d_k, generator=g)
    v = torch.randn(*lead, n, d_v, generator=g)
    out = linear_attention_recurrent(q, k, v)
    assert out.shape == (*lead, n, d_v)
    torch.testing.assert_close(out, attention(q, k, v, normaliser="linear", causal=True))


@pytest.mark.parametrize("normaliser", ["softmax", "relu", "sigmoid", "linear"])
def test_shift_recall_shapes_and_validation(normaliser):
    t = associative_recall(4, 3, seed=0)
    model = ShiftRecall(t.vocab_size, t.num_classes, 16, num_heads=2, normaliser=normaliser, max_len=9)
    assert model(t.X).shape == (4, 9, t.num_classes)
    with pytest.raises(ValueError):
        model(t.X.float())
    with pytest.raises(ValueError):
        model(torch.zeros(1, 10, dtype=torch.long))


def test_shift_recall_sees_the_previous_token_and_nothing_else_without_attention():
    torch.manual_seed(0)
    model = ShiftRecall(10, 4, 8, max_len=5)
    with torch.no_grad():
        model.attn.W_O.zero_()  # silence the attention: only the token and its shift remain
        x = torch.tensor([[1, 2, 3, 4, 5]])
        y = x.clone()
        y[0, 1] = 7
        changed = (model(x) - model(y)).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [False, True, True, False, False]


def test_time_samples_keeps_every_repeat_and_time_fn_is_their_median():
    x = torch.randn(32, 32)
    ts = time_samples(torch.matmul, x, x, warmup=0, repeats=7)
    assert len(ts) == 7 and all(t >= 0 for t in ts)
    with pytest.raises(ValueError):
        time_samples(torch.matmul, x, x, repeats=0)
    calls = iter([0.0, 3.0, 3.0, 4.0, 4.0, 9.0])  # three calls lasting 3, 0 and 5 seconds
    import attnlib.alternatives as alt
    orig = alt.time.process_time
    alt.time.process_time = lambda: next(calls)
    try:
        assert time_fn(lambda: None, warmup=0, repeats=3) == 3.0
    finally:
        alt.time.process_time = orig


def test_relu_feature_attention_is_normalised_relu_kernel_weights():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 30, 8, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.relu(q) @ torch.relu(k).transpose(-2, -1)  # the n x n weights, built explicitly
    expected = (w / w.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(relu_feature_attention(q, k, v, eps=0.0), expected)
    # a query with no positive feature gets a zero output, not NaN
    q0 = -torch.ones(1, 1, 8, dtype=torch.float64)
    out = relu_feature_attention(q0, k[:1], v[:1])
    assert torch.isfinite(out).all() and out.abs().max() == 0


def test_describe_recall_shows_keys_values_and_targets():
    t = associative_recall(2, 3, num_keys=8, num_values=8, seed=0)
    text = describe_recall(t.X[0], t.y[0], num_keys=8)
    top, bottom = text.split("\n")
    assert top.startswith("input:") and bottom.startswith("target:")
    assert top.count("k") == 6 and top.count("v") == 3  # 3 keys + 3 queries, 3 values
    assert bottom.count("v") == 3 and bottom.count(".") == 6
    with pytest.raises(ValueError):
        describe_recall(t.X, t.y, num_keys=8)


def test_shift_recall_without_positions_runs_on_any_length():
    torch.manual_seed(0)
    model = ShiftRecall(16, 8, 8, max_len=4, positions=False)
    assert model.pos is None and "pos.weight" not in dict(model.named_parameters())
    x = torch.tensor([[1, 9, 2, 10, 3, 11, 2, 1, 3]])  # longer than max_len: fine without positions
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 9, 8) and torch.isfinite(out).all()
    with_pos = ShiftRecall(16, 8, 8, max_len=4)
    with pytest.raises(ValueError):
        with_pos(x)


def test_steps_to_reach_interpolates_and_marks_seeds_that_never_reach():
    from attnlib.alternatives import steps_to_reach
    step = [40, 80, 120]
    curves = [[0.5, 0.8, 1.0],   # reaches 0.9 halfway from 80 to 120
              [0.95, 0.96, 0.97],  # already there at the first evaluation
              [0.1, 0.2, 0.3]]   # never
    got = steps_to_reach(step, curves, 0.9)
    assert got[0] == pytest.approx(100) and got[1] == 40 and got[2] == math.inf
    assert steps_to_reach(step, curves, 0.9, never=120)[2] == 120
    with pytest.raises(ValueError):
        steps_to_reach(step, [[0.1, 0.2]], 0.9)


# ------------------------------------------- reading chapter 4's stored experiments (attnlib.experiments)
def _capacity_stored():
    """A hand-made stored `capacity` run: linear d_k=16 in two seed halves, d_k=32 and softmax in one unit."""
    def unit(seeds, steps, every, level):
        eval_step = list(range(every, steps + 1, every))
        curve = [[level(seed, t) for t in eval_step] for seed in seeds]
        return {"seeds": seeds, "steps": steps, "lr": 0.01, "eval_step": eval_step, "eval": curve,
                "accuracy": [sum(c[-5:]) / 5 for c in curve],
                "_train": [{"seeds": seeds, "step": [steps], "loss": [[1.0] for _ in seeds]}]}
    slow = lambda seed, t: 0.5 + 0.1 * t / 800 + 0.001 * seed  # noqa: E731 (still rising: +0.1 over the run)
    flat = lambda seed, t: 0.9 + 0.001 * seed  # noqa: E731
    arms = [{"normaliser": "linear", "d_k": 16, "seeds": 4, "steps": 800, "eval_every": 80, "split": True},
            {"normaliser": "linear", "d_k": 32, "seeds": 2, "steps": 400, "eval_every": 40, "split": False},
            {"normaliser": "softmax", "d_k": 16, "seeds": 2, "steps": 200, "eval_every": 20, "split": False}]
    units = {"linear d_k=16 seeds a": unit([0, 1], 800, 80, slow), "linear d_k=16 seeds b": unit([2, 3], 800, 80, slow),
             "linear d_k=32": unit([0, 1], 400, 40, flat), "softmax d_k=16": unit([0, 1], 200, 20, flat)}
    return {"experiment": "04_softmax_alternatives/capacity", "units": units,
            "settings": {"arms": arms, "compare_at": 400, "num_pairs": 12}}


def test_score_at_reads_a_shorter_run_off_a_longer_one():
    from attnlib.experiments.softmax_alternatives import score_at
    step = [100, 200, 300, 400, 500, 600, 700, 800]
    curve = [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert score_at(step, curve, 800).tolist() == [6.0]  # the last 5 evaluations
    assert score_at(step, curve, 500).tolist() == [3.0]  # those up to step 500
    assert score_at(step, curve, 550).tolist() == [3.0]  # a step between evaluations: the ones before it
    with pytest.raises(ValueError):
        score_at(step, curve, 400)  # only 4 evaluations so far


def test_capacity_readers_join_seed_halves_and_compare_at_one_budget():
    from attnlib.experiments import softmax_alternatives as xp
    stored = _capacity_stored()
    arm = xp.capacity_arm(stored, "linear", 16)
    assert arm["seeds"] == [0, 1, 2, 3] and arm["eval"].shape == (4, 10)
    rows = {(r["config"], r["seed"]): r for r in xp.capacity_rows(stored)}
    assert "accuracy at compare" not in rows["softmax d_k=16", 0]  # 200 steps < compare_at
    at_400 = 0.5 + 0.1 * 240 / 800  # the mean of the evaluations at 80..400 steps, seed 0
    assert rows["linear d_k=16", 0]["accuracy at compare"] == pytest.approx(at_400)
    assert rows["linear d_k=16", 0]["accuracy at half"] == pytest.approx(at_400)  # half of 800 steps
    gains = {(r["config"], r["seed"]): r["gain"] for r in xp.doubling_rows(stored, 16)}
    assert gains["twice the steps", 3] == pytest.approx(0.1 * 400 / 800)  # 400 -> 800 steps: the curve's rise
    assert gains["twice d_k", 1] == pytest.approx(0.9 - at_400)
    assert ("twice d_k", 3) not in gains  # d_k = 32 was trained on seeds 0 and 1 only
    histories = xp.histories(stored)
    assert list(histories) == ["linear d_k=16", "linear d_k=32", "softmax d_k=16"]
    assert histories["linear d_k=16"].eval.shape == (4, 10) and histories["linear d_k=16"].loss.shape == (4, 1)
    with pytest.raises(KeyError):
        xp.capacity_arm(stored, "linear", 64)


def test_recall_plateau_reads_the_average_over_seeds_and_counts_seeds_separately():
    from attnlib.experiments import softmax_alternatives as xp
    # two seeds that swing 10 to 20 points in opposite phase: flat on average; seed by seed, the one whose
    # last quarter happens to sit high reads as still rising
    swing = np.array([[0.9, 0.9, 0.9, 0.9, 0.85, 0.95, 0.85, 0.95, 0.80, 1.00, 0.80, 1.00],
                      [0.9, 0.9, 0.9, 0.9, 0.95, 0.85, 0.95, 0.85, 1.00, 0.80, 1.00, 0.80]])
    assert xp.plateau(swing, "swing").holds
    rising = swing + np.linspace(0, 0.03, 12)  # the average rises 3 x 0.03 / 11 = 0.8 points a quarter
    assert not xp.plateau(rising, "rising").holds
    assert xp.plateau(rising, "rising").numbers["rise"] == pytest.approx(3 * 0.03 / 11, abs=1e-5)
    still_learning = np.array([[0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94]])  # a single seed, still rising
    assert not xp.plateau(still_learning, "one").holds
    assert xp.seeds_at_plateau(swing, "swing").numbers["converged"] == "1/2"
    with pytest.raises(ValueError):
        xp.plateau(swing[0], "one dimension")
