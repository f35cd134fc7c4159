"""Measurements for chapter 1: how nonlinear attention is, how fast tokens collapse, what a ReLU on the stream does.

``rank1_residual``        how far the tokens of a sequence are from a rank-1 matrix ``1 x^T``
``homogeneity_violation`` ``||f(aX) - a f(X)|| / ||a f(X)||``: 0 for a linear map
``additivity_violation``  ``||f(X+Y) - f(X) - f(Y)|| / ||f(X) + f(Y)||``: 0 for a linear map
``frozen_pattern``        multi-head attention with its weights computed once and then held fixed
``rank_collapse``         ``rank1_residual`` after each of ``depth`` random blocks
``stream_zero_fraction``  what a ReLU on the residual stream zeroes, layer by layer
``block_grad_norms``      gradient norm of each block's parameters for one batch
``mask_self_attention``   blocks whose attention cannot look at a token's own key
``additive_logistic_fit``, ``additive_search``, ``additive_bound``  what an additive read-out of a table can get

All tensors are batch-first: ``(batch, n, d_model)``.
"""
import torch
import torch.nn.functional as F

from .block import TransformerBlock
from .mha import merge_heads
from .training import loss_fn


def rank1_residual(X: torch.Tensor) -> torch.Tensor:
    """Relative distance of each sequence's tokens from a matrix whose rows are all equal.

    ``X``: ``(batch, n, d)``. Returns ``(batch,)``:
    ``||X - 1 x^T||_F / ||X||_F`` with ``x`` the mean token (the best choice of
    ``x`` in the Frobenius norm). This is the course's own measure, a relative,
    Frobenius-norm variant of the residual of Dong, Cordonnier & Loukas (2021), who
    use the composite ``l1,inf`` norm ``sqrt(||R||_1 ||R||_inf)`` of
    ``R = X - 1 x^T`` with ``x`` chosen to minimise it, unnormalised.
    0 means every token is the same vector: the sequence has collapsed to rank 1.
    """
    if not isinstance(X, torch.Tensor) or X.dim() != 3:
        raise ValueError(f"X must be a (batch, n, d) tensor, got {getattr(X, 'shape', type(X).__name__)}")
    res = X - X.mean(dim=1, keepdim=True)
    return res.flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1).clamp_min(1e-30)


