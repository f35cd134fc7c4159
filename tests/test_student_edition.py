"""The student edition, for every chapter in chapters/ (found by glob, so new chapters are covered).

* the marking follows the convention (markers, nbgrader metadata, solution-start/-end pairs);
* no solution text survives in the student edition's sources, outputs or metadata;
* the student edition is the source notebook, cell for cell, up to the first exercise;
* executed, every stub stops its exercise with "not answered yet" (attnlib.checks.NotAnswered,
  a NotImplementedError; no other error), and with the reference
  solutions put back every checker passes, and typical wrong answers (None, NaN, wrong
  shape, transposed, unscaled, raising) get a failed CheckResult with a message, no traceback;
* every check_* function in attnlib/checks/*.py survives odd input.

Execution is the expensive part, so each chapter runs in one kernel, and only the cells the
exercises need: the solution and checker cells plus the earlier cells that define the names
they use (found with :mod:`symtable`). Cells before the first exercise are shown to be
identical to the source notebook, which nbval runs in full. If the slice fails, the chapter
is rerun with every cell before its exercises, so a failure is never an artefact of slicing.
Set ``STUDENT_FULL=1`` to run every chapter's student edition from the top instead.
"""
from __future__ import annotations

import builtins
import copy
import importlib
import inspect
import json
import os
import pkgutil
import re
import symtable
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "grading")]
import assignment  # noqa: E402
import student_edition as se  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
IDS = [p.stem for p in CHAPTERS]


def _read(path):
    return nbformat.read(path, as_version=4)


def _src(cell):
    return "".join(cell.source) if isinstance(cell.source, list) else cell.source


# --------------------------------------------------------------------------------------
# Solution text, extracted independently of the script
# --------------------------------------------------------------------------------------

_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}")
_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}")
_BLOCK = re.compile(r"^\s*(`{3,}|:{3,})\{solution\}")


