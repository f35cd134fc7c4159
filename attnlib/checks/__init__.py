"""Exercise checkers: one module per chapter, built on :mod:`attnlib.checks.core`.

A checker runs the learner's function and the reference on fresh random
inputs and answers with a verdict and a hint. It never shows the reference
solution, and never crashes on odd input: a function that raises, returns
``None``, the wrong shape or dtype, or NaN, gets a message saying so. The one
exception it lets through is ``NotImplementedError``, which is what an
unattempted exercise stub raises.
"""
from .core import CheckResult, check_function, checker

__all__ = ["CheckResult", "check_function", "checker"]
