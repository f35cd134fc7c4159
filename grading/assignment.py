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
* per exercise: its statement, and what a graded function may use; its code cells with the
  solution between nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers
  (nbgrader stubs them), the checks a chapter runs after a hand-marked function moved to a
  cell of their own that explains a failure in one line; a written answer becomes a
  manually graded answer cell holding the reference answer (nbgrader blanks it); and, for
  the chapter's checker cell, a locked graded cell per checked function. Its visible part is
  the self-check students run (the chapter's checker, through ``attnlib.checks.self_check``,
  which shows a verdict and never raises: it awards and costs nothing). Its hidden part,
  removed from the students' copy, draws inputs with the assignment's seed and prints what
  the function returns (``attnlib.checks.report``); the marks are decided outside the
  notebook (``grading/judge.py``). A checker cell worth ``P`` marks that checks ``k``
  functions gives ``k`` graded cells of ``P / k`` marks when ``k`` divides ``P``, else one
  graded cell that needs them all.

It also prints the statements that mention something the assignment does not contain (a
name of the chapter, its explorer, a section), for the teacher to fix in the chapter.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import copy
import inspect
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import symtable
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "scripts"), str(HERE)]
import references  # noqa: E402
import student_edition as se  # noqa: E402

#: Names a kernel provides without an import.
KERNEL_NAMES = set(dir(builtins)) | {"display", "get_ipython", "In", "Out", "exit", "quit"}
#: Modules whose ``import`` the setup cell keeps even when no exercise's code names them (an answer may).
BASIC_MODULES = ("torch", "numpy", "math")

CHECK_HEADER = "# Check your answer. When your notebook is graded, hidden tests in this cell give the marks."
#: Seconds of CPU for all the hidden calls of one function (the references take milliseconds).
CPU_SECONDS = 1
#: What nbgrader needs beside its configuration in a course folder (the make assignment self-test copies them).
COURSE_FILES = ("nbgrader_config.py", "nbgrader_fixes.py", "judge.py", "scan.py", "references.py")
#: torch's implementations, as a statement names them for students.
TORCH_NAMES = {"scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention",
               "multi_head_attention_forward": "torch.nn.functional.multi_head_attention_forward",
               "MultiheadAttention": "torch.nn.MultiheadAttention"}


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


def hidden_region(name: str, checker: str, seed: int) -> list[str]:
    """The hidden tests of one function: its inputs drawn with ``seed``, its outputs printed."""
    ref = references.reference(checker)
    inputs = f"inputs_for_{name}"
    source = textwrap.dedent(inspect.getsource(ref.inputs)).rstrip()
    source = re.sub(r"^def \w+\(", f"def {inputs}(", source, count=1)
    return [source, "", "", f"print_outputs({name!r}, {inputs}, seed={seed}, trials={ref.trials}, "
                            f"cpu_seconds={CPU_SECONDS})"]


def graded_cell_source(calls: list, modules: dict, seed: int) -> str:
    """A graded cell: the self-check the students run, then nbgrader's hidden region, which
    prints what each function returns on hidden inputs (the grader decides the marks)."""
    visible = [CHECK_HEADER]
    visible += [f"from {modules[c]} import {c}" for c in dict.fromkeys(c for c, _ in calls)]
    visible += ["from attnlib.checks import self_check", ""]
    visible += [f"self_check({c}, {f!r})" for c, f in calls]
    hidden = ["### BEGIN HIDDEN TESTS",
              "# The marks: the functions run on inputs drawn with a seed that students never see, and what",
              "# they return is printed as numbers. nbgrader's grader compares them with the right ones",
              "# outside this notebook (grading/judge.py); the references never enter it.",
              "import math", "", "import torch", "", "from attnlib.checks.report import print_outputs", "", ""]
    for c, f in calls:
        hidden += hidden_region(f, c, seed) + ["", ""]
    return "\n".join(visible + hidden[:-2] + ["### END HIDDEN TESTS"])


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    nbg = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
           "solution": solution, "task": False}
    if points is not None:
        nbg["points"] = points
    return {"nbgrader": nbg}