def _strings(obj):
    """Every string in a (notebook) JSON tree."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def solution_parts(nb):
    """(solution fragments, everything else) of a source notebook, as lists of strings."""
    sol, other = [], []
    inside = False
    for cell in nb.cells:
        src = _src(cell)
        if cell.cell_type == "markdown":
            lines, fence = src.split("\n"), None
            for line in lines:
                if fence:  # inside a {solution} block
                    sol.append(line)
                    if line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
                        fence = None
                    continue
                if not inside and _START.match(line):
                    inside = True
                elif inside and _END.match(line):
                    inside = False
                elif not inside and _BLOCK.match(line):
                    fence = _BLOCK.match(line).group(1)
                (sol if inside else other).append(line)
            continue
        outputs = list(_strings(cell.get("outputs", [])))
        nbg = cell.metadata.get("nbgrader", {})
        if se.BEGIN in src:
            keep = True
            for line in src.split("\n"):
                if line.strip() == se.BEGIN:
                    keep = False
                elif line.strip() == se.END:
                    keep = True
                else:
                    (other if keep else sol).append(line)
            sol += outputs
        elif inside or nbg.get("solution"):
            sol += src.split("\n") + outputs
        else:
            other += src.split("\n") + outputs
    return sol, other


def leaks(source_nb, student_nb, min_len=12):
    """Solution fragments of the source that appear anywhere in the student edition."""
    sol, other = solution_parts(source_nb)
    elsewhere = "\n".join(other)
    blob = "\n".join(_strings(student_nb))
    found = []
    for frag in {s.strip() for s in sol}:
        if len(frag) < min_len or frag in elsewhere:  # short or also outside the solution: not a leak
            continue
        if frag in blob:
            found.append(frag)
    return found


# --------------------------------------------------------------------------------------
# Static tests: marking, leaks, the cells before the first exercise
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=CHAPTERS, ids=IDS)
def editions(request):
    nb = _read(request.param)
    return request.param, nb, se.student_notebook(nb)


def test_marking_follows_the_convention(editions):
    path, nb, _ = editions
    assert se.lint(nb) == [], f"{path.name}: marking problems"


def test_no_solution_text_left(editions):
    path, nb, student = editions
    nbformat.validate(student)
    sol, _ = solution_parts(nb)
    exercises = se.scan(nb)[0]
    if exercises:
        assert [s for s in sol if s.strip()], f"{path.name} has exercises but no solution was found"
    assert leaks(nb, student) == [], f"{path.name}: solution text in the student edition"
    blob = "\n".join(_strings(student))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "{solution-start}", "{solution-end}", "{solution}"):
        assert marker not in blob
    for cell in student.cells:
        assert not cell.get("outputs") and cell.get("execution_count") is None
        assert "execution" not in cell.metadata
    assert "widgets" not in student.metadata


def test_stubs_and_answer_cells(editions):
    path, nb, student = editions
    exercises, regions, _ = se.scan(nb)
    n_stubs = sum("raise NotImplementedError()" in _src(c) for c in student.cells if c.cell_type == "code")
    assert n_stubs >= sum(len(e.solution_cells) for e in exercises)
    n_answers = sum("student-answer" in c.metadata.get("tags", []) for c in student.cells)
    assert n_answers == sum(1 for e in exercises if e.written)
    # a checker cell is kept as it is
    for c in nb.cells:
        if se.is_checker(c) and not se.is_solution_code(c):
            assert any(_src(s) == _src(c) for s in student.cells)


def test_student_edition_is_the_chapter_up_to_the_first_exercise(editions):
    """So it runs as the source does (nbval runs that) until the first stub."""
    path, nb, student = editions
    exercises, regions, plan = se.scan(nb)
    first = min([r.start[0] for r in regions] + [c for c, p in enumerate(plan) if p == "stub"] + [len(nb.cells)])
    for a, b in zip(nb.cells[:first], student.cells[:first]):
        want = se.plain_markdown(_src(a)) if a.cell_type == "markdown" else _src(a)
        assert want == _src(b) and a.cell_type == b.cell_type
        meta = {k: v for k, v in a.metadata.items() if k != "execution"}
        assert meta == dict(b.metadata)


def test_make_student_builds_every_chapter(tmp_path):
    written = se.build(ROOT / "chapters", tmp_path / "student", quiet=True)
    assert [p.name for p in written] == [p.name for p in CHAPTERS]
    for p in written:
        nbformat.validate(_read(p))


# --------------------------------------------------------------------------------------
# The script on a synthetic notebook: the cases the chapters may not (yet) have
# --------------------------------------------------------------------------------------

def _synthetic():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    sol_meta = {"nbgrader": {"solution": True, "grade": False, "grade_id": "ex-a", "locked": False,
                             "schema_version": 3, "task": False, "checksum": "abc"}}
    chk_meta = {"nbgrader": {"solution": False, "grade": True, "grade_id": "check-a", "locked": True,
                             "points": 1, "schema_version": 3, "task": False}}
    cells = [
        md("# A chapter"),
        code("x = 1", outputs=[nbformat.v4.new_output("stream", text="1\n")]),
        md("```{exercise} Code\n:label: ex-a\n\nWrite f.\n```\n\n```{solution-start} ex-a\n:class: dropdown\n```"),
        code("def f(x):\n    ### BEGIN SOLUTION\n    secret_value = x * 42\n    return secret_value\n    ### END SOLUTION",
             metadata=sol_meta, outputs=[nbformat.v4.new_output("stream", text="secret printed output\n")]),
        md("Why it works: multiply by forty-two.\n\n```{solution-end}\n```"),
        code("check(f)", metadata=chk_meta),
        md("````{exercise} Predict\n:label: ex-b\n\nWhat happens?\n````\n"
           "````{solution-start} ex-b\n:class: dropdown\n````\nThe loss explodes, because reasons.\n"
           "````{solution-end}\n````\nText after the solution stays."),
        md("```{exercise} Design\n:label: ex-c\n\nDesign it.\n```"),
        md(":::{solution-start} ex-c\n:class: dropdown\n:::"),
        md("A long written design answer with detail."),
        code("plot_the_design_answer()"),
        md(":::{solution-end}\n:::"),
        md("```{exercise} Inline\n:label: ex-d\n\nSay it.\n```\n\n```{solution} ex-d\n:class: dropdown\n"
           "An inline solution block answer.\n```\nAfter."),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["widgets"] = {"state": "secret widget state"}
    return nb


def test_a_chapter_that_lost_its_nbgrader_metadata_is_read_the_same():
    """The markers, the labels and the checker calls carry the marking: a chapter whose cells
    lost their nbgrader metadata (an editor that drops it) gives the same exercises, checker
    cells, grade ids and points."""
    for path in CHAPTERS:
        nb = _read(path)
        bare = copy.deepcopy(nb)
        for cell in bare.cells:
            cell.metadata.pop("nbgrader", None)
        ex, bare_ex = se.scan(nb)[0], se.scan(bare)[0]
        assert [(e.label, e.solution_cells, e.checker_cells, e.written) for e in ex] == \
            [(e.label, e.solution_cells, e.checker_cells, e.written) for e in bare_ex], path.name
        for e, b in zip(ex, bare_ex):
            for c in e.checker_cells:
                assert se.checker_grade(e, nb.cells[c]) == se.checker_grade(b, bare.cells[c]), (path.name, e.label)
        assert se.lint(bare) == [], path.name


def test_script_on_synthetic_notebook():
    nb = _synthetic()
    st = se.student_notebook(nb)
    text = [_src(c) for c in st.cells]
    assert "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()" in text
    assert "check(f)" in text and "x = 1" in text
    assert leaks(nb, st, min_len=8) == []
    blob = "\n".join(_strings(st))
    for secret in ("secret", "forty-two", "explodes", "design answer", "plot_the_design", "inline solution"):
        assert secret not in blob
    assert "Text after the solution stays." in blob and "After." in blob
    assert "Write f." in blob and "What happens?" in blob and "Design it." in blob
    assert sum("student-answer" in c.metadata.get("tags", []) for c in st.cells) == 3  # ex-b, ex-c, ex-d
    assert se.lint(nb) == []  # unmarked code in a written answer's solution is fine (left out)
    nb.cells[10].source = "f = lambda x: 42 * x"  # but unmarked code that a checker needs is not
    nb.cells.insert(12, nbformat.v4.new_code_cell("check(f)", metadata={"nbgrader": {
        "solution": False, "grade": True, "grade_id": "check-c", "locked": True, "points": 1}}))
    problems = se.lint(nb)
    assert len(problems) == 1 and "without" in problems[0]
    ex = se.scan(nb)[0]
    assert [e.label for e in ex] == ["ex-a", "ex-b", "ex-c", "ex-d"]
    assert [e.written for e in ex] == [False, True, True, True]


def test_stub_code_keeps_indentation_and_code_around():
    src = "import math\n\nclass A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n\nx = 2"
    assert se.stub_code(src) == ("import math\n\nclass A:\n    def f(self):\n        # YOUR CODE HERE\n"
                                 "        raise NotImplementedError()\n\nx = 2")
    with pytest.raises(ValueError):
        se.markers("### BEGIN SOLUTION\nx = 1")


# --------------------------------------------------------------------------------------
# Execution: stubs raise NotImplementedError; reference solutions pass; wrong answers get a message
# --------------------------------------------------------------------------------------

_BUILTINS = set(dir(builtins)) | {"get_ipython", "display", "In", "Out", "exit", "quit", "_"}


def _python(cell):
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(_src(cell))


def names(cell):
    """(names the cell binds at top level, names it needs from earlier cells)."""
    try:
        top = symtable.symtable(_python(cell), "cell", "exec")
    except SyntaxError:
        return set(), set()
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    need = {s.get_name() for s in top.get_symbols() if s.is_referenced() and not s.get_name() in bound}

    def walk(t):
        for child in t.get_children():
            for s in child.get_symbols():
                if s.is_global() and s.is_referenced():
                    need.add(s.get_name())
            walk(child)
    walk(top)
    return bound, need - bound - _BUILTINS


def slice_cells(nb, exercises, regions, full=False):
    """Indices of the ordinary code cells the exercises need, in notebook order."""
    in_region = {c for r in regions for c in r.code_cells}
    targets = {c for e in exercises for c in e.solution_cells + e.checker_cells}
    last = max(targets)
    ordinary = [i for i, c in enumerate(nb.cells[:last]) if c.cell_type == "code"
                and i not in in_region and i not in targets]
    if full:
        return ordinary
    info = {i: names(nb.cells[i]) for i in ordinary}
    need = set().union(*(names(nb.cells[t])[1] for t in targets))
    chosen, changed = set(), True
    while changed:
        changed = False
        for i in ordinary:
            if i not in chosen and info[i][0] & need:
                chosen.add(i)
                need |= info[i][1]
                changed = True
    return sorted(chosen)


_CASES = r'''
import json as _aq_json
from attnlib.checks import CheckFailed as _aq_CheckFailed
import torch as _aq_torch

def _aq_tensor(out, f):
    return f(out) if isinstance(out, _aq_torch.Tensor) else None

def _aq_raise(out):
    raise ValueError("a learner's bug")

_aq_cases = {
    "returns None": lambda out: None,
    "returns a list": lambda out: [1.0, 2.0],
    "returns NaN": lambda out: _aq_tensor(out, lambda t: t.float() * float("nan")) if isinstance(out, _aq_torch.Tensor) else float("nan"),
    "wrong shape": lambda out: _aq_tensor(out, lambda t: t.reshape(-1)[1:]),
    "transposed": lambda out: _aq_tensor(out, lambda t: t.transpose(-2, -1) if t.dim() >= 2 and t.shape[-1] != t.shape[-2] else t.reshape(-1).flip(0) + 1),
    "off by a factor": lambda out: _aq_tensor(out, lambda t: t.float() * 3 + 1) if isinstance(out, _aq_torch.Tensor) else (out * 3 + 1 if isinstance(out, (int, float)) else None),
    "raises ValueError": _aq_raise,
}

def _aq_probe(check, answer, *args, **kwargs):
    results = {}
    def run(label, candidate):
        try:
            r = check(candidate, *args, **kwargs)
        except _aq_CheckFailed as e:  # a wrong answer: the checker raises, with its verdict
            r = e.result
        except Exception as e:
            results[label] = {"raised": f"{type(e).__name__}: {e}"}
            return
        results[label] = {"type": type(r).__name__, "passed": bool(r), "message": str(getattr(r, "message", r))}
    run("None", None)
    run("the number 42", 42)
    for label, g in _aq_cases.items():
        if callable(answer):
            def wrapped(*a, _g=g, **k):
                return _g(answer(*a, **k))
            run(label, wrapped)
        elif label != "raises ValueError":
            try:
                cand = g(answer)
            except Exception:
                continue
            run(label, cand)
    return results
'''


def _probe_code(checker_source):
    """A cell that calls each checker of a checker cell on wrong versions of its answer."""
    from IPython.core.inputtransformer2 import TransformerManager
    import ast
    py = TransformerManager().transform_cell(checker_source)
    calls = []
    for node in ast.walk(ast.parse(py)):
        if isinstance(node, ast.Call) and node.args:
            fname = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if fname.startswith("check_"):
                seg = lambda n: ast.get_source_segment(py, n)  # noqa: E731
                rest = [seg(a) for a in node.args[1:]] + [f"{k.arg}={seg(k.value)}" if k.arg else f"**{seg(k.value)}"
                                                         for k in node.keywords]
                calls.append((fname, f"_aq_probe({seg(node.func)}, {seg(node.args[0])}{''.join(', ' + r for r in rest)})"))
    if not calls:
        return None
    body = "\n".join(f"_aq_out[{name!r}] = {call}" for name, call in calls)
    return f"_aq_out = {{}}\n{body}\nprint('__AQ__' + _aq_json.dumps(_aq_out))"


def execution_plan(nb, full=False):
    """The cells to run in one kernel, each with a role, and the roles' expectations."""
    exercises, regions, plan = se.scan(nb)
    exercises = [e for e in exercises if e.solution_cells or e.checker_cells]
    if not exercises:
        return []
    student = {ci: se.stub_code(_src(c)) if se.markers(_src(c)) else "\n".join(se.STUB)
               for ci, c in enumerate(nb.cells) if plan[ci] == "stub"}
    steps = [("setup", _CASES, None)]
    todo = list(exercises)
    for i in slice_cells(nb, exercises, regions, full=full):
        while todo and max(todo[0].solution_cells + todo[0].checker_cells) < i:
            steps += _exercise_steps(nb, todo.pop(0), student)
        steps.append(("dep", _src(nb.cells[i]), i))
    for e in todo:
        steps += _exercise_steps(nb, e, student)
    return steps


