"""Build the student edition of the course notebooks: solutions out, checkers in.

    python scripts/student_edition.py chapters student       # build student/*.ipynb
    python scripts/student_edition.py chapters --check       # only report marking problems
    python scripts/student_edition.py chapters --exercises   # list every chapter's exercises

(An nbgrader assignment is built from the same reading of a chapter by
``grading/assignment.py``: ``make assignment CHAPTER=02_shapes``.)

What counts as a solution (the marking convention of every chapter):

* In markdown, everything between a ``{solution-start}`` directive and its
  ``{solution-end}`` directive (the directives included), and every
  ``{solution}`` directive block. Cells wholly inside that range are dropped;
  a cell that holds the exercise text and then opens the solution keeps the
  exercise text.
* In code, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
  (the markers nbgrader uses). They become a stub, indented like the markers::

      # YOUR CODE HERE
      raise NotImplementedError()

  A code cell whose nbgrader metadata says ``solution: true`` but has no markers
  becomes a stub as a whole (as nbgrader does). A code cell inside the solution
  range with neither markers nor metadata is left out, as it should be: it shows
  or uses the solution (e.g. the computation behind a written answer).

Where a solution range had no code stub (a written exercise: predict, explain,
design), the student gets a markdown cell "Your answer here" in its place.
Every output, every execution count, the execution timings and the embedded
widget state are removed from every cell, so that nothing computed from a
solution survives, and the student runs the notebook from a clean state.
Checker cells and every other cell are kept as they are.

The self-check questions travel with the notebooks: ``attnlib/quizzes/<chapter>.json``
(read by ``attnlib.quiz.show_quiz``) is copied into ``<out>/quizzes/`` for every
chapter built. They are not graded.
"""
from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
ANSWER_HERE = "**Your answer here.** *(Replace this text with your answer.)*"
# In scan's plan, the line where a solution started: a written answer's cell goes there.
ANSWER_GOES_HERE = "\x00answer:"

# An opening fence of a MyST directive: ```{name} args  or  :::{name} args
_OPEN = re.compile(r"^(?P<indent>\s{0,3})(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<arg>.*?)\s*$")


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _closing(lines, i, fence) -> int:
    """Index of the line that closes the directive opened at ``lines[i]`` (or the last line)."""
    char, n = fence[0], len(fence)
    for j in range(i + 1, len(lines)):
        s = lines[j].strip()
        if s and set(s) == {char} and len(s) >= n:
            return j
    return len(lines) - 1


_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
_OPTION = re.compile(r"^\s*:[\w-]+:")


def _role(m) -> str:
    role, body = m.group("role"), m.group("body")
    if role in ("cite", "cite:p", "cite:t"):
        return "[" + ", ".join(k.strip() for k in body.split(",")) + "]"
    if role == "eq":
        return f"({body})"
    label = re.match(r"^(.*?)\s*<[^>]*>$", body)  # {ref}`text <target>`
    return f"*{label.group(1)}*" if label else f"*{body}*"


def plain_markdown(text: str) -> str:
    """MyST markup rewritten as plain Markdown, for readers that know no MyST (nbconvert,
    which renders nbgrader's feedback, and JupyterLab without jupyterlab-myst).

    ``{exercise} Title`` becomes a bold "Exercise: Title" line, any other directive
    (``{admonition}``, ``{note}``, ``{dropdown}``...) a block quote with its title in bold,
    ``{math}`` a ``$$...$$`` display; options (``:label:``, ``:class:``) are dropped;
    roles become text (``{cite}`key``` -> ``[key]``). Plain code fences are left alone.
    """
    lines, out, i = text.split("\n"), [], 0
    prose = []  # lines of text outside directives: their roles may span a line break

    def flush():
        out.extend(_roles("\n".join(prose)).split("\n") if prose else [])
        prose.clear()
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        flush()
        end = _closing(lines, i, m.group("fence"))
        body = lines[i + 1:end]
        while body and _OPTION.match(body[0]):
            body.pop(0)
        inner = plain_markdown("\n".join(body)).strip("\n")
        name, title = m.group("name"), _ROLE.sub(_role, m.group("arg"))
        if name == "exercise":
            out += [f"**Exercise: {title}**" if title else "**Exercise**", "", inner]
        elif name == "math":
            out += ["$$", inner, "$$"]
        elif name in ("solution-start", "solution-end"):
            pass
        else:
            head = f"**{title or name.capitalize()}**"
            out += ["> " + head, ">"] + [("> " + l) if l.strip() else ">" for l in inner.split("\n")]
        i = end + 1
    flush()
    return "\n".join(out)


