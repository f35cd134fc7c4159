"""Shapes, parameter counts and FLOPs of one multi-head attention layer, as plain functions.

Everything here is arithmetic on the sizes; nothing builds a tensor. The
notebook of chapter 2 and ``tests/test_counting.py`` check the functions against a
real :class:`~attnlib.mha.MultiHeadAttention` (shapes of its outputs,
``sum(p.numel())``, and FLOPs counted by ``torch.utils.flop_counter``), so the
formulas below are tested, not just written down.

Sizes, named as in Vaswani et al. (2017)::

    batch          sequences in the batch
    n_q, n_k       number of queries and of keys/values (equal in self-attention)
    d_model        width of the residual stream
    num_heads      h, the number of query heads
    num_kv_heads   key/value heads (h: multi-head; 1: multi-query; in between: grouped-query)
    d_k = d_v      d_model / h

:func:`mha_flops` counts the matrix products, a multiply-add as 2 operations; it leaves out
the biases and the element-wise work on the score matrices. That work, scaling, masking and
softmax, is counted apart by :func:`mha_elementwise_ops`: unlike the products, it grows
with ``h``, as ``5 h n_q n_k`` against the ``4 n_q n_k d_model`` of the two attention products.

:func:`shapes_diagram` draws the shapes (matrices cut into heads) from :func:`mha_shapes`.
"""
from html import escape


def _sizes(d_model, num_heads, num_kv_heads):
    if not all(isinstance(v, int) and v >= 1 for v in (d_model, num_heads)):
        raise ValueError(f"d_model and num_heads must be positive integers, got {d_model!r}, {num_heads!r}")
    if d_model % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if not isinstance(num_kv_heads, int) or num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads ({num_kv_heads!r}) must be a positive divisor of num_heads ({num_heads})")
    return d_model // num_heads, num_kv_heads


def mha_parameter_count(d_model: int, num_heads: int, *, num_kv_heads: int | None = None,
                        bias: bool = True) -> dict:
    """Parameters of one attention layer, by matrix.

    Returns ``{"W_Q", "W_K", "W_V", "W_O", "biases", "total"}``. With
    ``num_kv_heads == num_heads`` the total is ``4 d_model^2 + 4 d_model``
    (``4 d_model^2`` without biases), whatever ``num_heads`` is; fewer K/V heads
    shrink ``W_K`` and ``W_V`` to ``d_model x num_kv_heads d_k`` each.
    """
    d_k, kv = _sizes(d_model, num_heads, num_kv_heads)
    counts = {
        "W_Q": d_model * num_heads * d_k,
        "W_K": d_model * kv * d_k,
        "W_V": d_model * kv * d_k,
        "W_O": num_heads * d_k * d_model,
    }
    counts["biases"] = (num_heads * d_k + 2 * kv * d_k + d_model) if bias else 0
    counts["total"] = sum(counts.values())
    return counts


def mha_flops(d_model: int, num_heads: int, n_q: int, n_k: int | None = None, *, batch: int = 1,
              num_kv_heads: int | None = None) -> dict:
    """Floating-point operations of one forward pass (multiply-add = 2).

    Returns ``{"Q projection", "K and V projections", "scores Q K^T",
    "weights x V", "output W_O", "total"}``:

    - Q projection: ``2 batch n_q d_model (h d_k)``
    - K and V projections: ``2 * 2 batch n_k d_model (h_kv d_k)``
    - scores: ``2 batch h n_q n_k d_k`` (``= 2 batch n_q n_k d_model``, independent of h)
    - weights x V: ``2 batch h n_q n_k d_v`` (idem)
    - output: ``2 batch n_q (h d_v) d_model``
    """
    d_k, kv = _sizes(d_model, num_heads, num_kv_heads)
    n_k = n_q if n_k is None else n_k
    f = {
        "Q projection": 2 * batch * n_q * d_model * num_heads * d_k,
        "K and V projections": 2 * 2 * batch * n_k * d_model * kv * d_k,
        "scores Q K^T": 2 * batch * num_heads * n_q * n_k * d_k,
        "weights x V": 2 * batch * num_heads * n_q * n_k * d_k,
        "output W_O": 2 * batch * n_q * num_heads * d_k * d_model,
    }
    f["total"] = sum(f.values())
    return f


