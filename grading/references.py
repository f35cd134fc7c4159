"""What each auto-graded exercise must compute: the hidden tests' references, kept out of attnlib.

One :class:`Reference` per checker of ``attnlib/checks`` (the checker a chapter's checker cell
calls names the exercise's reference here). ``grading/assignment.py`` runs the reference on
small hidden inputs when it makes an assignment and writes inputs and outputs, as numbers,
into the graded cell (``grading/hidden.py`` reads them). Students install attnlib, not this
folder, so nothing they can import holds these references or the hidden numbers.

A chapter that adds a checked exercise adds its checker's entry to :data:`REFERENCES`;
``make assignment`` and ``tests/test_grading.py`` stop with a message naming a checker that
has none.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

#: Seconds of CPU each call of an answer may take in a hidden test (the references take milliseconds).
TIME_LIMIT = 1.0

#: torch's own implementations of attention: C functions (by name) and Python functions
#: (``[dotted path, qualified name]``) that an answer to an attention exercise may not call.
SDPA = ("scaled_dot_product_attention",)
TORCH_MHA = (["torch.nn.MultiheadAttention.forward", "MultiheadAttention.forward"],
             ["torch.nn.functional.multi_head_attention_forward", "multi_head_attention_forward"])


@dataclass
class Reference:
    """What an exercise's function must return, and on what it is tested.

    Args:
        function: the reference implementation.
        inputs: ``torch.Generator -> tuple`` of arguments: tensors, ints, or an
            ``nn.MultiheadAttention`` (small, so that the numbers fit in a notebook cell).
        output: ``"tensor"``, ``"pair"`` (of tensors) or ``"int"``.
        trials: how many inputs.
        forbid_c, forbid_py: torch's functions that compute the answer (see :data:`SDPA`).
    """
    function: Callable
    inputs: Callable
    output: str = "tensor"
    trials: int = 3
    atol: float = 1e-5
    rtol: float = 1e-4
    forbid_c: tuple = ()
    forbid_py: tuple = ()
    cases: list = field(default_factory=list)  # fixed arguments instead of `inputs` (counting)


def _randint(g, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=g))


# ----------------------------------------------------------------------------- chapter 0
def attention(Q, K, V):
    return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V


def _qkv(g, n_q=None, scale=1.0):
    n_k = _randint(g, 4, 7)
    n_q = n_k if n_q is None else n_q
    return (torch.randn(2, n_q, 4, generator=g) * scale, torch.randn(2, n_k, 4, generator=g) * scale,
            torch.randn(2, n_k, 3, generator=g))


# ----------------------------------------------------------------------------- chapter 1
def rank1_residual(X):
    centred = X - X.mean(dim=1, keepdim=True)
    return centred.flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1)


def _tokens(g):
    n = _randint(g, 4, 7)
    return (torch.randn(3, n, 5, generator=g) + 2.0 * torch.randn(3, 1, 5, generator=g),)


# ----------------------------------------------------------------------------- chapter 2
def split_heads(x, num_heads):
    b, n, f = x.shape
    return x.reshape(b, n, num_heads, f // num_heads).transpose(1, 2)


def merge_heads(heads):
    b, h, n, d = heads.shape
    return heads.transpose(1, 2).reshape(b, n, h * d)


def _split_inputs(g):
    h, d_k = _randint(g, 2, 3), _randint(g, 2, 3)
    n = _randint(g, 3, 5)
    n += n == h
    return torch.randn(_randint(g, 1, 2), n, h * d_k, generator=g), h


def _merge_inputs(g):
    x, h = _split_inputs(g)
    return (split_heads(x, h).contiguous(),)


def mha_from_heads(x, mha):
    return mha(x, x, x, need_weights=False)[0]


def _mha_inputs(g):
    d_model, h = 8, [2, 4][_randint(g, 0, 1)]
    mha = torch.nn.MultiheadAttention(d_model, h, batch_first=True)
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(d_model) + 0.1 * torch.randn(p.shape, generator=g))
    return torch.randn(_randint(g, 1, 2), _randint(g, 3, 4), d_model, generator=g), mha.eval()


def parameter_count(d_model, num_heads, num_kv_heads):
    d_k = d_model // num_heads
    return 2 * (d_model * d_model + d_model) + 2 * (d_model * num_kv_heads * d_k + num_kv_heads * d_k)


# ----------------------------------------------------------------------------- chapter 3
def gauge(W_V_h, W_O_h, M):
    return W_V_h @ M, torch.linalg.solve(M, W_O_h)


def _gauge_inputs(g):
    d_model, d_k = 6, _randint(g, 2, 3)
    M = torch.randn(d_k, d_k, generator=g, dtype=torch.float64) + 3 * torch.eye(d_k, dtype=torch.float64)
    return (torch.randn(d_model, d_k, generator=g, dtype=torch.float64),
            torch.randn(d_k, d_model, generator=g, dtype=torch.float64), M)


def fuse(W_O, b_O, W_1, b_1):
    return W_O @ W_1, b_O @ W_1 + b_1


def _fuse_inputs(g):
    d = _randint(g, 4, 5)
    return (torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64),
            torch.randn(d, 2 * d, generator=g, dtype=torch.float64),
            torch.randn(2 * d, generator=g, dtype=torch.float64))


# ----------------------------------------------------------------------------- chapter 4
def relu_attention(Q, K, V):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    return torch.relu(scores) / K.shape[-2] @ V


def sigmoid_attention(Q, K, V):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    return torch.sigmoid(scores - math.log(K.shape[-2])) @ V


def causal_linear_attention(Q, K, V):
    phi_q, phi_k = F.elu(Q) + 1, F.elu(K) + 1
    mask = torch.ones(Q.shape[1], K.shape[1], dtype=Q.dtype).tril()
    num = torch.einsum("bid,bjd,bje,ij->bie", phi_q, phi_k, V, mask)
    den = torch.einsum("bid,bjd,ij->bi", phi_q, phi_k, mask)
    return num / den.unsqueeze(-1)


def _long_qkv(g):
    n = _randint(g, 5, 12)
    return (torch.randn(2, n, 4, generator=g) * 2, torch.randn(2, n, 4, generator=g) * 2,
            torch.randn(2, n, 3, generator=g))


# ----------------------------------------------------------------------------- chapter 5
def attention_pool(x, q):
    weights = torch.softmax(x @ q / math.sqrt(x.shape[-1]), dim=-1)
    return (weights.unsqueeze(-1) * x).sum(dim=1)


def _pool_inputs(g):
    return torch.randn(3, _randint(g, 4, 7), 5, generator=g) * 2, torch.randn(5, generator=g) * 2


#: checker name (as a chapter's checker cell calls it) -> what its exercise must compute
REFERENCES = {
    "check_attention": Reference(attention, lambda g: _qkv(g, n_q=_randint(g, 2, 4)),
                                 forbid_c=SDPA, forbid_py=TORCH_MHA),
    "check_rank1_residual": Reference(rank1_residual, _tokens),
    "check_split_heads": Reference(split_heads, _split_inputs),
    "check_merge_heads": Reference(merge_heads, _merge_inputs),
    "check_mha_from_heads": Reference(mha_from_heads, _mha_inputs, trials=2, atol=1e-4, rtol=1e-3,
                                      forbid_c=("_native_multi_head_attention",), forbid_py=TORCH_MHA),
    "check_parameter_count": Reference(parameter_count, None, output="int",
                                       cases=[(24, 4, 4), (32, 8, 2), (20, 5, 1), (96, 12, 3), (36, 6, 2)]),
    "check_gauge": Reference(gauge, _gauge_inputs, output="pair", atol=1e-8, rtol=1e-6),
    "check_fuse": Reference(fuse, _fuse_inputs, output="pair", atol=1e-8, rtol=1e-6),
    "check_relu_attention": Reference(relu_attention, _long_qkv, forbid_c=SDPA, forbid_py=TORCH_MHA),
    "check_sigmoid_attention": Reference(sigmoid_attention, _long_qkv, forbid_c=SDPA, forbid_py=TORCH_MHA),
    "check_linear_recurrence": Reference(causal_linear_attention, _long_qkv, forbid_c=SDPA, forbid_py=TORCH_MHA),
    "check_attention_pooling": Reference(attention_pool, _pool_inputs, forbid_c=SDPA, forbid_py=TORCH_MHA),
}


# ----------------------------------------------------------------------------- encoding
def _hex(t: torch.Tensor) -> str:
    return " ".join(float(v).hex() for v in t.detach().reshape(-1).tolist())


def encode_argument(a):
    """An argument as plain Python values that ``grading/hidden.py`` turns back into it."""
    if isinstance(a, torch.Tensor):
        return ("tensor", str(a.dtype).removeprefix("torch."), list(a.shape), _hex(a))
    if isinstance(a, torch.nn.MultiheadAttention):
        state = {k: encode_argument(v) for k, v in a.named_parameters()}
        return ("mha", a.embed_dim, a.num_heads, state)
    if isinstance(a, int):
        return ("int", a)
    raise TypeError(f"cannot encode a {type(a).__name__}")


def encode_output(out, kind):
    if kind == "tensor":
        return ("tensor", list(out.shape), _hex(out))
    if kind == "pair":
        return ("pair", encode_output(out[0], "tensor"), encode_output(out[1], "tensor"))
    if kind == "int":
        return ("int", int(out))
    raise ValueError(kind)


def _float64(a):
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        return a.double()
    if isinstance(a, torch.nn.MultiheadAttention):
        return copy.deepcopy(a).double()
    return a


def part(checker: str, function_name: str, seed: int = 0) -> dict:
    """The hidden test of one graded function: ``checker``'s reference on fresh inputs.

    The reference runs in float64 on the inputs as given, so that the expected values are
    exact to the tolerance whatever precision the answer computes in.
    """
    if checker not in REFERENCES:
        raise KeyError(f"no hidden test for {checker}: add its reference to grading/references.py")
    ref = REFERENCES[checker]
    g = torch.Generator().manual_seed(1000 + seed)
    cases = ref.cases or [ref.inputs(g) for _ in range(ref.trials)]
    trials = []
    with torch.no_grad():
        for args in cases:
            out = ref.function(*[_float64(a) for a in args])
            trials.append(([encode_argument(a) for a in args], encode_output(out, ref.output)))
    return {"name": function_name, "trials": trials, "atol": ref.atol, "rtol": ref.rtol,
            "forbid_c": list(ref.forbid_c), "forbid_py": [list(p) for p in ref.forbid_py]}