def _roles(text: str) -> str:
    """Roles rewritten as text everywhere in ``text`` but in plain code fences."""
    parts, chunk, fence = [], [], None
    for line in text.split("\n"):
        opening = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and opening:
            parts.append(_ROLE.sub(_role, "\n".join(chunk)) if chunk else None)
            chunk, fence = [line], opening.group(1)
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            parts.append("\n".join(chunk + [line]))
            chunk, fence = [], None
        else:
            chunk.append(line)
    if chunk:
        parts.append("\n".join(chunk) if fence is not None else _ROLE.sub(_role, "\n".join(chunk)))
    return "\n".join(p for p in parts if p is not None)


@dataclass
class Exercise:
    """One ``{exercise}`` block: what the teacher's guide and the tests need."""
    label: str
    title: str
    cell: int
    text: str = ""
    solution_cells: list = field(default_factory=list)  # code cells holding the solution
    checker_cells: list = field(default_factory=list)   # nbgrader grade cells after it
    written: bool = False                               # has a written answer (see :func:`scan`)


@dataclass
class Region:
    """A solution range, from its ``{solution-start}`` (or ``{solution}``) to its end."""
    label: str
    start: tuple  # (cell index, line index)
    end: tuple | None = None
    code_cells: list = field(default_factory=list)
    markdown: list = field(default_factory=list)  # the solution's text, line by line


def markers(source: str) -> list[tuple[int, int]]:
    """The (begin, end) line indices of every BEGIN/END SOLUTION pair in a code cell."""
    pairs, begin = [], None
    for i, line in enumerate(source.split("\n")):
        s = line.strip()
        if s == BEGIN:
            if begin is not None:
                raise ValueError(f"nested {BEGIN!r} at line {i + 1}")
            begin = i
        elif s == END:
            if begin is None:
                raise ValueError(f"{END!r} without {BEGIN!r} at line {i + 1}")
            pairs.append((begin, i))
            begin = None
    if begin is not None:
        raise ValueError(f"{BEGIN!r} at line {begin + 1} is never closed")
    return pairs


def stub_code(source: str) -> str:
    """Replace every BEGIN/END SOLUTION range by the stub, at the markers' indentation."""
    lines = source.split("\n")
    out, last = [], 0
    for b, e in markers(source):
        indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())]
        out += lines[last:b] + [indent + s for s in STUB]
        last = e + 1
    out += lines[last:]
    return "\n".join(out).rstrip() + "\n" if out and out[-1] == "" else "\n".join(out)


def is_solution_code(cell) -> bool:
    return cell.cell_type == "code" and (bool(markers(_src(cell)))
                                         or cell.metadata.get("nbgrader", {}).get("solution", False))


def checker_calls(source: str) -> list[tuple[str, str]]:
    """``[(checker, function name)]`` for every ``check_x(my_function, ...)`` call in a cell, in order."""
    import ast

    from IPython.core.inputtransformer2 import TransformerManager
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return []
    calls = [(n.lineno, n.col_offset, n.func.id, n.args[0].id) for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("check_")
             and n.args and isinstance(n.args[0], ast.Name)]
    return [(c, f) for _, _, c, f in sorted(calls)]


def is_checker(cell) -> bool:
    """A checker cell: nbgrader's grade metadata says so, or it calls a ``check_*`` function on an answer."""
    if cell.cell_type != "code" or is_solution_code(cell):
        return False
    return bool(cell.metadata.get("nbgrader", {}).get("grade", False)) or bool(checker_calls(_src(cell)))