def _exercise_steps(nb, e, student):
    steps = [(f"student:{e.label}", student[c], c) for c in e.solution_cells]
    steps += [(f"student:{e.label}", _src(nb.cells[c]), c) for c in e.checker_cells]
    steps += [(f"reference:{e.label}", _src(nb.cells[c]), c) for c in e.solution_cells + e.checker_cells]
    for c in e.checker_cells:
        probe = _probe_code(_src(nb.cells[c]))
        if probe:
            steps.append((f"probe:{e.label}", probe, c))
    return steps


def run_steps(path, steps):
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for _, s, _ in steps])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return nb.cells


def verdicts(steps, cells, solution_lines):
    """Every problem the run shows, as readable strings (empty: all is well)."""
    problems = []
    groups = {}
    for (role, _, ci), cell in zip(steps, cells):
        groups.setdefault(role, []).append((ci, cell))
    for role, members in groups.items():
        errors = [(ci, o) for ci, c in members for o in c.outputs if o.output_type == "error"]
        texts = [(ci, "".join(_strings(o.get("data", {}).get("text/plain", "")) if "data" in o else o.get("text", "")))
                 for ci, c in members for o in c.outputs]
        kind = role.split(":")[0]
        if kind in ("setup", "dep"):
            problems += [f"{role} cell {ci}: {o.ename}: {o.evalue}" for ci, o in errors]
        elif kind == "student":
            if errors and errors[0][1].ename not in ("NotImplementedError", "NotAnswered"):
                ci, o = errors[0]
                problems.append(f"{role}: the student edition raises {o.ename} (cell {ci}): {o.evalue}; "
                                "expected NotImplementedError from the stub")
            has_checker = any(c.source and se.BEGIN not in c.source and "NotImplementedError()" not in c.source
                              for _, c in members)
            if not errors and has_checker:
                problems.append(f"{role}: the checker ran the stub without raising NotImplementedError")
        elif kind == "reference":
            problems += [f"{role} cell {ci}: {o.ename}: {o.evalue}" for ci, o in errors]
            problems += [f"{role} cell {ci}: checker says {t.strip()[:200]}" for ci, t in texts if "[NOT YET]" in t]
        elif kind == "probe":
            problems += [f"{role} cell {ci}: {o.ename}: {o.evalue}" for ci, o in errors]
            for ci, t in texts:
                if not t.startswith("__AQ__"):
                    continue
                for check, results in json.loads(t.strip()[6:]).items():
                    for case, r in results.items():
                        where = f"{role}: {check}(<{case}>)"
                        if "raised" in r:
                            problems.append(f"{where} crashed: {r['raised']}")
                        elif r["type"] != "CheckResult" or r["passed"] or len(r["message"].strip()) < 10:
                            problems.append(f"{where} gave {r}")
                        elif any(s in r["message"] for s in solution_lines):
                            problems.append(f"{where} reveals the solution: {r['message']}")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=IDS)
