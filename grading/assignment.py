"""One chapter as one nbgrader assignment: its exercises only, graded by hidden tests.

    python grading/assignment.py 02_shapes        # what `make assignment CHAPTER=02_shapes` runs

writes nbgrader's source ``grading/source/02_shapes/02_shapes.ipynb``, runs ``nbgrader
generate_assignment`` (the students' copy lands in ``grading/release/02_shapes/``), then
autogrades the reference solutions once in a scratch copy of the course, to check that they
get every automatic mark and to time one submission on this machine.

The assignment is built from what the chapter's exercises carry, so that it follows the
chapter when its text and experiments change (``scripts/student_edition.py`` reads them):

* a header, then one setup cell: only the statements of the chapter's earlier cells that
  bind a name the exercises' code uses (found with :mod:`symtable`), plus its imports of
  torch, numpy and math. No experiment runs, so a submission is graded in seconds;
* per exercise: its statement; its code cells with the solution between nbgrader's
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers (nbgrader stubs them); a written
  answer becomes a manually graded answer cell holding the reference answer (nbgrader
  blanks it); and, for the chapter's checker cell, a locked graded cell per checked
  function. Its visible part is the self-check students run (the chapter's checker, called
  through ``attnlib.checks.self_check``, which shows a verdict and never raises, so it awards
  and costs nothing); its hidden part (``grading/hidden.py`` with the reference values of
  ``grading/references.py``), removed from the students' copy, awards the marks. A checker
  cell worth ``P`` marks that checks ``k`` functions gives ``k`` graded cells of ``P / k``
  marks when ``k`` divides ``P``, else one graded cell that needs them all.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import copy
import inspect
import os
import pprint
import re
import resource
import shutil
import subprocess
import sys
import symtable
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "scripts"), str(HERE)]
import hidden  # noqa: E402
import references  # noqa: E402
import student_edition as se  # noqa: E402

#: Names a kernel provides without an import.
KERNEL_NAMES = set(dir(builtins)) | {"display", "get_ipython", "In", "Out", "exit", "quit"}
#: Modules whose ``import`` the setup cell keeps even when no exercise's code names them (an answer may).
BASIC_MODULES = ("torch", "numpy", "math")

CHECK_HEADER = "# Check your answer. When your notebook is graded, hidden tests in this cell give the marks."


def _src(cell) -> str:
    return "".join(cell.source) if isinstance(cell.source, list) else cell.source


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


# ------------------------------------------------------------------------------ names
def names_used_and_bound(source: str) -> tuple[set, set]:
    """(global names the code reads, names its top level binds)."""
    try:
        top = symtable.symtable(_python(source), "<cell>", "exec")
    except SyntaxError:
        return set(), set()
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    used = set()

    def walk(table):
        for s in table.get_symbols():
            if table is top:
                if s.is_referenced():
                    used.add(s.get_name())
            elif s.is_global() and (s.is_referenced() or s.is_assigned()):
                used.add(s.get_name())
        for child in table.get_children():
            walk(child)
    walk(top)
    return used, bound


def _statement_names(node) -> set:
    """Names a top-level statement binds."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return names_used_and_bound(ast.unparse(node))[1]


def _only(node, keep: set):
    """An import statement reduced to the names in ``keep`` (other statements whole)."""
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
        return node
    node = copy.deepcopy(node)
    node.names = [a for a in node.names if (a.asname or a.name).split(".")[0] in keep]
    return node


def setup_source(nb, first: int, needed: set) -> str:
    """The statements of cells ``0..first-1`` that bind ``needed`` names (and what they need)."""
    statements = []  # (cell index, statement) in order
    for ci, cell in enumerate(nb.cells[:first]):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(_src(cell)))
        except SyntaxError:
            continue
        statements += [(ci, node) for node in tree.body]
    for _, node in statements:  # the chapter's basic imports (import torch, numpy as np): an answer may use them
        if isinstance(node, ast.Import):
            needed |= {(a.asname or a.name).split(".")[0] for a in node.names
                       if a.name.split(".")[0] in BASIC_MODULES}
    binds = [_statement_names(node) for _, node in statements]

    def slice_for(names):
        keep: dict[int, set] = {}
        todo, done = sorted(set(names) - KERNEL_NAMES), set()
        while todo:
            name = todo.pop()
            if name in done:
                continue
            done.add(name)
            for k in range(len(statements) - 1, -1, -1):  # the last binding before the exercises
                if name in binds[k]:
                    keep.setdefault(k, set()).add(name)
                    if not isinstance(statements[k][1], (ast.Import, ast.ImportFrom)):
                        todo += sorted(names_used_and_bound(ast.unparse(statements[k][1]))[0] - KERNEL_NAMES)
                    break
        return keep

    keep = slice_for(needed)
    lines = [ast.unparse(_only(statements[k][1], keep[k])) for k in sorted(keep)]
    return "\n".join(["# What the exercises below use from the chapter."] + lines)