def graded_cells(exercise, checker_cell, modules: dict, seed: int) -> list:
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
    for c, _ in calls:
        references.reference(c)  # a checker without a hidden test stops here, with a message
    if len(calls) > 1 and points % len(calls) == 0:
        groups = [([call], f"{gid}-{call[1]}", points // len(calls)) for call in calls]
    else:
        groups = [(calls, gid, points)]
    return [nbformat.v4.new_code_cell(graded_cell_source(cs, modules, seed),
                                      metadata=_meta(grade_id, grade=True, locked=True, points=pts))
            for cs, grade_id, pts in groups]


def may_use(calls: list, signatures: dict) -> str:
    """The line under a statement that says what its graded functions may use."""
    names = [f for _, f in calls]
    forbid = [TORCH_NAMES[n] for c, _ in calls for n in references.reference(c).forbid if n in TORCH_NAMES]
    modules = []
    for c, f in calls:
        if references.reference(c).own_module:
            example = references.reference(c).inputs(torch.Generator().manual_seed(0))
            params = signatures.get(f, [])
            modules += [params[k] for k, a in enumerate(example) if k < len(params)
                        and isinstance(a, torch.nn.Module)]
    text = (f"*Marked automatically:* {' and '.join(f'`{n}`' for n in names)} may use torch and your own code "
            "(your functions from earlier exercises too), but not attnlib")
    if forbid:
        text += f", nor torch's own implementation ({', '.join(f'`{n}`' for n in dict.fromkeys(forbid))})"
    text += "".join(f", and may not call `{m}` itself" for m in modules)
    return text + "."


def split_checks(source: str) -> tuple[str, str | None]:
    """A hand-marked code cell's source, and the checks the chapter runs after its functions
    (statements after the last ``def``, without solution markers), if any."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return source, None
    defs = [k for k, node in enumerate(tree.body) if isinstance(node, ast.FunctionDef)]
    if not defs or defs[-1] == len(tree.body) - 1:
        return source, None
    lines = source.split("\n")
    first = tree.body[defs[-1] + 1].lineno - 1
    checks = "\n".join(lines[first:]).strip("\n")
    if se.BEGIN in checks or se.END in checks:
        return source, None
    return "\n".join(lines[:first]).rstrip() + "\n", checks


def checks_cell(label: str, names: list, checks: str):
    """The chapter's own checks of a hand-marked function, explaining a failure in one line."""
    who = " and ".join(f"`{n}`" for n in names) or "your code"
    text = "\n".join([f"# Check {who}. This cell gives no marks: your teacher marks this exercise.",
                      "from attnlib.checks import explained", "",
                      f"with explained({', '.join(names) or 'answer'!r}):",
                      textwrap.indent(checks, "    ")])
    return nbformat.v4.new_code_cell(text, metadata=_meta(f"{label}-check", locked=True))


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
        "**How it is marked.** When your notebook is graded, hidden tests in each check cell run your function "
        "on new inputs and print what it returns; the grader compares those numbers with the right ones, outside "
        "your notebook. The checks you see award nothing by themselves. Under each exercise that is marked "
        f"automatically, a line says what its function may use. Each function gets {CPU_SECONDS} s of CPU for "
        "the hidden inputs "
        "(the right answer takes milliseconds); printing and warnings cost nothing. Written answers, and code "
        "that comes with one, are marked by your teacher, who may also read the code of any answer.",
    ])


#: Words of a statement that point at what only the chapter has.
CHAPTER_ONLY = re.compile(r"\b(explorer|slider|section \d+)\b", re.I)


def statement_notes(exercises, known: set) -> list[str]:
    """What each statement mentions that the assignment does not contain: a name in backticks
    that nothing in the assignment defines, or the chapter's explorer, slider or sections."""
    notes = []
    known = known | {"attnlib"} | set(dir(torch)) | set(dir(torch.Tensor))
    for e in exercises:
        text = re.sub(r"\s+", " ", se.plain_markdown(e.text))
        for m in re.finditer(r"`([A-Za-z_]\w*)[^`]*`", text):
            name = m.group(1)
            if name not in known and not name.isupper():
                around = text[max(0, m.start() - 40):m.end() + 20].strip()
                notes.append(f"{e.label}: `{name}` is not in the assignment (\u2026{around}\u2026)")
        for m in CHAPTER_ONLY.finditer(text):
            around = text[max(0, m.start() - 40):m.end() + 20].strip()
            notes.append(f"{e.label}: the chapter's {m.group(1).lower()} (\u2026{around}\u2026)")
    return list(dict.fromkeys(notes))