def test_stubs_raise_and_reference_solutions_pass(path):
    nb = _read(path)
    full = bool(os.environ.get("STUDENT_FULL"))
    steps = execution_plan(nb, full=full)
    if not steps:
        pytest.skip(f"{path.name} has no code exercise")
    sol = [s.strip() for s in solution_parts(nb)[0] if len(s.strip()) >= 20]
    problems = verdicts(steps, run_steps(path, steps), sol)
    if problems and not full:  # never blame the slicing: rerun with every earlier cell
        steps = execution_plan(nb, full=True)
        problems = verdicts(steps, run_steps(path, steps), sol)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------
# Every checker in attnlib/checks survives odd input (in-process, fast)
# --------------------------------------------------------------------------------------

def _checkers():
    import attnlib.checks as pkg
    found = []
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name == "core":
            continue
        mod = importlib.import_module(f"attnlib.checks.{m.name}")
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if name.startswith("check_") and fn.__module__ == mod.__name__:
                found.append(pytest.param(fn, id=f"{m.name}.{name}"))
    return found


def _raises(*a, **k):
    raise ValueError("a learner's bug")


def _not_implemented(*a, **k):
    raise NotImplementedError


class _Weird:
    """Callable, returns itself, has any attribute: the strangest answer a learner can give."""
    def __call__(self, *a, **k):
        return self


