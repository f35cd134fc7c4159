"""What an assignment's hidden tests run in the learner's notebook: outputs, printed as numbers.

A graded cell of an assignment (``make assignment``) ends with a hidden region that draws
inputs with a seed the students never see, calls :func:`print_outputs`, and prints one line::

    hidden-outputs gauge {"trials": [{"value": {"tensor": [6, 2], "values": [0.25, ...]}}, ...]}

The marks are decided outside the notebook, by nbgrader's own process (``grading/judge.py``),
which compares these numbers with its references. Nothing here knows the right answer, so
nothing that the notebook changes here can earn a mark: it can only print wrong numbers.
"""
from __future__ import annotations

import json
import sys
import traceback

import torch

from .sandbox import run_in_child

#: The first word of the line the grader reads.
MARK = "hidden-outputs"
#: Tensors larger than this are described by their shape alone.
MAX_NUMBERS = 20_000


def plain(value):
    """A function's result as JSON values: a tensor's shape and numbers, a sequence, a number..."""
    if isinstance(value, torch.Tensor):
        shape = list(value.shape)
        if value.numel() > MAX_NUMBERS or value.is_complex():
            return {"tensor": shape, "values": None, "dtype": str(value.dtype)}
        return {"tensor": shape, "values": value.detach().cpu().double().reshape(-1).tolist(),
                "dtype": str(value.dtype)}
    if isinstance(value, (tuple, list)):
        return {"sequence": [plain(v) for v in value[:8]], "length": len(value), "type": type(value).__name__}
    if isinstance(value, (bool, int, float)):
        return {"number": value, "type": type(value).__name__}
    return {"type": type(value).__name__}


def _line(error: BaseException) -> int | None:
    """The line of the notebook cell (not of a library) where ``error`` was raised."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "ipykernel_" in (f.filename or "")]
    return frames[-1].lineno if frames else None


def _trial(fn, args) -> dict:
    """One call: its result as plain values, or the error it raised, and how often it ran the
    modules it was given (an ``nn.Module`` argument is the exercise's data, not its answer)."""
    calls = []
    for a in args:
        if isinstance(a, torch.nn.Module):
            a.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    try:
        with torch.no_grad():
            result = {"value": plain(fn(*args))}
    except Exception as e:  # noqa: BLE001  (the learner's code failed: the grader says so)
        result = {"raised": type(e).__name__, "message": str(e)[:300], "line": _line(e)}
    result["module_calls"] = len(calls)
    return result


def print_outputs(name: str, inputs, seed: int, trials: int = 3, cpu_seconds: int = 1) -> None:
    """Print what the notebook's function ``name`` returns on ``trials`` hidden inputs.

    Args:
        name: the function, looked up in the notebook (``__main__``).
        inputs: ``torch.Generator -> tuple of arguments``; drawn with ``seed``, as the grader
            draws them again on its side.
        cpu_seconds: for all the calls together, in a copy of the kernel
            (:func:`attnlib.checks.sandbox.run_in_child`).
    """
    fn = vars(sys.modules["__main__"]).get(name)
    if not callable(fn):
        report = {"missing": True}
    else:
        g = torch.Generator().manual_seed(seed)
        cases = [inputs(g) for _ in range(trials)]
        report = run_in_child(lambda: [_trial(fn, args) for args in cases], cpu_seconds)
        report = {"trials": report.pop("value")} if "value" in report else report
        report.pop("output", None)
        report.pop("warnings", None)
    print(MARK, name, json.dumps(report))
