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

FLOPs count a multiply-add as 2 operations and leave out the softmax, the
biases and the scaling (lower-order terms, linear in the sizes).
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
