"""How a claim is made in this course (see CONTRIBUTING.md): one function per kind of claim.

- :func:`better`      a positive claim, "A scores higher than B": the paired 95 % interval of
                      A - B excludes 0 *and* A beats B on at least a stated share of the seeds.
- :func:`equivalent`  a null claim, "A and B do not differ by more than ``margin``": the whole
                      paired 95 % interval lies inside (-margin, +margin). The margin is chosen
                      before looking, for what matters, and stated in the text.
- :func:`not_worse`   a one-sided null claim, "A is not worse than B by ``margin`` or more": the
                      paired 95 % interval's lower end lies above -margin (A may be better).
- :func:`converged`   a trained model is read at its plateau: over the last part of training
                      the loss no longer falls by more than a small amount.
- :func:`reached`     a level claim, "every seed scores at least ``level``".

Each returns a :class:`Verdict`: print it to show the numbers, call :meth:`Verdict.require`
to assert it (an ``AssertionError`` whose message carries the numbers). "The interval
contains 0" is not among them: it passes more easily the noisier the run, so it cannot
support a claim of no difference.

Rows are plain dicts, as :func:`attnlib.training.run_grid` returns them; two configurations
are paired by seed.
"""
from dataclasses import dataclass, field

import numpy as np

from .stats import mean_ci


@dataclass
class Verdict:
    """The outcome of a claim: whether it holds, a one-line account, and its numbers."""
    claim: str
    holds: bool
    numbers: dict = field(default_factory=dict)

    def __bool__(self):
        return self.holds

    def __str__(self):
        return f"{'holds' if self.holds else 'DOES NOT HOLD'}: {self.claim}"

    def require(self):
        """Raise ``AssertionError`` (with the claim and its numbers) unless the claim holds."""
        if not self.holds:
            raise AssertionError(f"{self.claim}; numbers: {self.numbers}")
        return self


def paired(rows, value, a, b, *, by="config", pair="seed"):
    """The per-seed differences ``a - b`` of ``value`` (an array, seeds sorted)."""
    va = {r[pair]: r[value] for r in rows if r[by] == a}
    vb = {r[pair]: r[value] for r in rows if r[by] == b}
    if not va or not vb:
        known = sorted({str(r[by]) for r in rows})
        raise ValueError(f"no rows with {by}={a if not va else b!r}; known: {known}")
    common = sorted(set(va) & set(vb))
    if len(common) < 2:
        raise ValueError(f"need at least 2 {pair}s shared by {a!r} and {b!r}, got {len(common)}")
    diffs = np.array([va[k] - vb[k] for k in common], dtype=float)
    if not np.isfinite(diffs).all():
        raise ValueError(f"non-finite {value} in the rows of {a!r} or {b!r}: {diffs}")
    return diffs


def _interval(diffs):
    m, sd, half = mean_ci(diffs)
    return {"diff": m, "lo": m - half, "hi": m + half, "sd": sd, "n": len(diffs)}


def better(rows, value, a, b, *, min_share=0.75, by="config", pair="seed"):
    """Positive claim: ``a`` scores higher than ``b`` on ``value``.

    Holds when the paired 95 % t-interval of ``a - b`` lies above 0 and ``a > b`` on at
    least ``min_share`` of the seeds. For "lower is better" metrics (a loss), swap a and b.
    """
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    diffs = paired(rows, value, a, b, by=by, pair=pair)
    num = _interval(diffs)
    wins = int((diffs > 0).sum())
    num["wins"] = f"{wins}/{len(diffs)}"
    holds = num["lo"] > 0 and wins >= min_share * len(diffs)
    claim = (f"{a} > {b} on {value}: diff {num['diff']:+.3f}, 95% CI [{num['lo']:+.3f}, {num['hi']:+.3f}], "
             f"higher on {wins}/{len(diffs)} seeds (needs CI above 0 and >= {min_share:.0%})")
    return Verdict(claim, bool(holds), num)