def _signatures(source: str) -> dict:
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return {}
    return {n.name: [a.arg for a in n.args.args] for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def assignment_notebook(nb, stem: str, seed: int = 0, notes: list | None = None):
    """nbgrader's source notebook of one chapter's assignment (a new notebook; ``nb`` is left alone).

    ``notes``, if given, receives :func:`statement_notes`."""
    exercises, regions, _ = se.scan(nb)
    if not exercises:
        raise ValueError(f"{stem} has no exercises")
    regions = {r.label: r for r in regions}
    modules = checker_modules(nb)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    body, used, bound, signatures = [], set(), set(), {}
    for e in exercises:
        for c in e.solution_cells:
            u, b = names_used_and_bound(_src(nb.cells[c]))
            used |= u
            bound |= b
            signatures.update(_signatures(_src(nb.cells[c])))
        statement = se.plain_markdown(f"````{{exercise}} {e.title}\n{e.text}\n````")
        calls = [call for c in e.checker_cells for call in se.checker_calls(_src(nb.cells[c]))]
        if calls:
            statement += "\n\n" + may_use(calls, signatures)
        body.append(md(statement, metadata={"id_hint": f"{e.label}-statement"}))
        if e.written:
            body.append(answer_cell(regions[e.label], e.label, se.marks(e)))
        for k, c in enumerate(e.solution_cells):
            cell = nb.cells[c]
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") or e.label + (f"-{k + 1}" if k else "")
            source, checks = split_checks(_src(cell)) if not e.checker_cells else (_src(cell), None)
            body.append(code(source, metadata=_meta(grade_id, solution=True)))
            if checks:
                body.append(checks_cell(e.label, list(_signatures(source)), checks))
        for c in e.checker_cells:
            body += graded_cells(e, nb.cells[c], modules, seed)

    first = min(e.cell for e in exercises)
    setup = code(setup_source(nb, first, used - bound), metadata=_meta("setup", locked=True))
    if notes is not None:
        known = set(KERNEL_NAMES) | bound | {a for params in signatures.values() for a in params}
        known |= names_used_and_bound(setup.source)[1] | {"torch", "math", "np", "nn", "F"}
        notes += statement_notes(exercises, known)
    cells = [md(header(nb, stem)), setup] + body
    for i, cell in enumerate(cells):  # stable ids, so that a rebuilt assignment diffs cleanly
        hint = cell.metadata.pop("id_hint", None)
        cell["id"] = hint or cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{i}"
    out = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(dict(nb.metadata)))
    out.metadata.pop("widgets", None)
    nbformat.validate(out)
    return out


def write_source(chapter: Path, course: Path, seed: int | None = None, notes: list | None = None) -> Path:
    """Write ``course/source/<stem>/<stem>.ipynb`` for the chapter notebook ``chapter``; the hidden
    inputs are drawn with ``seed`` (a random one if None: students cannot compute them ahead)."""
    nb = nbformat.read(chapter, as_version=4)
    target = course / "source" / chapter.stem / chapter.name
    target.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.randbelow(2 ** 31) if seed is None else seed
    nbformat.write(assignment_notebook(nb, chapter.stem, seed, notes), target)
    return target


def new_course(folder: Path) -> None:
    """Put nbgrader's configuration and the course's preprocessors in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in COURSE_FILES:
        if (HERE / name).resolve() != (folder / name).resolve():
            shutil.copy(HERE / name, folder / name)


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
        new_course(scratch)
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


def handed_in(course: Path, stem: str) -> list[Path]:
    """The submissions of ``stem`` already in ``course`` (nbgrader's ``submitted/<student>/<stem>``)."""
    return sorted(p for p in (course / "submitted").glob(f"*/{stem}") if p.is_dir())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("chapter", help="a chapter's name, e.g. 02_shapes (chapters/02_shapes.ipynb)")
    p.add_argument("--course", type=Path, default=HERE, help="nbgrader's course folder (default: grading/)")
    p.add_argument("--seed", type=int, default=None,
                   help="the hidden inputs' seed (default: a random one, which only the gradebook keeps)")
    p.add_argument("--force", action="store_true", help="rebuild even though submissions are in")
    p.add_argument("--no-self-test", action="store_true", help="skip autograding the reference solutions")
    a = p.parse_args(argv)
    stem = Path(a.chapter).stem
    chapter = ROOT / "chapters" / f"{stem}.ipynb"
    if not chapter.exists():
        raise SystemExit(f"no chapter {chapter}")
    if handed_in(a.course, stem) and not a.force:
        raise SystemExit(f"{stem}: {len(handed_in(a.course, stem))} submissions are in {a.course / 'submitted'}. "
                         "Rebuilding now would give the gradebook cells that the handed-out notebooks do not "
                         "have (if the chapter changed since). Grade with what you handed out; to rebuild anyway, "
                         "make assignment ... FORCE=1 (python grading/assignment.py ... --force).")
    notes = []
    new_course(a.course)
    source = write_source(chapter, a.course, a.seed, notes)
    nbgrader(["generate_assignment", stem, "--force"], a.course)
    release = a.course / "release" / stem / f"{stem}.ipynb"
    print(f"{stem}: nbgrader source {source.relative_to(a.course.parent)}, "
          f"students' copy {release.relative_to(a.course.parent)}")
    if notes:
        print("These statements mention what the assignment does not contain; edit them in the chapter, or "
              "tell students where to find it:\n" + "\n".join("  " + n for n in notes))
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
