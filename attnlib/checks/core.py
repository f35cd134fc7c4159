"""The machinery shared by every exercise checker.

A checker that a notebook calls (``check_split_heads(split_heads)``) returns a
:class:`CheckResult` when the answer is right, and *raises* :class:`CheckFailed` when it
is not: a grader (nbgrader) scores a cell that raises as 0 and one that runs as full
marks, so a wrong answer must raise. The learner sees the hint alone, not a traceback.
Every public checker is wrapped with :func:`checker`, which does both. An unanswered stub
(it raises ``NotImplementedError``) raises :class:`NotAnswered`, and a call that runs longer
than :func:`time_limit` seconds is stopped; both show one line, not a traceback.

These checkers are for self-study: graded assignments (``make assignment``) show them through
:func:`self_check`, and award marks outside the notebook (``grading/judge.py``).
"""
import contextlib
import functools
import os
import signal
import sys
import threading
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


class CheckFailed(AssertionError):
    """A wrong answer: raised by every checker, so that a grader gives the cell no marks.

    In a notebook it shows as its hint alone (IPython calls ``_render_traceback_``)."""

    def __init__(self, result: "CheckResult"):
        super().__init__(f"{result.name}: not yet. {result.message}")
        self.result = result

    def _render_traceback_(self):
        return [f"\x1b[1;31m\u2718 {self.result.name}: not yet\x1b[0m", *self.result.message.splitlines()]


class NotAnswered(NotImplementedError):
    """An exercise whose stub was never filled in: shown as one line, not a traceback."""

    def __init__(self, name: str, function=None):
        fn = getattr(function, "__name__", None)
        who = f"`{fn}` still raises" if fn else "your function still raises"
        super().__init__(f"{name}: this exercise is not answered yet ({who} NotImplementedError). "
                         "Replace the stub under `# YOUR CODE HERE` with your code, run that cell, "
                         "then this one.")

    def _render_traceback_(self):
        return [f"\x1b[1;33m\u2026 {self.args[0]}\x1b[0m"]


class TimeUp(BaseException):
    """Raised in a learner's function that runs past :func:`time_limit` (a BaseException, so that
    an ``except Exception`` in the answer does not swallow it)."""


def time_limit() -> float:
    """Seconds of CPU a checker gives each call of the learner's function: ``ATTNLIB_CHECK_TIME_LIMIT``,
    default 10."""
    try:
        return float(os.environ.get("ATTNLIB_CHECK_TIME_LIMIT", 10))
    except ValueError:
        return 10.0


@contextlib.contextmanager
def _limited(seconds):
    """Raise :class:`TimeUp` in the block after ``seconds`` of CPU (a SIGPROF timer, so that a
    busy machine does not trip it; main thread, Unix only)."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TimeUp()
    old = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def call_answer(name: str, fn, *args):
    """``fn(*args)`` for a checker: time-limited, and an unanswered stub raises :class:`NotAnswered`.

    Returns ``(result, None)``, or ``(None, failed CheckResult)`` if the call ran too long or raised.
    """
    try:
        with _limited(time_limit()):
            return fn(*args), None
    except NotImplementedError:
        raise NotAnswered(name, fn) from None
    except TimeUp:
        return None, CheckResult(False, name, f"your function did not finish within {time_limit():g} s of CPU on "
                                 "a small input (the reference takes milliseconds): is there an endless loop?")
    except Exception as e:  # the learner's code failed: report it, do not crash
        where = traceback.extract_tb(e.__traceback__)[-1]
        return None, CheckResult(False, name, f"your function raised {type(e).__name__}: {e} "
                                 f"(line {where.lineno}).")


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
    """Decorator for every public checker: a passed :class:`CheckResult`, or :class:`CheckFailed`.

    Whatever the learner hands in, the wrapped checker answers with a verdict: an exception
    becomes a failed result that names it, and a failed result is raised as :class:`CheckFailed`.
    ``NotImplementedError``, the sign of an unattempted stub, is raised as :class:`NotAnswered`
    (still a ``NotImplementedError``), whose message says so in one line.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except (NotAnswered, CheckFailed):
                raise
            except NotImplementedError:
                raise NotAnswered(name, args[0] if args else None) from None
            except Exception as e:  # noqa: BLE001
                result = CheckResult(False, name, f"could not check this answer: {type(e).__name__}: {e}")
            if not isinstance(result, CheckResult):
                result = CheckResult(bool(result), name, "passed." if result else "not yet.")
            if not result.passed:
                raise CheckFailed(result)
            return result
        safe.is_checker = True
        safe.title = name
        return safe
    return wrap