# ------------------------------------------------------------------------------ checker calls
def checker_modules(nb) -> dict[str, str]:
    """``{checker name: module}`` from the imports of the chapter's code cells."""
    modules = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(_src(cell)))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    if a.name.startswith("check_"):
                        modules[a.asname or a.name] = node.module
    return modules


def graded_cell_source(label: str, parts: list, checkers: list, modules: dict) -> str:
    """A graded cell: the self-check the students run, then nbgrader's hidden region (the marks)."""
    visible = [CHECK_HEADER]
    visible += [f"from {modules[c]} import {c}" for c in dict.fromkeys(checkers)]
    visible += ["from attnlib.checks import self_check", ""]
    visible += [f"self_check({c}, {p['name']!r})" for c, p in zip(checkers, parts)]
    call = f"hidden_tests({label!r}, {pprint.pformat(parts, width=110, compact=True)}, " \
           f"time_limit={references.TIME_LIMIT!r})"
    return "\n".join(visible + ["### BEGIN HIDDEN TESTS", inspect.getsource(hidden.hidden_tests).rstrip(),
                                "", "", call, "### END HIDDEN TESTS"])


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    nbg = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
           "solution": solution, "task": False}
    if points is not None:
        nbg["points"] = points
    return {"nbgrader": nbg}


def graded_cells(exercise, checker_cell, modules: dict, seed: int = 0) -> list:
    """The graded cells that replace a chapter's checker cell: one per checked function when
    its marks divide evenly, else one that needs every function right."""
    label = exercise.label
    gid, points = se.checker_grade(exercise, checker_cell)
    calls = se.checker_calls(_src(checker_cell))
    if not calls:
        raise ValueError(f"{label}: its checker cell ({gid}) calls no check_* function on an answer")
    missing = [c for c, _ in calls if c not in modules]
    if missing:
        raise ValueError(f"{label}: no import of {', '.join(missing)} in the chapter")
    parts = [references.part(checker, fn, seed) for checker, fn in calls]
    if len(parts) > 1 and points % len(parts) == 0:
        groups = [([k], f"{gid}-{p['name']}", points // len(parts)) for k, p in enumerate(parts)]
    else:
        groups = [(list(range(len(parts))), gid, points)]
    return [nbformat.v4.new_code_cell(
                graded_cell_source(label, [parts[k] for k in ks], [calls[k][0] for k in ks], modules),
                metadata=_meta(grade_id, grade=True, locked=True, points=pts))
            for ks, grade_id, pts in groups]


def answer_cell(region, label: str, points: int):
    """A written answer: a manually graded answer cell worth ``points``, holding the reference
    answer (the solution's text), which nbgrader replaces with *YOUR ANSWER HERE* in the release."""
    text = se.plain_markdown("\n".join(region.markdown).strip()) or se.ANSWER_HERE
    return nbformat.v4.new_markdown_cell(text, metadata=_meta(f"{label}-answer", grade=True, solution=True,
                                                              points=points))


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^# (.+)$", _src(cell), flags=re.M)
            if m:
                return m.group(1).strip()
    return "this chapter"


def header(nb, stem: str) -> str:
    title = _title(nb)
    return "\n".join([
        f"# Exercises: {title}",
        "",
        f"The exercises of the chapter *{title}* (`chapters/{stem}.ipynb`). Read the chapter first, in the "
        "book or in its student edition; the names the exercises mention come from there.",
        "",
        "Write your code where a cell says `# YOUR CODE HERE` and your answers where one says *YOUR ANSWER "
        "HERE*, and run the check under each exercise. Before you hand the notebook in, run *Restart & Run All*.",
        "",
        "**How it is marked.** Hidden tests, added when your notebook is graded, run each function you wrote "
        "on new inputs; the checks you see award nothing by themselves. A graded function may use torch and "
        "your own code, but not attnlib, nor torch's own implementation of what the exercise asks for "
        f"(`torch.nn.functional.scaled_dot_product_attention`, `nn.MultiheadAttention`): such an answer gets "
        f"no marks, with a message saying why. Each call may use {references.TIME_LIMIT:g} s of CPU (the "
        "references take milliseconds). Written answers are marked by hand.",
    ])


def assignment_notebook(nb, stem: str, seed: int = 0):
    """nbgrader's source notebook of one chapter's assignment (a new notebook; ``nb`` is left alone)."""
    exercises, regions, _ = se.scan(nb)
    if not exercises:
        raise ValueError(f"{stem} has no exercises")
    regions = {r.label: r for r in regions}
    modules = checker_modules(nb)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    body, used, bound = [], set(), set()
    for e in exercises:
        body.append(md(se.plain_markdown(f"````{{exercise}} {e.title}\n{e.text}\n````"),
                       metadata={"id_hint": f"{e.label}-statement"}))
        if e.written:
            body.append(answer_cell(regions[e.label], e.label, se.marks(e)))
        for k, c in enumerate(e.solution_cells):
            cell = nb.cells[c]
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") or e.label + (f"-{k + 1}" if k else "")
            body.append(code(_src(cell), metadata=_meta(grade_id, solution=True)))
        for c in e.checker_cells:
            body += graded_cells(e, nb.cells[c], modules, seed)
        for c in e.solution_cells:
            u, b = names_used_and_bound(_src(nb.cells[c]))
            used |= u
            bound |= b

    first = min(e.cell for e in exercises)
    setup = code(setup_source(nb, first, used - bound), metadata=_meta("setup", locked=True))
    cells = [md(header(nb, stem)), setup] + body
    for i, cell in enumerate(cells):  # stable ids, so that a rebuilt assignment diffs cleanly
        hint = cell.metadata.pop("id_hint", None)
        cell["id"] = hint or cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{i}"
    out = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(dict(nb.metadata)))
    out.metadata.pop("widgets", None)
    nbformat.validate(out)
    return out


def write_source(chapter: Path, course: Path, seed: int = 0) -> Path:
    """Write ``course/source/<stem>/<stem>.ipynb`` for the chapter notebook ``chapter``."""
    nb = nbformat.read(chapter, as_version=4)
    target = course / "source" / chapter.stem / chapter.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(assignment_notebook(nb, chapter.stem, seed), target)
    return target


# ------------------------------------------------------------------------------ make assignment
def nbgrader(args, cwd: Path, check=True):
    """Run nbgrader's command line in ``cwd`` (the course folder); its output is returned, not shown."""
    bin_dir = Path(sys.executable).parent  # nbgrader calls alembic, which lives beside it
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"nbgrader {' '.join(args)} failed")
    return proc


