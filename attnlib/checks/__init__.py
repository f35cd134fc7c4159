"""Exercise checkers: one module per chapter, built on :mod:`attnlib.checks.core`.

A checker runs the learner's function and the reference on fresh random
inputs and answers with a verdict and a hint. It never shows the reference
solution, and never crashes on odd input: a function that raises, returns
``None``, the wrong shape or dtype, or NaN, gets a message saying so. A right
answer returns a passed :class:`CheckResult`; a wrong one raises
:class:`CheckFailed`, shown as its hint alone, so that a grader gives the cell
no marks. ``NotImplementedError``, which an unattempted stub raises, passes
through. An answer that only calls the library's own implementation fails.
"""
from .core import CheckFailed, CheckResult, check_function, checker, outcome

__all__ = ["CheckFailed", "CheckResult", "check_function", "checker", "outcome"]
