"""The automatic marks, decided in nbgrader's own process, never in the student's notebook.

nbgrader runs a submission in a kernel that the student's code controls: anything decided
there can be undone there (a verdict, an error, the kernel's reply). So a graded cell only
prints what the student's function returns on hidden inputs (``attnlib.checks.report``), and
:class:`Judge`, which ``nbgrader_config.py`` puts right after nbgrader's ``Execute``, decides:

1. from the gradebook's copy of the graded cell (as ``make assignment`` made it, not the
   student's), which functions it grades (``self_check(check_x, 'name')``), and its hidden
   inputs and seed (``print_outputs('name', inputs_for_name, seed=...)``);
2. it reads the one line ``hidden-outputs name {...}`` that the cell printed for each;
3. it draws the same inputs, runs the reference (``grading/references.py``) and compares;
4. it reads the student's code (``grading/scan.py``): a graded function that reaches attnlib
   or torch's own implementation of the exercise gets no marks; every other use of the
   notebook's machinery (``get_ipython``, ``_ih``, frames, ``eval``...) is listed for the
   teacher, on the cell and in nbgrader's log, and flags the grade for a look;
5. it rewrites the cell's outputs: the self-check stays; errors, stderr and values (what
   nbgrader would score) go; the verdict comes last, a line (full marks) or an error (0),
   which nbgrader's ``SaveAutoGrades`` then records as usual.

:class:`SaveAutoGradesAndFlags` is nbgrader's ``SaveAutoGrades`` that also marks the flagged
grades "needs manual grade", so that formgrader and ``hand_marks.py status`` list them.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import dataclass

import torch
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades

import references
import scan
from attnlib.checks.report import MARK

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


@dataclass
class Part:
    """One function that a graded cell grades."""
    name: str
    checker: str
    inputs: object  # torch.Generator -> tuple, from the cell's hidden region
    seed: int
    trials: int
    cpu_seconds: int


def parts_of(source: str) -> list[Part]:
    """The functions a graded cell grades, read from its source (the gradebook's copy)."""
    tree = ast.parse(scan.python(source))
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    checkers = {c.args[1].value: c.args[0].id for c in calls if getattr(c.func, "id", "") == "self_check"}
    namespace = {"torch": torch, "math": math}
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    exec(compile(ast.Module(body=defs, type_ignores=[]), "<hidden tests>", "exec"), namespace)  # noqa: S102
    parts = []
    for c in calls:
        if getattr(c.func, "id", "") == "print_outputs":
            name, options = c.args[0].value, {k.arg: k.value.value for k in c.keywords}
            parts.append(Part(name, checkers[name], namespace[c.args[1].id], options["seed"],
                              options.get("trials", 3), options.get("cpu_seconds", 1)))
    return parts


# ------------------------------------------------------------------------------ comparing
def describe(got: dict) -> str:
    if "tensor" in got:
        return f"a tensor of shape {tuple(got['tensor'])}"
    if "sequence" in got:
        return f"a {got['type']} of {got['length']} items"
    if got.get("type") == "NoneType":
        return "None (is a `return` missing?)"
    name = got.get("type", "?")
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _arguments(args) -> str:
    """The hidden inputs, as a message names them: "shapes (2, 5, 4), (2, 7, 4)", or "24, 4, 2"."""
    def one(a):
        if isinstance(a, torch.Tensor):
            return str(tuple(a.shape))
        return f"a {type(a).__name__}" if isinstance(a, torch.nn.Module) else repr(a)
    shapes = "shapes " if any(isinstance(a, torch.Tensor) for a in args) else ""
    return shapes + ", ".join(one(a) for a in args)


def compare_tensor(got: dict, expected: torch.Tensor, ref, what: str) -> str | None:
    if "tensor" not in got:
        return f"{what} should be a torch.Tensor, not {describe(got)}."
    if got["tensor"] != list(expected.shape):
        return f"{what} has shape {tuple(got['tensor'])}; it should have shape {tuple(expected.shape)}."
    if got["values"] is None:
        return f"{what} holds {got['dtype']} values; it should hold real numbers."
    values = torch.tensor(got["values"], dtype=torch.float64).reshape(expected.shape)
    if not torch.isfinite(values).all():
        return f"{what} contains NaN or inf."
    difference = (values - expected.double()).abs()
    if not (difference <= ref.atol + ref.rtol * expected.double().abs()).all():
        return f"{what} has the right shape but wrong values (largest difference {float(difference.max()):.3g})."
    return None


def compare(got: dict, expected, ref) -> str | None:
    """Why ``got`` (a result as ``attnlib.checks.report.plain`` describes it) is not ``expected``; None if it is."""
    if ref.output == "tensor":
        return compare_tensor(got, expected, ref, "the result")
    if ref.output == "pair":
        if "sequence" not in got or got["length"] != 2:
            return f"the result should be a pair of tensors, not {describe(got)}."
        return (compare_tensor(got["sequence"][0], expected[0], ref, "the first tensor of the pair")
                or compare_tensor(got["sequence"][1], expected[1], ref, "the second tensor of the pair"))
    if ref.output == "int":
        value = got.get("number")
        if "tensor" in got and got["values"] is not None and len(got["values"]) == 1:
            value = got["values"][0]
        if got.get("type") == "bool" or not isinstance(value, (int, float)) or value != int(value):
            return f"the result should be an int, not {describe(got)}."
        if int(value) != int(expected):
            return "the count is " + ("too high." if value > expected else "too low.")
        return None
    raise ValueError(ref.output)


# ------------------------------------------------------------------------------ one part
def where(nb, cell: int) -> str:
    grade_id = nb.cells[cell].metadata.get("nbgrader", {}).get("grade_id")
    return f"cell {grade_id}" if grade_id else f"cell {cell + 1}, which you added"


def listing(nb, hits) -> str:
    """Hits grouped by cell: "cell ex-ch3-gauge: `get_ipython` (lines 1, 2), `events` (line 2)"."""
    cells = {}
    for h in hits:
        cells.setdefault(h.cell, {}).setdefault(h.what, set()).add(h.line)
    return "; ".join(f"{where(nb, cell)}: " + ", ".join(
        f"`{what}` (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, sorted(lines)))})"
        for what, lines in names.items()) for cell, names in cells.items())


def missing(name: str, nb, student: list[int], broken: list[int]) -> str:
    """Why the notebook has no function ``name``: its cell's syntax error, an error before it, or no answer."""
    defining = [i for i in student if re.search(rf"^\s*def {name}\(", nb.cells[i].source, flags=re.M)]
    if defining:
        cell = nb.cells[defining[-1]]
        if defining[-1] in broken:
            try:
                compile(scan.python(cell.source), "<cell>", "exec")
            except SyntaxError as e:
                return (f"your cell that defines `{name}` has a syntax error (line {e.lineno}: {e.msg}), so "
                        f"`{name}` was never defined. Fix it and run the cell again.")
        errors = [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]
        if errors:
            return f"your cell that defines `{name}` stopped with {errors[0]} before `{name}` was defined."
    return (f"this exercise is not answered yet: `{name}` is not defined (write it in the cell above and run "
            "that cell).")


def verdict(part: Part, printed: list[str], nb, student, statements, broken) -> tuple[str | None, bool]:
    """(why ``part`` gets no marks, or None; whether the grader could not read the cell's output)."""
    ref = references.reference(part.checker)
    lines = [line for line in printed if line.split(" ", 2)[:2] == [MARK, part.name]]
    try:
        report = json.loads(lines[0].split(" ", 2)[2]) if len(lines) == 1 else None
    except (ValueError, IndexError):
        report = None
    if not isinstance(report, dict):
        return (f"the grader could not read what `{part.name}` returned ({len(lines)} results in this cell's "
                "output instead of 1), so it gave no marks: ask your teacher to look at it."), True
    if report.get("missing"):
        return missing(part.name, nb, student, broken), False
    reached = [h for s in scan.reaches(statements, part.name) for h in s.hits
               if h.library and (h.what == scan.LIBRARY or h.what in ref.forbid)]
    if reached:
        what = "attnlib" if reached[0].what == scan.LIBRARY else f"torch's `{reached[0].what}`"
        return (f"`{part.name}` uses {what} ({listing(nb, reached[:1])}): a graded answer may use torch's building blocks and "
                "your own code, not attnlib or torch's own implementation of the exercise. No marks for this "
                "exercise."), False
    if "timeout" in report:
        return (f"`{part.name}` did not finish within {report['timeout']} s of CPU on the hidden inputs (the "
                "reference takes milliseconds): is there an endless loop?"), False
    if "trials" not in report:
        why = report.get("raised") or report.get("ended")
        return f"`{part.name}` stopped the process it ran in ({why}): no marks for this exercise.", False
    expected = references.expected_outputs(part.checker, part.inputs, part.seed, part.trials)
    if len(report["trials"]) != len(expected):
        return f"the grader could not read what `{part.name}` returned: ask your teacher to look at it.", True
    for trial, (args, want) in zip(report["trials"], expected):
        if trial.get("raised") == "NotImplementedError":
            return (f"this exercise is not answered yet: `{part.name}` still raises NotImplementedError (replace "
                    "the stub under `# YOUR CODE HERE` with your code)."), False
        if trial.get("raised"):
            line = f" (line {trial['line']} of its cell)" if trial.get("line") else ""
            return f"`{part.name}` raised {trial['raised']}: {trial['message']}{line}.", False
        if ref.own_module and trial.get("module_calls"):
            return (f"`{part.name}` runs the module it is given (its forward): the exercise is to compute its "
                    "output from its weights. No marks for this exercise."), False
        problem = compare(trial["value"], want, ref)
        if problem:
            return (f"on hidden inputs ({_arguments(args)}), {problem} The check above names the likely "
                    "mistake."), False
    return None, False


# ------------------------------------------------------------------------------ the preprocessors
def _gradebook_files(db_url: str) -> list:
    """The gradebook's sqlite file and the journal files sqlite may add beside it."""
    if not db_url.startswith("sqlite:///"):
        return []
    path = db_url[len("sqlite:///"):]
    return [path, path + "-journal", path + "-wal", path + "-shm"]


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class GuardGradebook(NbGraderPreprocessor):
    """Keep a copy of the gradebook's files while the student's notebook runs (placed right
    before Execute; :class:`Judge` compares after).

    The kernel runs with the teacher's rights, and the gradebook lies a few folders up: a
    submission that rewrote the gradebook's copy of its graded cells (their hidden tests
    removed) got every mark for wrong answers, and the change stayed for the students graded
    after it. Nothing of nbgrader's writes the gradebook while the notebook runs, so any change
    is the notebook's: the Judge puts the files back and gives that submission no marks."""

    def preprocess(self, nb, resources):
        files = _gradebook_files(resources["nbgrader"]["db_url"])
        resources["gradebook_copy"] = {path: _read(path) for path in files}
        return nb, resources


def restore_gradebook(resources) -> bool:
    """Put the gradebook's files back as :class:`GuardGradebook` found them; True if they had changed."""
    changed = False
    for path, before in resources.get("gradebook_copy", {}).items():
        if _read(path) == before:
            continue
        changed = True
        if before is None:
            os.remove(path)
        else:
            with open(path, "wb") as f:
                f.write(before)
    return changed


def _error(text: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename="NoMarks", evalue=text,
                        traceback=[f"\x1b[1;31m\u2718 {text}\x1b[0m"])


def _stdout(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text + "\n")


class Judge(NbGraderPreprocessor):
    """Decide every graded cell with hidden tests from what it printed (see the module's docstring)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        tampered = restore_gradebook(resources)
        if tampered:
            self.log.warning("%s: the notebook changed the gradebook while it ran; put back as it was, and no "
                             "automatic marks for this submission (marked 'needs manual grade')", info["student"])
        with Gradebook(info["db_url"]) as gb:
            cells = {c.name: (c.source, c.locked) for c in gb.find_notebook(info["notebook"], info["assignment"]).source_cells}
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
        student = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not cells.get(ids[i], ("", False))[1]]
        graded = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and BEGIN in cells.get(ids[i], ("",))[0]]
        parts = {i: parts_of(cells[ids[i]][0]) for i in graded}
        forbid = {name for ps in parts.values() for p in ps for name in references.reference(p.checker).forbid}
        statements, broken = scan.scan([(i, nb.cells[i].source) for i in student], forbid)
        flagged = resources.setdefault("flagged_grades", {})
        reached = {id(s) for ps in parts.values() for p in ps for s in scan.reaches(statements, p.name)}
        for i in graded:
            cell = nb.cells[i]
            printed = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
            problems, unreadable = [], False
            for part in parts[i]:
                try:
                    problem, unread = verdict(part, printed.splitlines(), nb, student, statements, broken)
                except Exception as e:  # noqa: BLE001  (a fault of the grader's: this cell alone, 0 and flagged)
                    self.log.error("%s, %s: the judge failed on `%s`: %r", info["student"], ids[i], part.name, e)
                    problem, unread = (f"the grader could not check `{part.name}` ({type(e).__name__}); ask your "
                                       "teacher to look at it."), True
                problems += [problem] if problem else []
                unreadable |= unread
            if tampered:
                problems = ["this notebook changed the grader's files while it ran (the gradebook), so it gets no "
                            "automatic marks: your teacher will look at it."]
                unreadable = True
            # for the teacher: the machinery that code run before this cell uses, and attnlib where no
            # graded function reaches it (there, it is that function's shortcut, judged in its own cell)
            look = [h for s in statements if s.cell < i for h in s.hits
                    if not h.library or (h.what == scan.LIBRARY and id(s) not in reached)]
            self.rewrite(cell, parts[i], problems)
            if look or unreadable:
                hits = listing(nb, look)
                note = f"the code of this notebook uses {hits}" if hits else "this cell's output was not as expected"
                cell.outputs.append(_stdout(f"For your teacher: {note}. They will look at it."))
                flagged[ids[i]] = note
                self.log.warning("%s, %s: to look at (marked 'needs manual grade'): %s", info["student"], ids[i], note)
        return nb, resources

    @staticmethod
    def rewrite(cell, parts, problems):
        """The self-check's outputs stay; what nbgrader would score (errors, stderr, a value) and the
        hidden tests' numbers go; the verdict comes last."""
        kept = []
        for o in cell.outputs:
            if o.output_type in ("error", "execute_result") or (o.output_type == "stream" and o.name == "stderr"):
                continue
            if o.output_type == "stream":
                o.text = "".join(line for line in o.text.splitlines(keepends=True) if not line.startswith(MARK + " "))
                if not o.text:
                    continue
            kept.append(o)
        names = " and ".join(f"`{p.name}`" for p in parts)
        trials = sum(p.trials for p in parts)
        cell.outputs = kept + ([_error(" ".join(problems))] if problems else
                               [_stdout(f"\u2714 {names}: right on all {trials} hidden inputs.")])


class SaveAutoGradesAndFlags(SaveAutoGrades):
    """nbgrader's SaveAutoGrades; a grade that the Judge flagged also "needs manual grade"."""

    def _add_score(self, cell, resources):
        super()._add_score(cell, resources)
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if grade_id in resources.get("flagged_grades", {}):
            grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
            grade.needs_manual_grade = True
            self.gradebook.db.commit()