def self_test(course: Path, stem: str, copies: int = 2) -> tuple[float, float, float, float]:
    """Autograde the reference solutions, handed in by ``copies`` students, in a scratch copy of ``course``.

    Returns (automatic score of each, its maximum, wall and CPU seconds per submission, the CPU
    of nbgrader and its kernels; nbgrader's start is shared out over the copies, as in a class).
    """
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copy(course / "nbgrader_config.py", scratch)
        shutil.copy(course / "gradebook.db", scratch)
        shutil.copytree(course / "source" / stem, scratch / "source" / stem)
        students = [f"reference-solutions-{k + 1}" for k in range(copies)]
        for student in students:
            sub = scratch / "submitted" / student / stem
            sub.mkdir(parents=True)
            shutil.copy(course / "source" / stem / f"{stem}.ipynb", sub)
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        nbgrader(["autograde", stem], scratch)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
            scores = [gb.find_submission_notebook(stem, stem, s) for s in students]
            return (min(nb.code_score for nb in scores), scores[0].max_code_score,
                    wall / copies, cpu / copies)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("chapter", help="a chapter's name, e.g. 02_shapes (chapters/02_shapes.ipynb)")
    p.add_argument("--course", type=Path, default=HERE, help="nbgrader's course folder (default: grading/)")
    p.add_argument("--seed", type=int, default=0, help="draws other hidden inputs (default 0)")
    p.add_argument("--no-self-test", action="store_true", help="skip autograding the reference solutions")
    a = p.parse_args(argv)
    stem = Path(a.chapter).stem
    chapter = ROOT / "chapters" / f"{stem}.ipynb"
    if not chapter.exists():
        raise SystemExit(f"no chapter {chapter}")
    source = write_source(chapter, a.course, a.seed)
    nbgrader(["generate_assignment", stem, "--force"], a.course)
    release = a.course / "release" / stem / f"{stem}.ipynb"
    print(f"{stem}: nbgrader source {source.relative_to(a.course.parent)}, "
          f"students' copy {release.relative_to(a.course.parent)}")
    if a.no_self_test:
        return 0
    score, top, wall, cpu = self_test(a.course, stem)
    if score != top:
        raise SystemExit(f"{stem}: the reference solutions got {score:g} of {top:g} automatic marks")
    busy = f" on this machine as busy as it is now ({max(1, round(100 * cpu / 60))} on a free core)" \
        if wall > 1.3 * cpu else ""
    print(f"Self-test: the reference solutions get {score:g} of {top:g} automatic marks. Autograding took "
          f"{wall:.1f} s per submission here ({cpu:.1f} s of CPU), so a class of 100 takes about "
          f"{max(1, round(100 * wall / 60))} minutes{busy}: nbgrader autograde grades one submission "
          "after another, on one core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