def homogeneity_violation(f, X: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """``||f(alpha X) - alpha f(X)||_F / ||alpha f(X)||_F`` (a 0-d tensor); 0 for any linear ``f``."""
    with torch.no_grad():
        target = alpha * f(X)
        return (f(alpha * X) - target).norm() / target.norm()


def additivity_violation(f, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``||f(X + Y) - f(X) - f(Y)||_F / ||f(X) + f(Y)||_F`` (a 0-d tensor); 0 for any linear ``f``.

    ``X`` and ``Y`` must have the same shape (no broadcasting: ``X + Y`` would hide it).
    """
    if not (isinstance(X, torch.Tensor) and isinstance(Y, torch.Tensor)) or X.shape != Y.shape:
        raise ValueError(f"X and Y must be tensors of the same shape, got {getattr(X, 'shape', type(X).__name__)} "
                         f"and {getattr(Y, 'shape', type(Y).__name__)}")
    with torch.no_grad():
        target = f(X) + f(Y)
        return (f(X + Y) - target).norm() / target.norm()


def frozen_pattern(mha, X_pattern: torch.Tensor):
    """``Z -> concat_h(A_h V_h(Z)) W_O + b_O`` with ``A_h`` the weights ``mha`` computes on ``X_pattern``.

    ``V_h(Z)`` is what ``mha`` makes of ``Z`` for head h (:meth:`~attnlib.mha.MultiHeadAttention.head_values`):
    ``Z W_V + b_V``, then the layer's ``qkv_activation`` if it has one, each key/value head
    shared by its group of query heads. So ``g(X_pattern) == mha(X_pattern)``.

    ``X_pattern`` and ``Z``: ``(batch, n, d_model)``, the same shape. With the pattern held
    fixed and no ``qkv_activation`` the map is linear in ``Z`` (affine if the biases b_V, b_O
    are not 0); a ``qkv_activation`` on V stays a nonlinearity of ``Z``.
    """
    with torch.no_grad():
        _, A = mha(X_pattern, return_weights=True)  # (batch, h, n, n); checks X_pattern

    def g(Z):
        if not isinstance(Z, torch.Tensor) or Z.shape != X_pattern.shape:
            got = tuple(Z.shape) if isinstance(Z, torch.Tensor) else type(Z).__name__
            raise ValueError(f"Z must have the shape of X_pattern, {tuple(X_pattern.shape)}, got {got}")
        heads = A @ mha.head_values(Z)  # (batch, h, n, d_v)
        return mha.project(merge_heads(heads), mha.W_O, mha.b_O)

    return g


@torch.no_grad()
def rank_collapse(block_kwargs: dict, *, depth: int, seeds, batch: int = 4, n: int = 16,
                  d_model: int = 32, num_heads: int = 4, zero_mlp_bias: bool = False) -> torch.Tensor:
    """``rank1_residual`` of random inputs passed through ``depth`` freshly initialised blocks.

    ``block_kwargs`` go to :class:`~attnlib.block.TransformerBlock`. With ``zero_mlp_bias``
    the MLPs' two biases are set to 0 after initialisation (the weights are the same as
    without it, seed for seed). Returns ``(len(seeds), depth + 1)``: column 0 is the input,
    column ``l`` the output of block ``l``, each averaged over the ``batch`` sequences.
    """
    out = torch.empty(len(seeds), depth + 1)
    for i, s in enumerate(seeds):
        torch.manual_seed(int(s))
        x = torch.randn(batch, n, d_model, dtype=torch.float64)
        out[i, 0] = rank1_residual(x).mean()
        for layer in range(depth):
            block = TransformerBlock(d_model, num_heads, **block_kwargs).double()
            if zero_mlp_bias and block.mlp is not None:
                block.mlp.linear1.bias.zero_()
                block.mlp.linear2.bias.zero_()
            x = block(x)
            out[i, layer + 1] = rank1_residual(x).mean()
    return out


@torch.no_grad()
def stream_zero_fraction(model, X: torch.Tensor) -> list:
    """For a model whose blocks have ``stream_activation="relu"``: the fraction of
    stream coordinates that each ReLU sets to zero, in the order they run.

    A block applies its stream ReLU after each of its sub-layers (after the add, or after
    the LayerNorm in a post-LN block): after the attention and, if the block has an MLP,
    after the MLP. So there are two entries per block with ``mlp=True``, one with
    ``mlp=False``. Each entry is averaged over every coordinate of every token of ``X``.

    ``model`` has ``model.encoder.blocks``; ``X`` is what ``model`` takes.
    """
    fractions = []
    blocks = model.encoder.blocks
    saved = [b.stream_act for b in blocks]
    if not all(act is F.relu for act in saved):
        raise ValueError("stream_zero_fraction needs every block built with stream_activation='relu'; "
                         f"got stream activations {[getattr(a, '__name__', a) for a in saved]}")

    def recording(x):
        fractions.append((x < 0).float().mean().item())
        return torch.relu(x)

    try:
        for b in blocks:
            b.stream_act = recording
        model(X)
    finally:
        for b, act in zip(blocks, saved):
            b.stream_act = act
    return fractions


def block_grad_norms(model, X: torch.Tensor, y: torch.Tensor) -> list:
    """Gradient norm of the loss with respect to each block's parameters (one entry per block)."""
    model.zero_grad(set_to_none=True)
    loss_fn(model(X), y).backward()
    norms = []
    for b in model.encoder.blocks:
        sq = sum(p.grad.pow(2).sum() for p in b.parameters() if p.grad is not None)
        norms.append(float(sq) ** 0.5)
    model.zero_grad(set_to_none=True)
    return norms


# ----------------------------------------------------------------------------------------------
# Tasks and models for "which part supplies the per-token nonlinearity" (chapter 1)
# ----------------------------------------------------------------------------------------------

def xor_tokens(num_examples: int, n: int, *, noise: float = 0.3, seed: int = 0):
    """Per-token XOR: every token is two features ``±1 + noise``; its label is the XOR of their signs.

    Tokens are independent, so nothing in the rest of the sequence helps: a model must bend each
    token's own features. Returns ``(X, y)``: ``X`` float ``(num_examples, n, 2)``, ``y`` long
    ``(num_examples, n)`` in {0, 1}. A linear (affine) read-out of one token scores at most about
    0.75: of the four clusters it can separate three.
    """
    if num_examples < 1 or n < 1:
        raise ValueError(f"need num_examples >= 1 and n >= 1, got {num_examples}, {n}")
    g = torch.Generator().manual_seed(int(seed))
    signs = torch.randint(0, 2, (num_examples, n, 2), generator=g) * 2 - 1  # (N, n, 2) in {-1, +1}
    X = signs.float() + noise * torch.randn(num_examples, n, 2, generator=g)
    y = (signs[..., 0] != signs[..., 1]).long()  # (N, n)
    return X, y


def bigram_table(vocab_size: int, *, seed: int = 0) -> torch.Tensor:
    """A fixed random binary table ``T`` of shape ``(vocab_size, vocab_size)``, half ones (rounded)."""
    g = torch.Generator().manual_seed(int(seed))
    flat = torch.zeros(vocab_size * vocab_size, dtype=torch.long)
    flat[torch.randperm(vocab_size * vocab_size, generator=g)[: vocab_size * vocab_size // 2]] = 1
    return flat.view(vocab_size, vocab_size)


def bigram_lookup(num_examples: int, n: int, table: torch.Tensor, *, seed: int = 0):
    """Bigram lookup: the label of position ``i >= 1`` is ``T[tok_{i-1}, tok_i]``; position 0 has none.

    Returns ``(X, y)``: token ids ``(num_examples, n)`` drawn uniformly, labels ``(num_examples, n)``
    with ``IGNORE`` at position 0. A model must fetch the previous token (attention) and then
    look up an arbitrary table of the pair, which an additive code of the two tokens cannot
    represent (see :func:`additive_bound`).
    """
    from .tasks import IGNORE
    V = table.shape[0]
    if table.shape != (V, V):
        raise ValueError(f"table must be square, got {tuple(table.shape)}")
    if n < 2:
        raise ValueError(f"need n >= 2 (position 0 has no label), got {n}")
    g = torch.Generator().manual_seed(int(seed))
    X = torch.randint(0, V, (num_examples, n), generator=g)
    y = torch.full_like(X, IGNORE)
    y[:, 1:] = table[X[:, :-1], X[:, 1:]]
    return X, y


def additive_logistic_fit(table: torch.Tensor, *, steps: int = 500) -> float:
    """0-1 accuracy of the cross-entropy-optimal *additive* logistic fit ``sigmoid(u_a + v_b + c)`` to ``T[a, b]``.

    Every pair ``(a, b)`` counts once (the tokens are uniform). Attention that copies the previous
    token into the current one writes a sum of a code of ``a`` and a code of ``b``; a linear
    read-out of such a sum is additive in this sense, and trained by cross-entropy it tends to this
    fit. It is *not* the best 0-1 accuracy of an additive read-out (see :func:`additive_search` and
    :func:`additive_bound`): cross-entropy and 0-1 accuracy have different optima. Fitted by
    full-batch L-BFGS in float64 (tiny ridge penalty), so the result is deterministic.
    """
    V = table.shape[0]
    t = table.double().flatten()
    u = torch.zeros(V, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(V, dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([u, v, c], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logit = (u[:, None] + v[None, :] + c).flatten()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, t) + 1e-4 * (u.pow(2).sum() + v.pow(2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = ((u[:, None] + v[None, :] + c).flatten() > 0).double()
    return float((pred == t).double().mean())


def _best_thresholds(T, col_keys):
    """For fixed column keys ``v_b``, give each row the threshold that maximises its agreement with ``T``.

    Returns row keys ``u_a`` (predict 1 iff ``u_a + v_b > 0``) and the resulting accuracy.
    """
    import numpy as np
    order = np.argsort(col_keys, kind="stable")
    Ts = T[:, order]  # columns sorted by key, ascending
    ones_from = np.concatenate([np.cumsum(Ts[:, ::-1], 1)[:, ::-1], np.zeros((len(T), 1))], 1)  # 1s at sorted positions >= k
    zeros_before = np.concatenate([np.zeros((len(T), 1)), np.cumsum(1 - Ts, 1)], 1)  # 0s at sorted positions < k
    score = ones_from + zeros_before  # (rows, W + 1): agreement if the row predicts 1 from sorted position k on
    k = score.argmax(1)
    keys = np.sort(col_keys)
    edges = np.concatenate([[keys[0] - 1.0], keys, [keys[-1] + 1.0]])
    threshold = (edges[k] + edges[k + 1]) / 2  # between the keys of sorted positions k - 1 and k
    return -threshold, float(score.max(1).sum() / T.size)


def additive_search(table: torch.Tensor, *, restarts: int = 50, seed: int = 0, return_keys: bool = False):
    """0-1 accuracy of the best additive read-out ``[u_a + v_b > 0]`` of ``T[a, b]`` that a search finds.

    Alternates exact best responses: for fixed column keys each row takes its best threshold, then
    for fixed row keys each column does, until no step improves; from the column means and from
    ``restarts - 1`` random starts (a fixed generator, so deterministic). Keys are jittered by a
    tiny amount before each step, so that no two are equal (a threshold cannot split tied keys),
    and the accuracy reported is the one the keys ``u, v`` actually reach. So it is a *lower*
    bound on the best additive 0-1 accuracy; with :func:`additive_bound` it brackets that optimum.
    With ``return_keys=True`` it returns ``(accuracy, u, v)``: arrays of shape ``(V,)`` and ``(W,)``.
    """
    import numpy as np
    T = np.asarray(table, dtype=float)
    rng = np.random.default_rng(seed)

    def accuracy_of(u, v):  # what the read-out [u_a + v_b > 0] gets right
        return float(((u[:, None] + v[None, :] > 0) == (T > 0.5)).mean())

    best, keys = 0.0, None
    for r in range(restarts):
        v = T.mean(0) if r == 0 else rng.standard_normal(T.shape[1])
        acc = -1.0
        while True:
            v = v + 1e-9 * rng.standard_normal(v.shape)
            u, _ = _best_thresholds(T, v)
            u = u + 1e-9 * rng.standard_normal(u.shape)
            v, new = _best_thresholds(T.T, u)
            got = accuracy_of(u, v)
            if got > best:
                best, keys = got, (u, v)
            if new <= acc + 1e-12:
                break
            acc = new
    return (best, *keys) if return_keys else best


def additive_bound(table: torch.Tensor) -> float:
    """An *upper* bound on the 0-1 accuracy of any additive read-out ``[u_a + v_b + c > 0]`` of ``T[a, b]``.

    A 2x2 sub-table with ``T[a, b] = T[a', b'] = 1`` and ``T[a, b'] = T[a', b] = 0`` (a crossing)
    cannot be matched by an additive read-out: the two 1s need ``u_a + v_b + u_a' + v_b' > -2c`` and
    the two 0s need the same sum ``<= -2c``. So every crossing forces at least one error, and
    crossings with no cell in common force that many errors. The largest set of disjoint
    crossings is found by a small integer program (set packing, scipy's HiGHS ``milp``); the
    bound is ``1 - (its size) / T.size``. Any set of disjoint crossings gives a valid bound; if
    the solver stops short of the optimum, its best set is used.
    """
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix
    T = np.asarray(table)
    V, W = T.shape
    a, a2, b, b2 = np.meshgrid(np.arange(V), np.arange(V), np.arange(W), np.arange(W), indexing="ij")
    keep = (a < a2) & (b != b2) & (T[a, b] == 1) & (T[a2, b2] == 1) & (T[a, b2] == 0) & (T[a2, b] == 0)
    cells = np.stack([a * W + b, a2 * W + b2, a * W + b2, a2 * W + b], -1)[keep]  # (crossings, 4)
    m = len(cells)
    if m == 0:
        return 1.0
    A = coo_matrix((np.ones(4 * m), (cells.ravel(), np.repeat(np.arange(m), 4))), shape=(T.size, m))
    res = milp(-np.ones(m), constraints=LinearConstraint(A, 0, 1), integrality=np.ones(m), bounds=Bounds(0, 1))
    if res.x is None:
        raise RuntimeError(f"the packing program found no solution: {res.message}")
    chosen = np.round(res.x) > 0
    assert (np.bincount(cells[chosen].ravel(), minlength=T.size) <= 1).all()  # disjoint: a valid bound
    return 1.0 - int(chosen.sum()) / T.size


def relu_after_norms(model):
    """Turn every pre-LN block of ``model`` into a *pre-activation* block: ``x + f(ReLU(LN(x)))``.

    The learner's proposal after He et al.'s full pre-activation unit (norm, then ReLU, then the
    weights, then the add): each sub-layer reads ``ReLU(LN(x))`` instead of ``LN(x)``, and the
    stream itself is left untouched. ``model`` has ``model.encoder.blocks`` with ``norm="pre"``;
    it is changed in place and returned.
    """
    for b in model.encoder.blocks:
        if b.norm != "pre":
            raise ValueError(f"relu_after_norms needs pre-LN blocks, got norm={b.norm!r}")
        b.ln1 = torch.nn.Sequential(b.ln1, torch.nn.ReLU())
        if b.ln2 is not None:
            b.ln2 = torch.nn.Sequential(b.ln2, torch.nn.ReLU())
    return model


class _NoSelfAttentionBlock(TransformerBlock):
    """A TransformerBlock whose attention masks the diagonal: query i never sees key i."""

    def _attend(self, x, key_padding_mask, causal):
        eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)  # True = not allowed
        y = self.attn(x, key_padding_mask=key_padding_mask, causal=causal, attn_mask=eye)
        return y if self.attn_act is None else self.attn_act(y)


def mask_self_attention(model):
    """Stop every block of ``model`` from attending to a token's own key (``attn_mask = eye``).

    Token ``i``'s attention output is then a mixture of the *other* tokens' values only, with
    weights that still depend on ``x_i`` through its query. Sequences need at least 2 tokens
    (with one, every key is masked). ``model`` has ``model.encoder.blocks``; it is changed in
    place (the blocks keep their weights) and returned.
    """
    for b in model.encoder.blocks:
        if not isinstance(b, TransformerBlock):
            raise TypeError(f"expected TransformerBlock, got {type(b).__name__}")
        b.__class__ = _NoSelfAttentionBlock
    return model


def draw_residual_unit(ax, branch, after=(), *, title="", note="", color="#4477aa"):
    """Draw one residual unit as a flow chart: input at the bottom, the skip on the left,
    the ``branch`` boxes (bottom to top) on the right, the addition, then the ``after``
    boxes on the path every later unit reads (drawn in red: they touch the stream).

    ``branch`` and ``after``: lists of short labels. Used for the figure that sets the
    block variants beside He et al.'s residual units.
    """
    from matplotlib.patches import Circle, FancyBboxPatch
    ax.set_xlim(0, 1)
    nb, na = len(branch), len(after)
    top = 1.6 + nb + na
    ax.set_ylim(-0.4, top + 0.2)
    ax.axis("off")

    def box(x, y, text, c):
        ax.add_patch(FancyBboxPatch((x - 0.3, y - 0.28), 0.6, 0.56, boxstyle="round,pad=0.02",
                                    fc=c, ec="k", lw=0.8, alpha=0.9))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, color="white" if c != "white" else "k")

    def arrow(x0, y0, x1, y1):
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", lw=0.8, color="k",
                                                              shrinkA=0, shrinkB=0))

    ax.text(0.5, -0.25, "x", ha="center", va="center", fontsize=9)
    add_y = 1.0 + nb
    # skip: straight up on the left, into the addition
    ax.plot([0.5, 0.12, 0.12], [-0.1, 0.25, add_y], color="k", lw=0.8)
    arrow(0.12, add_y, 0.42, add_y)
    # branch on the right
    ax.plot([0.5, 0.6], [-0.1, 0.25], color="k", lw=0.8)
    prev = 0.25
    for i, label in enumerate(branch):
        yi = 0.9 + i
        arrow(0.6, prev, 0.6, yi - 0.3)
        box(0.6, yi, label, color)
        prev = yi + 0.28
    arrow(0.6, prev, 0.54, add_y - 0.08)
    ax.add_patch(Circle((0.5, add_y), 0.08, fc="white", ec="k", lw=0.8))
    ax.text(0.5, add_y, "+", ha="center", va="center", fontsize=9)
    prev = add_y + 0.08
    for i, label in enumerate(after):
        yi = add_y + 0.8 + i
        arrow(0.5, prev, 0.5, yi - 0.3)
        box(0.5, yi, label, "#cc3311")
        prev = yi + 0.28
    arrow(0.5, prev, 0.5, top - 0.1)
    ax.set_title(title, fontsize=8.5)
    if note:
        ax.text(0.5, top + 0.05, note, ha="center", va="bottom", fontsize=7.5)
    return ax