def equivalent(rows, value, a, b, *, margin, by="config", pair="seed"):
    """Null claim: ``a`` and ``b`` differ by less than ``margin`` on ``value``.

    Holds when the whole paired 95 % t-interval of ``a - b`` lies inside
    ``(-margin, +margin)``. (This is stricter than the usual two one-sided tests, which
    use the 90 % interval.) A noisy run makes the interval wide and the claim fail, as it should.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    diffs = paired(rows, value, a, b, by=by, pair=pair)
    num = _interval(diffs)
    num["margin"] = margin
    holds = -margin < num["lo"] and num["hi"] < margin
    claim = (f"{a} ~ {b} on {value} within +-{margin:g}: diff {num['diff']:+.3f}, "
             f"95% CI [{num['lo']:+.3f}, {num['hi']:+.3f}]")
    return Verdict(claim, bool(holds), num)


def not_worse(rows, value, a, b, *, margin, by="config", pair="seed"):
    """One-sided null claim: ``a`` is not worse than ``b`` on ``value`` by ``margin`` or more.

    Holds when the lower end of the paired 95 % t-interval of ``a - b`` lies above ``-margin``;
    ``a`` may be better by any amount. Use it where being better does not change the conclusion
    (and say so), as :func:`equivalent` would fail on a decided lead.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    diffs = paired(rows, value, a, b, by=by, pair=pair)
    num = _interval(diffs)
    num["margin"] = margin
    claim = (f"{a} not worse than {b} on {value} by {margin:g}: diff {num['diff']:+.3f}, "
             f"95% CI [{num['lo']:+.3f}, {num['hi']:+.3f}] (needs lower end above {-margin:+g})")
    return Verdict(claim, bool(num["lo"] > -margin), num)


def converged(history, *, window=0.2, rtol=0.05, atol=0.01, min_share=1.0, name="training"):
    """Convergence claim: the training loss has reached its plateau.

    For each seed, compare the mean loss over the last ``window`` of the logged points with
    the mean over the ``window`` before it. A seed has converged when the loss fell by at
    most ``rtol`` of its earlier value plus ``atol`` (nats): training longer would change
    little. Holds when at least ``min_share`` of the seeds have converged.

    Args:
        history: a :class:`attnlib.training.History`, or an array ``(num_seeds, T)`` of losses.
    """
    loss = np.asarray(getattr(history, "loss", history), dtype=float)
    if loss.ndim != 2:
        raise ValueError(f"expected losses of shape (num_seeds, T), got {loss.shape}")
    if not 0 < window <= 0.5:
        raise ValueError(f"window must be in (0, 0.5], got {window}")
    T = loss.shape[1]
    w = max(1, int(round(window * T)))
    if 2 * w > T:
        raise ValueError(f"need at least {2 * w} logged points for window={window}, got {T}")
    if not np.isfinite(loss[:, -2 * w:]).all():
        return Verdict(f"{name} converged: the loss is not finite", False, {"loss_end": loss[:, -1]})
    late = loss[:, -w:].mean(1)
    early = loss[:, -2 * w:-w].mean(1)
    drop = early - late
    ok = drop <= rtol * np.abs(early) + atol
    share = float(ok.mean())
    num = {"loss_end": np.round(late, 4).tolist(), "drop": np.round(drop, 4).tolist(),
           "converged": f"{int(ok.sum())}/{len(ok)}"}
    claim = (f"{name} converged on {int(ok.sum())}/{len(ok)} seeds (loss fell by <= {rtol:.0%} + {atol:g} "
             f"over the last {window:.0%} of training; needs >= {min_share:.0%})")
    return Verdict(claim, share >= min_share, num)


def reached(values, level, *, min_share=1.0, name="score"):
    """Level claim: at least ``min_share`` of the seeds' ``values`` are >= ``level``."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-seed values, got shape {v.shape}")
    ok = v >= level
    claim = f"{name} >= {level:g} on {int(ok.sum())}/{v.size} seeds (needs >= {min_share:.0%}); min {v.min():.3f}"
    return Verdict(claim, bool(ok.mean() >= min_share), {"values": np.round(v, 4).tolist()})