def _missing(name: str) -> str:
    """Why the notebook has no ``name``: its cell has a syntax error, or it was never written or run."""
    main = vars(sys.modules["__main__"])
    for source in reversed(main.get("_ih") or []):  # IPython's input history, newest first
        if f"def {name}(" not in source:
            continue
        try:
            ip = main.get("get_ipython")
            compile(ip().transform_cell(source) if ip else source, "<cell>", "exec")
        except SyntaxError as e:
            return (f"your cell above has a syntax error (line {e.lineno}: {e.msg}), so `{name}` was never "
                    "defined. Fix it and run that cell again.")
        except Exception:  # noqa: BLE001
            pass
        break
    return f"this exercise is not answered yet: `{name}` is not defined (write it in the cell above and run it)."


def _verdict(check: Callable, fn) -> dict:
    """``check(fn)`` as plain values: ``{"passed", "message"}``."""
    try:
        result = check(fn)
    except CheckFailed as e:
        result = e.result
    except NotAnswered as e:
        result = CheckResult(False, "", e.args[0].split(": ", 1)[-1])
    return {"passed": bool(result.passed), "message": result.message}


def _noise(report: dict) -> str:
    """What a learner's function printed and warned while it was checked, for the verdict."""
    lines = []
    if report.get("output", "").strip():
        printed = report["output"].strip().splitlines()
        lines += ["While it was checked, your function printed:"] + ["    " + line for line in printed[-6:]]
    if report.get("warnings"):
        lines += ["and warned:" if lines else "While it was checked, your function warned:"]
        lines += ["    " + w for w in dict.fromkeys(report["warnings"])]
    return "\n".join(lines)


def self_check(check: Callable, name: str, cpu_seconds: int = 1) -> None:
    """Show ``check``'s verdict on the notebook's function ``name``, without raising.

    What an assignment's check cells call (``make assignment``). The check runs in a copy of
    the kernel with ``cpu_seconds`` of CPU (:func:`attnlib.checks.sandbox.run_in_child`), so
    an endless loop ends with a message whatever the function catches. What the function
    prints or warns is shown inside the verdict, not as the cell's own output (nbgrader
    scores a graded cell that writes to stderr as 0). A missing function (its cell has a
    syntax error, or was never run), an unanswered stub and a wrong answer each get a
    message, and the notebook runs on to the next exercise. Returns None, so that nbgrader
    sees no output it would try to read as a score.
    """
    from .sandbox import run_in_child

    title = getattr(check, "title", None) or getattr(check, "__name__", "check")
    fn = vars(sys.modules["__main__"]).get(name)
    if fn is None:
        result = CheckResult(False, title, _missing(name))
    else:
        report = run_in_child(lambda: _verdict(check, fn), cpu_seconds)
        if "value" in report:
            result = CheckResult(report["value"]["passed"], title, report["value"]["message"])
        elif "timeout" in report:
            result = CheckResult(False, title, f"your function did not finish within {cpu_seconds} s of CPU on a "
                                 "small input (the reference takes milliseconds): is there an endless loop?")
        else:
            why = report.get("raised") or report.get("ended")
            result = CheckResult(False, title, f"the check could not run your function ({why}).")
        noise = _noise(report)
        if noise:
            result.message += "\n" + noise
    _show(result)


def _show(result: "CheckResult") -> None:
    try:
        from IPython.display import display
        display(result)
    except ImportError:
        print(repr(result))


