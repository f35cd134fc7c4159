"""The machinery shared by every exercise checker."""
import functools
import traceback
from typing import Callable

import torch


class CheckResult:
    """A checker's verdict. Truthy when passed; shows its message in a notebook."""

    def __init__(self, passed: bool, name: str, message: str):
        self.passed, self.name, self.message = passed, name, message

    def __bool__(self):
        return self.passed

    def __repr__(self):
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.name}: {self.message}"

    def _repr_html_(self):
        colour = "#009E73" if self.passed else "#D55E00"
        mark = "&#10004; passed" if self.passed else "&#10008; not yet"
        return (f'<div style="border-left:4px solid {colour};padding:4px 8px">'
                f"<b>{self.name}: {mark}</b><br>{_html_escape(self.message)}</div>")


def _html_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


def _describe(x):
    try:
        return _describe_unsafe(x)
    except Exception:  # noqa: BLE001  (an object that cannot even describe itself)
        return f"an object of type {type(x).__name__}"


def _describe_unsafe(x):
    if x is None:
        return "None"
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    name = type(x).__name__
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return f"a {name} of {len(x)} items, starting with a tensor (return only the tensor asked for)"
    if hasattr(x, "__array__") and not isinstance(x, (int, float, str)):
        return f"a {name} (convert it with torch.as_tensor, or compute with torch from the start)"
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def checker(name: str):
    """Decorator for a checker that does not go through :func:`check_function`.

    Whatever the learner hands in, the checker answers with a :class:`CheckResult`:
    an exception (other than ``NotImplementedError``, the sign of an unattempted
    stub) becomes a failed result that names it, instead of a traceback.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except NotImplementedError:
                raise
            except Exception as e:  # noqa: BLE001
                return CheckResult(False, name, f"could not check this answer: {type(e).__name__}: {e}")
            if not isinstance(result, CheckResult):
                return CheckResult(bool(result), name, "passed." if result else "not yet.")
            return result
        return safe
    return wrap


def _same(a, b, atol, rtol):
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.to(b.dtype), b, atol=atol, rtol=rtol))


def check_function(candidate, reference: Callable, make_inputs: Callable, *, name: str,
                   trials: int = 3, atol: float = 1e-5, rtol: float = 1e-4,
                   mistakes: dict | None = None, hint: str = "") -> CheckResult:
    """Compare ``candidate`` with ``reference`` on ``trials`` fresh random inputs.

    Args:
        candidate: the learner's function.
        reference: the correct function.
        make_inputs: ``torch.Generator -> tuple of arguments``.
        name: what the exercise is called, for the message.
        mistakes: ``{message: wrong_function}``: typical wrong versions; when the
            candidate's output matches one of them, its message is the hint.
        hint: a general hint added when the answer is wrong for another reason.

    Raises:
        NotImplementedError: passed through from an unattempted stub.
    """
    mistakes = mistakes or {}
    extra = f"\nHint: {hint}" if hint else ""
    if not callable(candidate):
        return CheckResult(False, name, f"expected a function, got {_describe(candidate)}.")
    g = torch.Generator().manual_seed(20231)
    for trial in range(trials):
        args = make_inputs(g)
        with torch.no_grad():
            expected = reference(*args)
        try:
            with torch.no_grad():
                got = candidate(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        except NotImplementedError:
            raise
        except Exception as e:  # the learner's code failed: report it, do not crash
            where = traceback.extract_tb(e.__traceback__)[-1]
            return CheckResult(False, name, f"your function raised {type(e).__name__}: {e} "
                               f"(line {where.lineno}).{extra}")
        verdict = _compare(got, expected, args, name, atol, rtol, mistakes, extra)
        if verdict is not None:
            return verdict
    return CheckResult(True, name, f"matches the reference on {trials} random inputs.")


def _compare(got, expected, args, name, atol, rtol, mistakes, extra):
    """A failed CheckResult if ``got`` is not ``expected``, else None. Never raises."""
    try:
        return _compare_unsafe(got, expected, args, name, atol, rtol, mistakes, extra)
    except Exception as e:  # noqa: BLE001  (an odd result we did not foresee: say so, no traceback)
        return CheckResult(False, name, f"could not compare your result ({_describe(got)}) with the "
                           f"expected one: {type(e).__name__}: {e}.{extra}")


def _compare_unsafe(got, expected, args, name, atol, rtol, mistakes, extra):
    shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
    if got is None:
        return CheckResult(False, name, "your function returned None: is a `return` missing?")
    if not isinstance(got, torch.Tensor):
        return CheckResult(False, name, f"expected a torch.Tensor, got {_describe(got)}.")
    for message, wrong in mistakes.items():
        try:
            with torch.no_grad():
                w = wrong(*args)
        except Exception:
            continue
        if _same(got, w, atol, rtol) and not _same(w, expected, atol, rtol):
            return CheckResult(False, name, message)
    if got.shape != expected.shape:
        return CheckResult(False, name, f"for inputs of shape {shapes} the result should have shape "
                           f"{tuple(expected.shape)}, yours has shape {tuple(got.shape)}.{extra}")
    if (got.is_floating_point() or got.is_complex()) and not torch.isfinite(got).all():
        return CheckResult(False, name, f"your result contains NaN or inf (inputs of shape {shapes}).{extra}")
    if got.dtype != expected.dtype and not (got.is_floating_point() and expected.is_floating_point()):
        return CheckResult(False, name, f"expected dtype {expected.dtype}, got {got.dtype}.")
    if not _same(got, expected, atol, rtol):
        err = (got.to(expected.dtype) - expected).abs().max().item()
        return CheckResult(False, name, f"right shape, wrong values: largest difference {err:.3g} "
                           f"on inputs of shape {shapes}.{extra}")
    return None
