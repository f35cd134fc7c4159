"""Summaries of results over seeds: means, spreads, confidence intervals, effect sizes.

Rows are plain dicts, as returned by :func:`attnlib.training.run_grid`.
Confidence intervals are two-sided 95 % Student-t intervals over seeds.
"""
import math
from collections import defaultdict

import numpy as np
from scipy import stats as _st


def mean_ci(values, level=0.95):
    """``(mean, sd, half_width)`` of a t-interval for the mean of ``values``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if v.size == 1:
        return m, 0.0, float("nan")
    sd = float(v.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, v.size - 1) * sd / math.sqrt(v.size))
    return m, sd, half


def summarise(rows, value, by="config"):
    """One row per group: ``{by: group, "n", "mean", "sd", "ci95", "lo", "hi", "min", "max"}``.

    Groups keep the order in which they first appear.
    """
    groups = defaultdict(list)
    for r in rows:
        groups[r[by]].append(r[value])
    out = []
    for g, vals in groups.items():
        m, sd, half = mean_ci(vals)
        out.append({by: g, "n": len(vals), "mean": m, "sd": sd, "ci95": half, "lo": m - half,
                    "hi": m + half, "min": float(np.min(vals)), "max": float(np.max(vals))})
    return out


def paired_difference(rows, value, a, b, by="config", pair="seed"):
    """Difference ``a - b`` of ``value``, paired by seed.

    Returns ``{"diff", "ci95", "lo", "hi", "n", "d"}`` where ``d`` is the mean
    difference divided by the standard deviation of the differences (a paired
    effect size; ``inf`` when every seed gives the same difference).
    """
    va = {r[pair]: r[value] for r in rows if r[by] == a}
    vb = {r[pair]: r[value] for r in rows if r[by] == b}
    common = sorted(set(va) & set(vb))
    if not common:
        raise ValueError(f"no {pair} shared by {by}={a!r} and {by}={b!r}")
    diffs = np.array([va[k] - vb[k] for k in common])
    m, sd, half = mean_ci(diffs)
    d = m / sd if sd > 0 else (math.inf if m != 0 else 0.0)
    return {"diff": m, "ci95": half, "lo": m - half, "hi": m + half, "n": len(common), "d": d}


def format_table(rows, columns=None, digits=3) -> str:
    """A fixed-width text table of ``rows`` (numbers rounded to ``digits``)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def fmt(x):
        if isinstance(x, float):
            return "nan" if math.isnan(x) else f"{x:.{digits}f}"
        return str(x)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)