def checker_grade(exercise, cell) -> tuple[str, int]:
    """A checker cell's (grade_id, points): from its nbgrader metadata, or else by the convention
    of every chapter (``check-`` and the label; the exercise's marks, plus one per extra
    function it checks), so that a chapter whose cells lost their metadata is still graded."""
    nbg = cell.metadata.get("nbgrader", {})
    grade_id = nbg.get("grade_id") or "check-" + exercise.label.removeprefix("ex-")
    points = nbg.get("points")
    if points is None:
        points = marks(exercise) + max(0, len(checker_calls(_src(cell))) - 1)
    return grade_id, points


def scan(nb):
    """Walk the notebook once: its exercises, its solution regions, and what each cell becomes.

    Returns ``(exercises, regions, plan)``: ``plan[i]`` is a list of the lines kept from
    markdown cell ``i`` (``None`` to keep the cell whole, ``[]`` to drop it) or, for code
    cells, one of ``"keep"``, ``"stub"``, ``"drop"``.
    """
    exercises, regions, plan = [], [], []
    region = None
    for ci, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            if cell.cell_type == "code":
                if region is not None:
                    region.code_cells.append(ci)
                    plan.append("stub" if is_solution_code(cell) else "drop")
                else:
                    plan.append("stub" if is_solution_code(cell) else "keep")
                if is_checker(cell) and exercises and plan[-1] != "drop":
                    exercises[-1].checker_cells.append(ci)
                if plan[-1] == "stub" and exercises:
                    exercises[-1].solution_cells.append(ci)
            else:
                plan.append("drop" if region is not None else "keep")
            continue
        lines = _src(cell).split("\n")
        kept, i = [], 0
        while i < len(lines):
            m = _OPEN.match(lines[i])
            name = m.group("name") if m else None
            if region is None:
                if name == "solution-start":
                    region = Region(m.group("arg"), (ci, i))
                    kept.append(ANSWER_GOES_HERE + region.label)
                    i = _closing(lines, i, m.group("fence")) + 1
                    continue
                if name == "solution":  # a self-contained solution block
                    j = _closing(lines, i, m.group("fence"))
                    r = Region(m.group("arg"), (ci, i), (ci, j), markdown=lines[i + 1:j])
                    regions.append(r)
                    kept.append(ANSWER_GOES_HERE + r.label)
                    i = j + 1
                    continue
                if name == "exercise":
                    j = _closing(lines, i, m.group("fence"))
                    body = lines[i + 1:j]
                    label = next((b.split(":", 2)[2].strip() for b in body
                                  if b.strip().startswith(":label:")), "")
                    text = "\n".join(b for b in body if not re.match(r"^\s*:[\w-]+:", b)).strip()
                    exercises.append(Exercise(label, m.group("arg"), ci, text))
                    kept += lines[i:j + 1]
                    i = j + 1
                    continue
                kept.append(lines[i])
                i += 1
            else:
                if name == "solution-end":
                    region.end = (ci, i)
                    regions.append(region)
                    region = None
                    i = _closing(lines, i, m.group("fence")) + 1
                    continue
                region.markdown.append(lines[i])
                i += 1
        plan.append(None if kept == lines else kept)
    if region is not None:
        regions.append(region)  # never closed: lint reports it
    # A written answer: no code to fill in, or code that no checker marks next to a
    # solution text (e.g. "explain why, then write f": the teacher marks both by hand).
    prose = {r.label for r in regions if "".join(r.markdown).strip()}
    for ex in exercises:
        ex.written = not ex.solution_cells or (not ex.checker_cells and ex.label in prose)
    return exercises, regions, plan


#: Marks by difficulty, the scale of teachers.md ("Suggested marks").
MARKS = {"easy": 1, "medium": 2, "hard": 3, "open": 3}


