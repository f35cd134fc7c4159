"""The house style: one palette, seed bands, bars with confidence intervals, heatmaps.

The palette is Okabe & Ito's (2008), distinguishable with the common forms of
colour blindness. Call :func:`use_style` once at the top of a notebook.
"""
import io

import matplotlib.pyplot as plt
import numpy as np

#: Okabe-Ito colours, in the order the house style uses them.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Sequential colour map for weights and heatmaps (perceptually uniform).
CMAP = "viridis"


def use_style():
    """Set matplotlib's defaults for every figure in the course."""
    plt.rcParams.update({
        "axes.prop_cycle": plt.cycler(color=PALETTE),
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "font.size": 10,
        "legend.frameon": False,
        "image.cmap": CMAP,
    })


def seed_band(ax, x, Y, label=None, color=None, kind="sd", **kwargs):
    """Plot the mean over seeds of ``Y`` (shape ``(num_seeds, len(x))``) with a band.

    ``kind="sd"`` shades mean +- one standard deviation; ``"minmax"`` the range.
    Returns the line.
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[1] != len(x):
        raise ValueError(f"Y must have shape (num_seeds, {len(x)}), got {Y.shape}")
    mean = Y.mean(0)
    if kind == "sd":
        spread = Y.std(0, ddof=1) if len(Y) > 1 else np.zeros_like(mean)
        lo, hi = mean - spread, mean + spread
    elif kind == "minmax":
        lo, hi = Y.min(0), Y.max(0)
    else:
        raise ValueError(f"kind must be 'sd' or 'minmax', got {kind!r}")
    (line,) = ax.plot(x, mean, label=label, color=color, **kwargs)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def learning_curves(ax, histories, which="loss", kind="sd", logy=None, ylabel=None, colors=None):
    """Learning curves of several configurations, one line (mean over seeds) and band each.

    Args:
        histories: ``{name: History}`` as returned by :func:`attnlib.training.train`.
        which: ``"loss"`` (the training loss, log axis by default) or ``"eval"`` (what
            ``train``'s ``evaluate`` measured, e.g. held-out accuracy).
        kind: the band, as in :func:`seed_band` (``"sd"`` or ``"minmax"``).
        colors: optional ``{name: colour}``, to keep a configuration's colour across figures;
            by default the palette in the order of ``histories``.

    Returns ``ax``, with a legend and axis labels.
    """
    if which not in ("loss", "eval"):
        raise ValueError(f"which must be 'loss' or 'eval', got {which!r}")
    if not histories:
        raise ValueError("histories is empty")
    for i, (name, h) in enumerate(histories.items()):
        x, Y = (h.step, h.loss) if which == "loss" else (h.eval_step, h.eval)
        if Y is None:
            raise ValueError(f"{name!r} has no evaluations: train it with evaluate=...")
        color = colors[name] if colors is not None else PALETTE[i % len(PALETTE)]
        seed_band(ax, x, Y, label=name, color=color, kind=kind)
    if logy if logy is not None else which == "loss":
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or ("training loss" if which == "loss" else "held-out score"))
    ax.legend(fontsize=8)
    return ax


def bars_ci(ax, summary, label_key="config", value_label=None, colors=None, show_points=None):
    """Bars of ``summary`` rows (from :func:`attnlib.stats.summarise`) with 95 % CI whiskers.

    ``show_points``: optional list of per-seed rows ``{label_key: ..., "value": ...}``
    drawn as dots over the bars.
    """
    labels = [str(r[label_key]) for r in summary]
    means = np.array([r["mean"] for r in summary])
    err = np.array([0.0 if np.isnan(r["ci95"]) else r["ci95"] for r in summary])
    colors = colors or [PALETTE[i % len(PALETTE)] for i in range(len(summary))]
    x = np.arange(len(summary))
    ax.bar(x, means, yerr=err, color=colors, alpha=0.85, capsize=4)
    if show_points:
        for i, lab in enumerate(labels):
            pts = [p["value"] for p in show_points if str(p[label_key]) == lab]
            ax.plot(np.full(len(pts), i) + np.linspace(-0.15, 0.15, len(pts)), pts, "k.", ms=4)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    if value_label:
        ax.set_ylabel(value_label)
    return ax


def heatmap(ax, W, xlabels=None, ylabels=None, title=None, vmin=None, vmax=None, colorbar=True):
    """An attention-weight style heatmap of the 2-d array ``W`` (rows: queries, columns: keys)."""
    W = np.asarray(W, dtype=float)
    if W.ndim != 2:
        raise ValueError(f"heatmap needs a 2-d array, got shape {W.shape}")
    im = ax.imshow(W, cmap=CMAP, vmin=vmin, vmax=vmax, aspect="auto")
    ax.grid(False)
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def to_png(fig) -> bytes:
    """The figure as PNG bytes (closes it): for precomputed widget frames."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
