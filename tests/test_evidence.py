"""The claim helpers decide correctly where the answer is known: identical arms, a clear
difference, a noisy difference, a run that has not converged."""
import matplotlib
import numpy as np
import pytest

from attnlib import evidence
from attnlib.training import History

matplotlib.use("Agg")


def rows_from(a_values, b_values, value="acc"):
    rows = [{"config": "A", "seed": s, value: v} for s, v in enumerate(a_values)]
    rows += [{"config": "B", "seed": s, value: v} for s, v in enumerate(b_values)]
    return rows


def test_clear_difference_is_better_and_not_equivalent():
    rng = np.random.default_rng(0)
    b = 0.7 + 0.02 * rng.standard_normal(10)
    a = b + 0.1 + 0.01 * rng.standard_normal(10)
    rows = rows_from(a, b)
    v = evidence.better(rows, "acc", "A", "B")
    assert v.holds and v.numbers["lo"] > 0 and v.numbers["wins"] == "10/10"
    assert not evidence.better(rows, "acc", "B", "A")
    assert not evidence.equivalent(rows, "acc", "A", "B", margin=0.02)


def test_identical_arms_are_equivalent_and_not_better():
    rng = np.random.default_rng(1)
    b = 0.8 + 0.05 * rng.standard_normal(12)
    a = b + 0.003 * rng.standard_normal(12)
    rows = rows_from(a, b)
    assert evidence.equivalent(rows, "acc", "A", "B", margin=0.02)
    assert not evidence.better(rows, "acc", "A", "B")
    assert not evidence.better(rows, "acc", "B", "A")


def test_noisy_run_cannot_claim_equivalence():
    """The old standard ('the interval contains 0') passes here; an equivalence must not."""
    rng = np.random.default_rng(2)
    b = rng.uniform(0.6, 0.9, 5)
    a = rng.uniform(0.6, 0.9, 5)
    rows = rows_from(a, b)
    v = evidence.equivalent(rows, "acc", "A", "B", margin=0.02)
    assert v.numbers["lo"] < 0 < v.numbers["hi"]  # the old test would have passed
    assert not v.holds


def test_better_needs_the_share_of_seeds_too():
    # Mean clearly positive, but one large win carries it and most seeds lose a little.
    diffs = np.array([0.5, 0.52, 0.48, 0.51, -0.01, -0.02, -0.01, -0.015, -0.01, -0.02])
    rows = rows_from(0.5 + diffs, np.full(10, 0.5))
    v = evidence.better(rows, "acc", "A", "B", min_share=0.75)
    assert v.numbers["lo"] > 0 and not v.holds
    assert evidence.better(rows, "acc", "A", "B", min_share=0.4).holds


def test_require_raises_with_numbers():
    rows = rows_from([0.5, 0.6, 0.7], [0.6, 0.5, 0.7])
    with pytest.raises(AssertionError, match="numbers"):
        evidence.better(rows, "acc", "A", "B").require()
    v = evidence.equivalent(rows_from([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]), "acc", "A", "B", margin=0.01)
    assert v.require() is v


def test_bad_input_is_refused():
    rows = rows_from([0.5, 0.6], [0.6, 0.5])
    with pytest.raises(ValueError, match="known"):
        evidence.better(rows, "acc", "A", "C")
    with pytest.raises(ValueError, match="margin"):
        evidence.equivalent(rows, "acc", "A", "B", margin=0)
    with pytest.raises(ValueError, match="at least 2"):
        evidence.better(rows_from([0.5], [0.4]), "acc", "A", "B")
    with pytest.raises(ValueError, match="non-finite"):
        evidence.better(rows_from([0.5, float("nan")], [0.4, 0.4]), "acc", "A", "B")


def test_converged_plateau_vs_still_falling():
    t = np.arange(100)
    plateau = np.stack([0.05 + np.exp(-t / 8) + 0.001 * k for k in range(5)])
    falling = np.stack([2.0 - 0.015 * t for _ in range(5)])
    assert evidence.converged(plateau).holds
    v = evidence.converged(falling)
    assert not v.holds and v.numbers["converged"] == "0/5"
    mixed = np.concatenate([plateau[:4], falling[:1]])
    assert not evidence.converged(mixed)
    assert evidence.converged(mixed, min_share=0.8)
    h = History(step=t, loss=plateau, lr=np.ones(100))
    assert evidence.converged(h)
    assert not evidence.converged(np.full((2, 10), np.nan))
    with pytest.raises(ValueError):
        evidence.converged(np.ones(10))


def test_reached():
    assert evidence.reached([0.99, 0.97, 1.0], 0.95)
    assert not evidence.reached([0.99, 0.90, 1.0], 0.95)
    assert evidence.reached([0.99, 0.90, 1.0], 0.95, min_share=0.6)


def test_learning_curves_plots_loss_and_eval():
    import matplotlib.pyplot as plt

    from attnlib.plotting import learning_curves

    h = History(step=np.arange(1, 11), loss=np.ones((3, 10)), lr=np.ones(10),
                eval_step=np.array([5, 10]), eval=np.full((3, 2), 0.9))
    fig, ax = plt.subplots()
    learning_curves(ax, {"a": h, "b": h})
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 2
    fig, ax = plt.subplots()
    learning_curves(ax, {"a": h}, which="eval")
    assert ax.get_yscale() == "linear"
    with pytest.raises(ValueError, match="evaluate"):
        learning_curves(ax, {"a": History(np.arange(3), np.ones((1, 3)), np.ones(3))}, which="eval")
    fig, ax = plt.subplots()  # a colour per name, whatever the order
    learning_curves(ax, {"b": h, "a": h}, colors={"a": "red", "b": "blue"})
    assert [line.get_color() for line in ax.get_lines()] == ["blue", "red"]
    plt.close("all")


def test_not_worse_is_one_sided():
    """A decided lead is not worse; a decided deficit beyond the margin is; a noisy tie is not decided."""
    lead = [{"config": c, "seed": i, "acc": 0.9 + (0.05 if c == "A" else 0) + 0.001 * (i % 3)}
            for i in range(8) for c in ("A", "B")]
    assert evidence.not_worse(lead, "acc", "A", "B", margin=0.02)
    assert not evidence.equivalent(lead, "acc", "A", "B", margin=0.02)
    assert not evidence.not_worse(lead, "acc", "B", "A", margin=0.02)
    rng = np.random.default_rng(0)
    noisy = [{"config": c, "seed": i, "acc": float(rng.normal(0.9, 0.2))} for i in range(4) for c in ("A", "B")]
    assert not evidence.not_worse(noisy, "acc", "A", "B", margin=0.02)