def mha_elementwise_ops(d_model: int, num_heads: int, n_q: int, n_k: int | None = None, *,
                        batch: int = 1, mask: bool = True) -> dict:
    """Element-wise operations on the score matrices of one forward pass, by a stated convention.

    Every head has its own ``n_q x n_k`` scores, so this work grows with ``h`` (the products
    of :func:`mha_flops` do not). Per score: 1 for the scaling by ``1/sqrt(d_k)``, 1 for adding a
    mask (``mask=True``), and 3 for the softmax (an exponential, its share of the row sum, a
    division); implementations differ by a small factor (e.g. subtracting the row maximum).

    Returns ``{"scale", "mask", "softmax", "total", "share of attention products"}``, the last
    being ``total / (scores + weights x V products)`` ``= 5 h / (4 d_model)`` with a mask.
    """
    _sizes(d_model, num_heads, None)
    n_k = n_q if n_k is None else n_k
    scores = batch * num_heads * n_q * n_k
    ops = {"scale": scores, "mask": scores if mask else 0, "softmax": 3 * scores}
    ops["total"] = sum(ops.values())
    products = mha_flops(d_model, num_heads, n_q, n_k, batch=batch)
    ops["share of attention products"] = ops["total"] / (products["scores Q K^T"] + products["weights x V"])
    return ops


def mha_shapes(batch: int, n_q: int, d_model: int, num_heads: int, *, n_k: int | None = None,
               num_kv_heads: int | None = None) -> list:
    """Every intermediate shape of a batch-first multi-head attention layer.

    Returns a list of ``(stage, shape, axes)`` triples, in the order the
    forward pass computes them, ending with the output ``(batch, n_q, d_model)``.
    """
    d_k, kv = _sizes(d_model, num_heads, num_kv_heads)
    n_k = n_q if n_k is None else n_k
    h = num_heads
    rows = [
        ("query input X_q", (batch, n_q, d_model), "(batch, n_q, d_model)"),
        ("key/value input X_kv", (batch, n_k, d_model), "(batch, n_k, d_model)"),
        ("Q = X_q W_Q", (batch, n_q, h * d_k), "(batch, n_q, h·d_k)"),
        ("K = X_kv W_K, V = X_kv W_V", (batch, n_k, kv * d_k), "(batch, n_k, h_kv·d_k)"),
        ("Q viewed as heads", (batch, n_q, h, d_k), "(batch, n_q, h, d_k)"),
        ("Q heads first (transpose)", (batch, h, n_q, d_k), "(batch, h, n_q, d_k)"),
        ("K, V heads first", (batch, kv, n_k, d_k), "(batch, h_kv, n_k, d_k)"),
    ]
    if kv != h:
        rows.append(("K, V repeated for each query head", (batch, h, n_k, d_k), "(batch, h, n_k, d_k)"))
    rows += [
        ("scores Q K^T / sqrt(d_k)", (batch, h, n_q, n_k), "(batch, h, n_q, n_k)"),
        ("weights softmax(scores)", (batch, h, n_q, n_k), "(batch, h, n_q, n_k)"),
        ("heads = weights V", (batch, h, n_q, d_k), "(batch, h, n_q, d_v)"),
        ("concat(heads)", (batch, n_q, h * d_k), "(batch, n_q, h·d_v)"),
        ("output = concat W_O", (batch, n_q, d_model), "(batch, n_q, d_model)"),
    ]
    return rows


def _fmt(x: int) -> str:
    return f"{x:,}".replace(",", "\u2009")  # thin space as thousands separator