def marks(exercise) -> int:
    """The marks an exercise's text earns by its stated difficulty (``*Difficulty: medium.*``); 1 if none."""
    m = re.search(r"Difficulty:\s*(\w+)", exercise.text)
    return MARKS.get(m.group(1).lower(), 1) if m else 1


def _answer_cell():
    """What replaces a written solution: an empty answer cell."""
    return nbformat.v4.new_markdown_cell(ANSWER_HERE, metadata={"tags": ["student-answer"]})


def student_notebook(nb):
    """The student edition of one notebook (a new object; ``nb`` is left alone).

    The MyST markup becomes plain Markdown (:func:`plain_markdown`), which Jupyter and Colab
    render. (``grading/assignment.py`` builds nbgrader's source of an assignment instead.)
    """
    nb = copy.deepcopy(nb)
    exercises, regions, plan = scan(nb)
    written = {e.label for e in exercises if e.written}
    cells = []
    for ci, (cell, what) in enumerate(zip(nb.cells, plan)):
        if cell.cell_type == "code":
            if what == "drop":  # code that computes or shows a written answer
                continue
            if what == "stub":
                src = _src(cell)
                cell.source = stub_code(src) if markers(src) else "\n".join(STUB)
                nbg = dict(cell.metadata.get("nbgrader", {}))
                nbg.pop("checksum", None)
                cell.metadata = {k: v for k, v in
                                 (("nbgrader", nbg), ("tags", cell.metadata.get("tags"))) if v}
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown" and what is not None:
            # the kept text, split where a solution started: a written answer's cell goes there
            parts, answers = [[]], []
            for line in what:
                if line.startswith(ANSWER_GOES_HERE):
                    answers.append(line[len(ANSWER_GOES_HERE):])
                    parts.append([])
                else:
                    parts[-1].append(line)
            for k, part in enumerate(parts):
                text = "\n".join(part).strip("\n")
                if text.strip():
                    piece = copy.deepcopy(cell) if k else cell
                    piece.source = text
                    piece.pop("attachments", None)
                    piece.metadata.pop("execution", None)
                    if k and "id" in cell:
                        piece["id"] = f"{cell['id']}-{k}"
                    cells.append(piece)
                if k < len(answers) and answers[k] in written:
                    cells.append(_answer_cell())
            continue
        elif cell.cell_type == "raw" and what == "drop":
            continue
        cell.metadata.pop("execution", None)
        cells.append(cell)
    # Jupyter and Colab render no MyST, and the
    # jupyterlab-myst extension does not load in JupyterLab 4.6 (its 2.7.0 needs @jupyter/ydoc 3)
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(_src(cell))
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def lint(nb) -> list[str]:
    """Marking problems: what would make the student edition leak or fail to run."""
    problems = []
    try:
        exercises, regions, plan = scan(nb)
    except ValueError as e:
        return [str(e)]
    labels = [e.label for e in exercises]
    for r in regions:
        if r.end is None:
            problems.append(f"solution {r.label!r} (cell {r.start[0]}) has no {{solution-end}}")
        if r.label not in labels:
            problems.append(f"solution {r.label!r} (cell {r.start[0]}) names no exercise label")
        checked = any(e.checker_cells for e in exercises if e.label == r.label)
        for c in r.code_cells:
            # code that shows a written answer may go unmarked (it is left out); code that a
            # checker needs must be marked, or the student edition has nothing to fill in
            if plan[c] == "drop" and checked:
                problems.append(f"cell {c}: code inside solution {r.label!r} without "
                                f"{BEGIN}/{END} markers or nbgrader solution metadata")
    solved = {r.label for r in regions}
    for e in exercises:
        if not e.label:
            problems.append(f"exercise {e.title!r} (cell {e.cell}) has no :label:")
        elif e.label not in solved:
            problems.append(f"exercise {e.label!r} (cell {e.cell}) has no solution")
    ids = []
    for ci, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        nbg = cell.metadata.get("nbgrader")
        try:
            has_markers = bool(markers(_src(cell)))
        except ValueError as err:
            problems.append(f"cell {ci}: {err}")
            continue
        in_region = any(r.start[0] < ci and (r.end is None or ci < r.end[0]) for r in regions)
        if has_markers and nbg and not nbg.get("solution"):
            problems.append(f"cell {ci}: solution markers, but nbgrader metadata with solution: false")
        if has_markers and not in_region:
            problems.append(f"cell {ci}: solution code outside any {{solution-start}}/{{solution-end}}")
        if nbg:
            if not nbg.get("grade_id"):
                problems.append(f"cell {ci}: nbgrader metadata without a grade_id")
            ids.append(nbg.get("grade_id"))
            if nbg.get("grade") and not nbg.get("solution"):
                if not nbg.get("locked"):
                    problems.append(f"cell {ci}: checker cell (grade: true) is not locked")
                if "points" not in nbg:
                    problems.append(f"cell {ci}: checker cell (grade: true) has no points")
    dup = sorted({i for i in ids if i and ids.count(i) > 1})
    if dup:
        problems.append(f"grade_id used more than once: {', '.join(dup)}")
    return problems