ODD = {
    "None": None,
    "the number 42": 42,
    "a string": "softmax",
    "a function raising ValueError": _raises,
    "a function returning None": lambda *a, **k: None,
    "a function returning NaN": lambda *a, **k: float("nan"),
    "a function returning a string": lambda *a, **k: "an answer",
    "a function returning a NaN tensor": lambda *a, **k: __import__("torch").full((2, 3), float("nan")),
    "a function returning an int tensor": lambda *a, **k: __import__("torch").ones(2, 3, dtype=__import__("torch").long),
    "a callable object": _Weird(),
}


def _call(check, answer):
    """The checker's verdict on ``answer``: the CheckResult it returns, or the one it raises."""
    from attnlib.checks import outcome

    params = [p for p in inspect.signature(check).parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return outcome(check, *([answer] * max(1, len(params))))


@pytest.mark.parametrize("check", _checkers())
def test_checker_survives_odd_input(check):
    from attnlib.checks import CheckResult
    bad = []
    for label, answer in ODD.items():
        try:
            r = _call(check, answer)
        except Exception as e:  # noqa: BLE001
            bad.append(f"{label}: raised {type(e).__name__}: {e}")
            continue
        if not isinstance(r, CheckResult):
            bad.append(f"{label}: returned {type(r).__name__}, not a CheckResult")
        elif r.passed or not r.message.strip():
            bad.append(f"{label}: passed={r.passed}, message={r.message!r}")
    assert not bad, f"{check.__module__}.{check.__name__}:\n" + "\n".join(bad)


@pytest.mark.parametrize("check", _checkers())
def test_checker_says_an_unanswered_stub_is_not_answered(check):
    """A stub raises NotImplementedError; the checker turns it into one line, no traceback."""
    from attnlib.checks import NotAnswered
    with pytest.raises(NotAnswered) as info:
        _call(check, _not_implemented)
    lines = info.value._render_traceback_()
    assert len(lines) == 1 and "not answered yet" in lines[0]
    assert isinstance(info.value, NotImplementedError)


# --------------------------------------------------------------------------------------
# attnlib.checks.core: the safety net every checker stands on
# --------------------------------------------------------------------------------------

def test_core_never_crashes_on_odd_results():
    import torch
    from attnlib.checks import CheckFailed, CheckResult, check_function, checker, outcome

    def ref(x):
        return x * 2

    def inputs(g):
        return (torch.randn(3, 4, generator=g),)

    class Explosive(torch.Tensor):  # a result whose every operation fails
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            raise RuntimeError("boom")

    odd = {
        "explosive tensor": lambda x: torch.zeros(3, 4).as_subclass(Explosive),
        "a tuple": lambda x: (x * 2, None),
        "a numpy array": lambda x: (x * 2).numpy(),
        "complex": lambda x: (x * 2).to(torch.complex64) * float("nan"),
        "bool": lambda x: x > 0,
    }
    for label, fn in odd.items():
        r = check_function(fn, ref, inputs, name="double")
        assert isinstance(r, CheckResult) and not r and r.message, (label, r)
    assert "return only the tensor" in check_function(odd["a tuple"], ref, inputs, name="d").message
    assert "got None" in check_function(None, ref, inputs, name="d").message
    assert "an int" in check_function(lambda x: 3, ref, inputs, name="d").message

    @checker("answer")
    def check_answer(n):
        return CheckResult(n == 4, "answer", "right." if n == 4 else "count again.")
    assert check_answer(4)
    with pytest.raises(CheckFailed) as info:  # a wrong answer raises, with its hint
        check_answer(3)
    assert info.value.result.message == "count again."
    r = outcome(check_answer, torch.ones(2))  # ambiguous truth value: a verdict, no traceback
    assert not r and "could not check" in r.message

    @checker("stub")
    def check_stub(fn):
        return fn()
    with pytest.raises(NotImplementedError):
        check_stub(_not_implemented)


def test_teachers_guide_lists_every_exercise():
    guide = (ROOT / "teachers.md").read_text()
    missing = [f"{p.name}: {e.label}" for p in CHAPTERS for e in se.scan(_read(p))[0] if f"`{e.label}`" not in guide]
    assert not missing, "teachers.md does not list: " + ", ".join(missing)


# --------------------------------------------------------------------------------------
# The self-check questions travel with the student edition
# --------------------------------------------------------------------------------------

def test_student_edition_keeps_the_quizzes(tmp_path, monkeypatch):
    """`make student` copies attnlib/quizzes/ beside the notebooks, where their show_quiz
    cells find it; one chapter alone (`make assignment`) takes its own file only."""
    from attnlib import quiz

    quizzes = sorted((ROOT / "attnlib" / "quizzes").glob("*.json"))
    assert quizzes, "no attnlib/quizzes/*.json"
    out = tmp_path / "student"
    se.build(ROOT / "chapters", out, quiet=True)
    assert sorted(p.name for p in (out / "quizzes").glob("*.json")) == [p.name for p in quizzes]
    for q in quizzes:
        assert (out / "quizzes" / q.name).read_bytes() == q.read_bytes()
    monkeypatch.chdir(out)  # where a student's kernel runs
    assert quiz.find_quiz("00_notation") == out / "quizzes" / "00_notation.json"
    shows = [p.name for p in CHAPTERS if 'show_quiz("' in "".join(
        "".join(c.source) for c in _read(out / p.name).cells if c.cell_type == "code")]
    assert "00_notation.ipynb" in shows, "the student edition of chapter 0 lost its quiz cell"

    one = tmp_path / "assignment"
    se.build(ROOT / "chapters" / "02_shapes.ipynb", one, quiet=True)
    assert [p.name for p in (one / "quizzes").glob("*.json")] == ["02_shapes.json"]


# --------------------------------------------------------------------------------------
# nbgrader's feedback pages are rendered by nbconvert, which knows no MyST
# --------------------------------------------------------------------------------------

def test_plain_markdown_rewrites_directives_and_roles():
    text = "\n".join([
        "`````{exercise} Shapes of $W_Q$", ":label: ex-x", "", "See {cite}`a2017, b2018` and {ref}`this <sec-y>`.",
        "", "````{admonition} Hint", ":class: tip", "```python", "x = 1", "```", "````", "`````", "after"])
    assert se.plain_markdown(text).split("\n") == [
        "**Exercise: Shapes of $W_Q$**", "", "See [a2017, b2018] and *this*.", "", "> **Hint**", ">",
        "> ```python", "> x = 1", "> ```", "after"]
    plain = "Text with `code` and\n```python\n{x}`y`\n```"
    assert se.plain_markdown("Text with `code` and") == "Text with `code` and"
    assert "```python" in se.plain_markdown(plain)


def _edition(path, nbgrader):
    """The student edition of a chapter, or (``nbgrader``) the nbgrader source of its assignment."""
    nb = _read(path)
    return assignment.assignment_notebook(nb, path.stem) if nbgrader else se.student_notebook(nb)


@pytest.mark.parametrize("nbgrader", [False, True], ids=["student", "nbgrader"])
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_myst_markup_left_outside_the_book(path, nbgrader):
    source = _edition(path, nbgrader)
    left = [c.source[:120] for c in source.cells if c.cell_type == "markdown"
            and re.search(r"^\s*(`{3,}|:{3,})\{|\{[\w:-]+\}`", c.source, flags=re.M)]
    assert not left, left
    titles = [c.source for c in source.cells if c.cell_type == "markdown" and "**Exercise: " in c.source]
    assert len(titles) == len(se.scan(_read(path))[0])


# --------------------------------------------------------------------------------------
# Where written answers go, and what they are worth
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("nbgrader", [False, True], ids=["student", "nbgrader"])
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_each_answer_cell_sits_under_its_exercise(path, nbgrader):
    """A written answer's cell comes after its exercise's statement, before the next
    exercise or section (it once landed after "Summary" and "Further reading")."""
    nb = _read(path)
    exercises = se.scan(nb)[0]
    student = _edition(path, nbgrader)
    cells = [c for c in student.cells if c.cell_type == "markdown"]
    for e in exercises:
        if not e.written:
            continue
        statement = next(i for i, c in enumerate(cells) if f"**Exercise: {e.title}**" in c.source)
        answer = next(i for i in range(statement, len(cells))
                      if "student-answer" in cells[i].metadata.get("tags", [])
                      or cells[i].metadata.get("nbgrader", {}).get("grade_id") == f"{e.label}-answer")
        between = [c.source for c in cells[statement + 1:answer]]
        assert not any(re.search(r"^#{1,3} |\*\*Exercise: ", s, flags=re.M) for s in between), \
            f"{e.label}: its answer cell comes after {between}"


def test_marks_agree_between_notebooks_grader_and_guide():
    """What nbgrader awards (the graded cells that replace a checker cell, written answers by
    difficulty) is what the teacher's guide suggests, exercise by exercise, and what the
    chapter's checker cells say (their nbgrader points, or the convention's)."""
    guide = (ROOT / "teachers.md").read_text()
    suggested = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^\| `(ex-[\w-]+)`.*\|\s*(\d+)\s*\|\s*$", guide, flags=re.M)}
    wrong = []
    for p in CHAPTERS:
        nb = _read(p)
        source = assignment.assignment_notebook(nb, p.stem)
        points = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
                  for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")}
        for e in se.scan(nb)[0]:
            ids = [se.checker_grade(e, nb.cells[c])[0] for c in e.checker_cells]
            chapter = sum(se.checker_grade(e, nb.cells[c])[1] for c in e.checker_cells)
            checked = sum(v for k, v in points.items() if any(k == i or k.startswith(i + "-") for i in ids)
                          and not k.endswith("-answer"))
            graded = checked + points.get(f"{e.label}-answer", 0)
            if graded != suggested.get(e.label) or checked != chapter:
                wrong.append(f"{p.name} {e.label}: nbgrader gives {graded} ({checked} automatically, the "
                             f"chapter's checker cells {chapter}), the guide {suggested.get(e.label)}")
    assert suggested, "no marks table in teachers.md"
    assert not wrong, "\n".join(wrong)


def test_guide_gives_each_chapters_exercise_time():
    """The guide's "its exercises' own estimates add up to N" is the sum of the chapter's
    "*Time: N minutes*" lines, so a teacher can plan reading and exercises apart."""
    guide = (ROOT / "teachers.md").read_text()
    wrong = []
    for p in CHAPTERS:
        if not re.match(r"0[1-9]_", p.name):  # the notation chapter's time is all in class
            continue
        section = guide.split(f"](chapters/{p.name})", 1)[1].split("\n### ", 1)[0]
        said = re.search(r"(?:exercises'|their) own estimates add\s+up\s+to\s+(\d+)", section)
        total = sum(int(m.group(1)) for e in se.scan(_read(p))[0]
                    for m in [re.search(r"Time:\s*(\d+)\s*minutes?", e.text)] if m)
        if not said or int(said.group(1)) != total:
            wrong.append(f"{p.name}: the guide says {said.group(1) if said else 'nothing'}, the exercises {total}")
    assert not wrong, "\n".join(wrong)