def shapes_table_html(batch: int, n: int, d_model: int, num_heads: int, *,
                      num_kv_heads: int | None = None, n_k: int | None = None) -> str:
    """An HTML table of every shape, the parameter count and the FLOPs: one explorer frame."""
    d_k, kv = _sizes(d_model, num_heads, num_kv_heads)
    kind = "multi-head" if kv == num_heads else ("multi-query" if kv == 1 else "grouped-query")
    p = mha_parameter_count(d_model, num_heads, num_kv_heads=kv)
    f = mha_flops(d_model, num_heads, n, n_k, batch=batch, num_kv_heads=kv)
    cell = 'style="padding:1px 8px;text-align:{}"'
    lines = [f"<p><b>batch={batch}, n={n}, d_model={d_model}, h={num_heads}, h_kv={kv}</b> "
             f"({escape(kind)}; d_k = d_v = {d_k})</p>",
             '<table style="border-collapse:collapse;font-family:monospace;font-size:90%">',
             f"<tr><th {cell.format('left')}>stage</th><th {cell.format('left')}>axes</th>"
             f"<th {cell.format('right')}>shape</th></tr>"]
    for stage, shape, axes in mha_shapes(batch, n, d_model, num_heads, n_k=n_k, num_kv_heads=kv):
        lines.append(f"<tr><td {cell.format('left')}>{escape(stage)}</td><td {cell.format('left')}>"
                     f"{escape(axes)}</td><td {cell.format('right')}>{shape}</td></tr>")
    lines.append("</table>")
    lines.append('<table style="border-collapse:collapse;font-family:monospace;font-size:90%;margin-top:6px">')
    for key in ("W_Q", "W_K", "W_V", "W_O", "biases", "total"):
        lines.append(f"<tr><td {cell.format('left')}>parameters {escape(key)}</td>"
                     f"<td {cell.format('right')}>{_fmt(p[key])}</td></tr>")
    for key, v in f.items():
        lines.append(f"<tr><td {cell.format('left')}>FLOPs {escape(key)}</td>"
                     f"<td {cell.format('right')}>{_fmt(v)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _grid(ax, x0, y0, cols, rows, colors, *, label=None, sub=None, col_blocks=None, row_blocks=None):
    """A ``rows x cols`` matrix drawn as a grid of cells, top-left corner at (x0, y0) (y grows down).

    ``colors``: one colour for the whole matrix, or a list of ``h`` colours for ``h`` equal
    column blocks (``col_blocks``) or row blocks (``row_blocks``).
    """
    from matplotlib.patches import Rectangle

    blocks = col_blocks or row_blocks or 1
    for k in range(blocks):
        c = colors[k] if blocks > 1 else colors
        if col_blocks:
            w = cols // blocks
            ax.add_patch(Rectangle((x0 + k * w, y0), w, rows, facecolor=c, edgecolor="black", lw=1.2))
        elif row_blocks:
            hgt = rows // blocks
            ax.add_patch(Rectangle((x0, y0 + k * hgt), cols, hgt, facecolor=c, edgecolor="black", lw=1.2))
        else:
            ax.add_patch(Rectangle((x0, y0), cols, rows, facecolor=c, edgecolor="black", lw=1.2))
    for i in range(1, cols):  # faint cell lines
        ax.plot([x0 + i, x0 + i], [y0, y0 + rows], color="white", lw=0.4)
    for j in range(1, rows):
        ax.plot([x0, x0 + cols], [y0 + j, y0 + j], color="white", lw=0.4)
    if label:
        ax.text(x0 + cols / 2, y0 - 0.6, label, ha="center", va="bottom", fontsize=9)
    if sub:
        ax.text(x0 + cols / 2, y0 + rows + 0.5, sub, ha="center", va="top", fontsize=8, color="#333333")


def shapes_diagram(n: int = 4, d_model: int = 12, num_heads: int = 3, *, colors=None):
    """Draw how multi-head attention cuts its matrices into heads; returns a matplotlib Figure.

    Top row: ``X W_Q = Q``, with ``W_Q``'s column blocks ``W_Q^{(i)}`` in one colour per head;
    ``Q`` viewed as ``(n, h, d_k)`` and transposed to ``(h, n, d_k)``: one ``n x d_k`` matrix
    ``Q^{(i)} = X W_Q^{(i)}`` per head. Bottom row: the heads' ``n x d_v`` outputs, their
    concatenation ``(n, h d_v)`` times ``W_O`` with its row blocks ``W_O^{(i)}``, which is
    ``sum_i head_i W_O^{(i)}``: ``(n, d_model)``. Every size is read from :func:`mha_shapes`
    (batch 1), so the picture cannot disagree with the formulas the tests check.
    """
    import matplotlib.pyplot as plt

    d_k, _ = _sizes(d_model, num_heads, None)
    h = num_heads
    shapes = {stage: shape for stage, shape, _ in mha_shapes(1, n, d_model, h)}
    q_cols = shapes["Q = X_q W_Q"][2]
    _, _, viewed_h, viewed_dk = shapes["Q viewed as heads"]
    _, first_h, first_n, first_dk = shapes["Q heads first (transpose)"]
    _, heads_h, heads_n, d_v = shapes["heads = weights V"]
    concat_cols = shapes["concat(heads)"][2]
    out_cols = shapes["output = concat W_O"][2]
    if colors is None:
        from matplotlib.colors import to_hex

        cmap = plt.get_cmap("tab10")
        colors = [to_hex(cmap(i % 10)) for i in range(h)]
    grey = "#bbbbbb"
    gap = 3.6
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.2), gridspec_kw={"height_ratios": [1.25, 1]})
    for ax in (top, bottom):
        ax.set_aspect("equal")
        ax.axis("off")
        ax.invert_yaxis()

    def op(ax, x, y, s):
        ax.text(x, y, s, ha="center", va="center", fontsize=13)

    # top row: project, view, transpose
    x = 0
    _grid(top, x, 0, d_model, n, grey, label="X", sub=f"{n} × {d_model}\n(n × d_model)")
    x += d_model + 1.2
    op(top, x - 0.6, n / 2, "·")
    _grid(top, x, 0, q_cols, d_model, colors, col_blocks=h, label="$W_Q$",
          sub=f"{d_model} × {q_cols}: {h} column blocks\n$W_Q^{{(i)}}$ of {d_model} × {d_k}")
    x += q_cols + 1.2
    op(top, x - 0.6, n / 2, "=")
    _grid(top, x, 0, q_cols, n, colors, col_blocks=h, label="Q", sub=f"{n} × {q_cols}\n(n × h·d_k)")
    x += q_cols + gap
    op(top, x - gap / 2, n / 2, "→")
    top.text(x - gap / 2, n / 2 + 0.7, "view", ha="center", va="top", fontsize=8)
    for i in range(viewed_h):  # (n, h, d_k): the same numbers, the last axis cut in h
        _grid(top, x + i * (viewed_dk + 0.4), 0, viewed_dk, n, colors[i])
    top.text(x + (viewed_h * (viewed_dk + 0.4)) / 2, -0.6, "Q viewed", ha="center", va="bottom", fontsize=9)
    top.text(x + (viewed_h * (viewed_dk + 0.4)) / 2, n + 0.5, f"({n}, {viewed_h}, {viewed_dk})\n(n, h, d_k)",
             ha="center", va="top", fontsize=8, color="#333333")
    x += viewed_h * (viewed_dk + 0.4) + gap
    op(top, x - gap / 2, n / 2, "→")
    top.text(x - gap / 2, n / 2 + 0.7, "transpose", ha="center", va="top", fontsize=8)
    for i in range(first_h):  # (h, n, d_k): one n x d_k matrix per head
        _grid(top, x, i * (first_n + 1.3), first_dk, first_n, colors[i])
        top.text(x + first_dk + 0.5, i * (first_n + 1.3) + first_n / 2,
                 f"$Q^{{({i + 1})}} = X W_Q^{{({i + 1})}}$\n{first_n} × {first_dk}", va="center", fontsize=8)
    top.text(x + first_dk / 2, -0.6, f"({first_h}, {first_n}, {first_dk})", ha="center", va="bottom", fontsize=9)
    top.set_xlim(-0.5, x + first_dk + 7)
    top.set_ylim(max(d_model, first_h * (first_n + 1.3)) + 2.5, -2)

    # bottom row: heads, concat, W_O's row blocks
    x = 0
    for i in range(heads_h):
        _grid(bottom, x, 0, d_v, heads_n, colors[i], label=f"head$_{{{i + 1}}}$")
        x += d_v + 0.6
    bottom.text(x / 2, heads_n + 0.5, f"{heads_h} outputs of {heads_n} × {d_v}\n(n × d_v each)",
                ha="center", va="top", fontsize=8, color="#333333")
    x += gap - 0.6
    op(bottom, x - gap / 2, heads_n / 2, "→")
    bottom.text(x - gap / 2, heads_n / 2 + 0.7, "concat", ha="center", va="top", fontsize=8)
    _grid(bottom, x, 0, concat_cols, heads_n, colors, col_blocks=h, label="concat",
          sub=f"{heads_n} × {concat_cols}\n(n × h·d_v)")
    x += concat_cols + 1.2
    op(bottom, x - 0.6, heads_n / 2, "·")
    _grid(bottom, x, 0, out_cols, concat_cols, colors, row_blocks=h, label="$W_O$",
          sub=f"{concat_cols} × {out_cols}: {h} row blocks\n$W_O^{{(i)}}$ of {d_v} × {out_cols}")
    x += out_cols + 1.2
    op(bottom, x - 0.6, heads_n / 2, "=")
    _grid(bottom, x, 0, out_cols, heads_n, grey, label="output",
          sub=f"{heads_n} × {out_cols}\n(n × d_model)")
    bottom.text(x + out_cols + 0.8, heads_n / 2, r"$=\sum_i \mathrm{head}_i\, W_O^{(i)}$", va="center", fontsize=11)
    bottom.set_xlim(-0.5, top.get_xlim()[1])
    bottom.set_ylim(concat_cols + 2.5, -2)
    fig.tight_layout()
    return fig