@contextlib.contextmanager
def explained(name: str):
    """Run a cell's own checks of ``name`` and show a failure as one line, not a traceback.

    For the code of an exercise that is marked by hand (``make assignment`` wraps the checks
    that follow its function in a chapter)::

        with explained("masked_mean"):
            assert torch.allclose(masked_mean(x, mask)[0], x[0].mean(0))
    """
    try:
        yield
    except NotImplementedError:
        _show(CheckResult(False, name, "this exercise is not answered yet (replace the stub under "
                          "`# YOUR CODE HERE` with your code, run that cell, then this one)."))
    except NameError as e:
        _show(CheckResult(False, name, f"{e}: run the cell that defines it first (a syntax error there "
                          "leaves it undefined)."))
    except Exception as e:  # noqa: BLE001  (a wrong answer: one line)
        where = traceback.extract_tb(e.__traceback__)[-1]
        if isinstance(e, AssertionError):
            _show(CheckResult(False, name, f"not yet: this check fails: {(where.line or '').strip()}"))
        else:
            _show(CheckResult(False, name, f"raised {type(e).__name__}: {e} (line {where.lineno})."))


def outcome(check: Callable, *args, **kwargs) -> "CheckResult":
    """The verdict of ``check(*args)`` whether it passed or failed (for tests and teachers)."""
    try:
        return check(*args, **kwargs)
    except CheckFailed as e:
        return e.result


class _Calls:
    """Records whether any of some Python functions is called while it is active."""

    def __init__(self, functions):
        functions = list(functions or ())
        self.codes = {f.__code__: f for f in functions if hasattr(f, "__code__")}
        self.builtins = [f for f in functions if not hasattr(f, "__code__")]  # C functions
        self.called = None

    def _profile(self, frame, event, arg):
        if self.called is not None:
            return
        if event == "call" and frame.f_code in self.codes:
            self.called = self.codes[frame.f_code]
        elif event == "c_call" and any(arg is f for f in self.builtins):
            self.called = arg

    def __enter__(self):
        self.active = bool(self.codes or self.builtins)
        if self.active:
            self._old = sys.getprofile()
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        if self.active:
            sys.setprofile(self._old)
        return False


def _same(a, b, atol, rtol):
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.to(b.dtype), b, atol=atol, rtol=rtol))


def check_function(candidate, reference: Callable, make_inputs: Callable, *, name: str,
                   trials: int = 3, atol: float = 1e-5, rtol: float = 1e-4,
                   mistakes: dict | None = None, hint: str = "", forbidden=()) -> CheckResult:
    """Compare ``candidate`` with ``reference`` on ``trials`` fresh random inputs.

    Args:
        candidate: the learner's function.
        reference: the correct function.
        make_inputs: ``torch.Generator -> tuple of arguments``.
        name: what the exercise is called, for the message.
        mistakes: ``{message: wrong_function}``: typical wrong versions; when the
            candidate's output matches one of them, its message is the hint.
        hint: a general hint added when the answer is wrong for another reason.
        forbidden: the library's own implementations of what the exercise asks for
            (Python functions or methods): an answer that calls one of them only
            delegates, and fails with a message that says so.

    Raises:
        NotAnswered: the candidate is an unattempted stub (it raises ``NotImplementedError``).
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
        with torch.no_grad(), _Calls(forbidden) as calls:
            got, failed = call_answer(name, candidate, *[a.clone() if isinstance(a, torch.Tensor) else a
                                                         for a in args])
        if failed is not None:
            return CheckResult(False, name, failed.message + extra)
        verdict = _compare(got, expected, args, name, atol, rtol, mistakes, extra)
        if verdict is not None:
            return verdict
        if calls.called is not None:  # right, but only by calling the library's own implementation
            used = getattr(calls.called, "__qualname__", repr(calls.called))
            return CheckResult(False, name, f"your function calls the library's own `{used}`: the exercise "
                               "is to write it yourself, from the operations it names.")
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