def notebooks(src: Path) -> list[Path]:
    """The notebooks ``src`` names: itself if it is a notebook, else the ones in the folder."""
    if src.is_file() and src.suffix == ".ipynb":
        return [src]
    found = sorted(src.glob("*.ipynb")) if src.is_dir() else []
    if not found:
        raise SystemExit(f"{src}: neither a notebook nor a folder of notebooks")
    return found


def copy_quizzes(out_dir: Path, paths) -> list[Path]:
    """Copy the self-check questions of the notebooks ``paths`` (``attnlib/quizzes/<stem>.json``)
    into ``out_dir/quizzes/``, where their ``show_quiz`` cell finds them first (a teacher may edit them)."""
    from attnlib.quiz import QUIZ_DIR
    copied = []
    for path in paths:
        q = QUIZ_DIR / (path.stem + ".json")
        if q.exists():
            (out_dir / "quizzes").mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copy2(q, out_dir / "quizzes" / q.name)))
    return copied


def build(src: Path, out_dir: Path, quiet=False) -> list[Path]:
    """Write the student edition of ``src`` (one notebook, or a folder of them) into ``out_dir``."""
    paths = notebooks(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        student = student_notebook(nb)
        target = out_dir / path.name
        nbformat.write(student, target)
        written.append(target)
        if not quiet:
            exercises, _, _ = scan(nb)
            print(f"{path.name}: {len(exercises)} exercises, "
                  f"{sum(len(e.solution_cells) for e in exercises)} solution cells -> {target}")
            for m in lint(nb):
                print(f"  warning: {m}")
    quizzes = copy_quizzes(out_dir, paths)
    if quizzes and not quiet:
        print(f"{len(quizzes)} self-check question file(s) -> {out_dir / 'quizzes'}")
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="a chapter notebook, or a folder of them (chapters)")
    p.add_argument("out", type=Path, nargs="?", default=Path("student"), help="where the student edition goes")
    p.add_argument("--check", action="store_true", help="only report marking problems; exit 1 if any")
    p.add_argument("--exercises", action="store_true", help="list each chapter's exercises")
    a = p.parse_args(argv)
    if a.check or a.exercises:
        bad = 0
        for path in notebooks(a.src):
            nb = nbformat.read(path, as_version=4)
            problems = lint(nb)
            bad += len(problems)
            print(f"{path.name}: {len(problems)} marking problems" if a.check else path.name)
            for pr in problems:
                print(f"  {pr}")
            if a.exercises:
                for e in scan(nb)[0]:
                    kind = "written" if e.written else f"code, {len(e.checker_cells)} checker cell(s)"
                    meta = " ".join(l.strip() for l in e.text.split("\n") if "Difficulty" in l or "Time" in l)
                    print(f"  {e.label}: {e.title} [{kind}] {meta}")
        return 1 if (a.check and bad) else 0
    build(a.src, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
