"""The notation chapter's checker: right answers pass, typical mistakes get a hint, odd input no traceback."""
import math

import pytest
import torch

from attnlib.checks import CheckFailed, outcome
from attnlib.sdpa import attention
from attnlib.checks.notation import check_attention


def test_reference_passes():
    def mine(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -1) @ V

    result = check_attention(mine)
    assert result.passed and "matches" in result.message


def test_wrong_answer_raises_with_the_hint_alone():
    """A grader scores a cell that raises as 0: a wrong answer must raise, shown as its hint."""
    with pytest.raises(CheckFailed) as info:
        check_attention(lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1), -1) @ V)
    lines = info.value._render_traceback_()
    assert "not yet" in lines[0] and any("not scaled" in line for line in lines)
    assert not any("Traceback" in line or "File " in line for line in lines)


@pytest.mark.parametrize("delegate", [
    lambda Q, K, V: attention(Q, K, V),
    lambda Q, K, V: torch.nn.functional.scaled_dot_product_attention(Q, K, V),
])
def test_calling_the_library_is_not_an_answer(delegate):
    result = outcome(check_attention, delegate)
    assert not result and "library's own" in result.message, result.message


@pytest.mark.parametrize("wrong,fragment", [
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1), -1) @ V, "not scaled"),
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1) / Q.shape[-1], -1) @ V, "square root"),
    (lambda Q, K, V: torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -2) @ V, "wrong axis"),
    (lambda Q, K, V: torch.softmax(Q @ K.T / 2, -1) @ V, "raised"),
    (lambda Q, K, V: Q, "shape"),
    (lambda Q, K, V: None, "returned None"),
    (lambda Q, K, V: 3, "expected a torch.Tensor"),
    (lambda Q, K, V: attention(Q, K, V) * float("nan"), "NaN"),
    (lambda Q, K, V: attention(Q, K, V).double() + 1, "wrong values"),
    (lambda Q, K, V: attention(Q, K, V).long(), "dtype"),
    (None, "expected a function"),
])
def test_mistakes_get_a_message(wrong, fragment):
    result = outcome(check_attention, wrong)
    assert not result and fragment in result.message, result.message
    assert "softmax(" not in result.message  # never reveals the solution


def test_stub_raises_not_implemented():
    def stub(Q, K, V):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        outcome(check_attention, stub)


def test_every_public_checker_raises_on_failure():
    """Every check_* a notebook calls is wrapped by core.checker (so that graders score it)."""
    import importlib
    import pkgutil

    import attnlib.checks as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"attnlib.checks.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("check_") and name != "check_function" and callable(obj) \
                    and getattr(obj, "__module__", "") == module.__name__:
                found.append(name)
                assert getattr(obj, "is_checker", False), f"{module.__name__}.{name} is not wrapped by @checker"
    assert len(found) >= 10, found


def test_an_unanswered_stub_says_so_in_one_line():
    """An unanswered stub raises NotAnswered (a NotImplementedError), shown as one line, no traceback."""
    from attnlib.checks import NotAnswered

    def my_attention(Q, K, V):
        raise NotImplementedError()
    with pytest.raises(NotAnswered) as info:
        check_attention(my_attention)
    lines = info.value._render_traceback_()
    assert len(lines) == 1 and "not answered yet" in lines[0] and "my_attention" in lines[0]


def test_an_endless_loop_is_stopped_with_a_message(monkeypatch):
    monkeypatch.setenv("ATTNLIB_CHECK_TIME_LIMIT", "0.2")

    def my_attention(Q, K, V):
        while True:
            pass
    result = outcome(check_attention, my_attention)
    assert not result and "did not finish" in result.message and "0.2 s" in result.message


def _run_self_check(namespace, check, name):
    """self_check as an assignment's check cell calls it: the function looked up in __main__."""
    import sys
    import types
    from attnlib.checks import self_check

    main = types.ModuleType("__main__")
    vars(main).update(namespace)
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    shown = []
    try:
        import IPython.display
        original = IPython.display.display
        IPython.display.display = shown.append
        try:
            assert self_check(check, name) is None  # no value: nbgrader would try to read it as a score
        finally:
            IPython.display.display = original
    finally:
        sys.modules["__main__"] = saved
    return shown[0]


def test_self_check_never_raises_and_explains():
    def right(Q, K, V):
        return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), -1) @ V

    def stub(Q, K, V):
        raise NotImplementedError()
    assert _run_self_check({"my_attention": right}, check_attention, "my_attention").passed
    r = _run_self_check({"my_attention": stub}, check_attention, "my_attention")
    assert not r and "not answered yet" in r.message
    r = _run_self_check({"my_attention": lambda Q, K, V: V}, check_attention, "my_attention")
    assert not r and r.message
    r = _run_self_check({"_ih": ["def my_attention(Q, K, V):\n    return Q +\n"]}, check_attention, "my_attention")
    assert not r and "syntax error" in r.message and "line 2" in r.message
    r = _run_self_check({}, check_attention, "my_attention")
    assert not r and "not answered yet" in r.message and "not defined" in r.message


