"""Exercise checkers: one module per chapter, built on :mod:`attnlib.checks.core`.

A checker runs the learner's function and the reference on fresh random
inputs and answers with a verdict and a hint. It never shows the reference
solution, and never crashes on odd input: a function that raises, returns
``None``, the wrong shape or dtype, or NaN, gets a message saying so. A right
answer returns a passed :class:`CheckResult`; a wrong one raises
:class:`CheckFailed`, shown as its hint alone, so that a grader gives the cell
no marks. An unattempted stub (it raises ``NotImplementedError``) raises
:class:`NotAnswered`, a ``NotImplementedError`` that says so in one line; a call that
runs past its time limit is stopped with a message. An answer that only calls the
library's own implementation fails.

They are for self-study. A graded assignment (``make assignment``) shows them through
:func:`self_check`, which awards nothing; its marks come from hidden tests that print the
learner's outputs (:mod:`attnlib.checks.report`) and a grader outside the notebook that
compares them (``grading/judge.py``).
"""
from .core import (CheckFailed, CheckResult, NotAnswered, check_function, checker, explained, outcome,
                   self_check)

__all__ = ["CheckFailed", "CheckResult", "NotAnswered", "check_function", "checker", "explained", "outcome",
           "self_check"]