def test_no_function_importable_from_the_checkers_is_an_answer():
    """Graded assignments carry their references in grading/, out of what students install: no
    function defined at the top of an attnlib.checks module passes any checker (issue 30 found
    `_gauge_reference`, `_fuse_reference` and `pooling._reference` there)."""
    import importlib
    import inspect
    import pkgutil

    import attnlib.checks as pkg
    from attnlib.checks import CheckResult

    modules = [importlib.import_module(f"attnlib.checks.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    checkers = [f for m in modules for n, f in vars(m).items()
                if n.startswith("check_") and getattr(f, "is_checker", False)]
    helpers = [f for m in modules for n, f in vars(m).items()
               if inspect.isfunction(f) and f.__module__ == m.__name__ and not getattr(f, "is_checker", False)]
    passing = []
    for check in checkers:
        for helper in helpers:
            try:
                result = outcome(check, helper)
            except NotImplementedError:
                continue
            if isinstance(result, CheckResult) and result.passed:
                passing.append(f"{helper.__module__}.{helper.__name__} passes {check.__name__}")
    assert not passing, passing
    for module, name in [("output_projection", "_gauge_reference"), ("output_projection", "_fuse_reference"),
                         ("pooling", "_reference"), ("shapes", "_per_head"), ("shapes", "_torch_reference")]:
        assert not hasattr(importlib.import_module(f"attnlib.checks.{module}"), name)


def test_self_check_shows_what_the_function_printed_and_warned():
    """Review finding 3: a right answer that prints, writes to stderr or warns passes, and what it
    said is shown inside the verdict, not as the cell's own (stderr) output."""
    import sys
    import warnings

    def noisy(Q, K, V):
        print("debugging", Q.shape)
        print("on stderr", file=sys.stderr)
        warnings.warn("my own warning")
        torch.nn.functional.softmax(torch.zeros(2, 3))  # torch warns: no dim
        return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V
    r = _run_self_check({"my_attention": noisy}, check_attention, "my_attention")
    assert r.passed, r.message
    assert "printed" in r.message and "on stderr" in r.message and "my own warning" in r.message
    assert "Implicit dimension" in r.message


def test_self_check_stops_a_loop_that_catches_everything():
    """Review finding 13: the check runs in a copy of the kernel that the system stops."""
    from attnlib.checks.sandbox import can_fork

    def stubborn(Q, K, V):
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    if not can_fork():
        pytest.skip("no fork here: the check runs in the kernel, with the checker's own limit")
    r = _run_self_check({"my_attention": stubborn}, check_attention, "my_attention")
    assert not r and "did not finish within 1 s" in r.message


def test_run_in_child_answers_and_leaves_nothing_behind():
    from attnlib.checks.sandbox import can_fork, run_in_child

    assert run_in_child(lambda: [1, 2.5, None])["value"] == [1, 2.5, None]
    r = run_in_child(lambda: 1 / 0)
    assert r["raised"] == "ZeroDivisionError" and "division" in r["message"]
    if not can_fork():
        pytest.skip("no fork here")

    def patch():
        torch.allclose = None
        return 0
    assert run_in_child(patch)["value"] == 0 and torch.allclose is not None  # the patch died with the copy
    import os
    assert "ended" in run_in_child(lambda: os._exit(3))
    assert run_in_child(lambda: sum(range(10 ** 12)), cpu_seconds=1) == {"timeout": 1}


def test_print_outputs_prints_one_line_of_numbers(capsys, monkeypatch):
    import json
    import sys
    import types

    from attnlib.checks.report import MARK, print_outputs

    main = types.ModuleType("__main__")
    main.mine = lambda x, m: (m(x, x, x)[0], 3)
    monkeypatch.setitem(sys.modules, "__main__", main)

    def inputs(g):
        return torch.randn(1, 2, 4, generator=g), torch.nn.MultiheadAttention(4, 2, batch_first=True)
    print_outputs("mine", inputs, seed=1, trials=2)
    print_outputs("absent", inputs, seed=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [[MARK, "mine"], [MARK, "absent"]]
    report = json.loads(lines[0].split(" ", 2)[2])
    trial = report["trials"][0]
    assert trial["value"]["sequence"][0]["tensor"] == [1, 2, 4] and trial["value"]["sequence"][1]["number"] == 3
    assert trial["module_calls"] == 1  # it ran the module it was given
    assert json.loads(lines[1].split(" ", 2)[2]) == {"missing": True}


def test_explained_turns_a_failed_check_into_one_line(monkeypatch):
    from attnlib.checks import core, explained

    shown = []
    monkeypatch.setattr(core, "_show", shown.append)
    with explained("masked_mean"):
        raise NotImplementedError()
    with explained("masked_mean"):
        assert 1 + 1 == 3, "never"
    with explained("masked_mean"):
        pass
    assert len(shown) == 2 and "not answered yet" in shown[0].message
    assert "this check fails" in shown[1].message and "1 + 1 == 3" in shown[1].message
