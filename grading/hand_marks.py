"""Hand-marking without a server: what a teacher marks, in a spreadsheet.

nbgrader's formgrader (JupyterLab, *Nbgrader > Formgrader*) is the usual way to mark the
written answers. Where no Jupyter server can run, mark them in a CSV file instead; run
these from ``grading/``, after ``nbgrader autograde``:

    python hand_marks.py sheet 02_shapes --out marks-02_shapes.csv
        # one row per student and thing to mark: each written answer (with the code the
        # exercise asks for beside it, if any) and each automatic mark that the grader
        # flagged for a look; the student's answer, the reference, the maximum, the
        # automatic mark and the grader's note, and empty `points` and `comment` columns
        # (nbgrader keeps comments on written answers only; an answer cell left as
        # released already scores 0: nbgrader marks it, and it is not listed)
    python hand_marks.py apply 02_shapes marks-02_shapes.csv
        # checks every row first (student, cell, points), then writes the points and
        # comments into gradebook.db; rows left empty are skipped
    python hand_marks.py status 02_shapes
        # what is not marked yet

then ``nbgrader generate_feedback`` and ``nbgrader export`` as usual: the feedback shows the
points and comments, the export counts them.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import nbformat

FIELDS = ["student", "cell", "max_points", "automatic", "points", "comment", "note", "answer", "reference"]


def _gradebook(course: Path):
    from nbgrader.api import Gradebook
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}")


def exercise_of(source_nb) -> dict:
    """``{grade_id: the exercise's label}`` for every cell of an assignment's source: a cell
    belongs to the exercise whose statement (cell id ``<label>-statement``) comes last before it."""
    found, label = {}, None
    for cell in source_nb.cells:
        if cell.get("id", "").endswith("-statement"):
            label = cell["id"].removesuffix("-statement")
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id and label:
            found[grade_id] = label
    return found


def _cells(path: Path, grade_ids: list[str]) -> str:
    """The text of the cells ``grade_ids`` of a notebook, in the notebook's order, one after another."""
    if not path.exists():
        return ""
    cells = [c for c in nbformat.read(path, as_version=4).cells
             if c.metadata.get("nbgrader", {}).get("grade_id") in grade_ids]
    return "\n\n".join(c.source.strip() for c in cells)


def _note(path: Path, grade_id: str) -> str:
    """The grader's "For your teacher" line in a graded cell's output."""
    if not path.exists():
        return ""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            for o in cell.get("outputs", []):
                for line in o.get("text", "").splitlines():
                    if line.startswith("For your teacher:"):
                        return line.removeprefix("For your teacher:").strip()
    return ""


def to_mark(gb, assignment: str):
    """``(student, notebook, grade, written)`` for each grade to mark: the written answers that the
    student changed (nbgrader scores an untouched one 0 by itself), and the automatic marks the
    grader flagged ("needs manual grade")."""
    for submission in gb.find_assignment(assignment).submissions:
        for nb in submission.notebooks:
            written = {c.name for c in gb.find_notebook(nb.name, assignment).solution_cells}
            for grade in nb.grades:
                if grade.name in written and (grade.needs_manual_grade or grade.manual_score is not None):
                    yield submission.student.id, nb.name, grade, True
                elif grade.name not in written and grade.needs_manual_grade:
                    yield submission.student.id, nb.name, grade, False


def _comment(gb, cell, notebook, assignment, student) -> str:
    """The comment on a written answer (nbgrader keeps none on a code cell's mark)."""
    from nbgrader.api import MissingEntry
    try:
        return gb.find_comment(cell, notebook, assignment, student).manual_comment or ""
    except MissingEntry:
        return ""


def sheet(course: Path, assignment: str, out) -> int:
    rows = []
    with _gradebook(course) as gb:
        for student, notebook, grade, written in to_mark(gb, assignment):
            source_path = course / "source" / assignment / f"{notebook}.ipynb"
            answer_path = course / "autograded" / student / assignment / f"{notebook}.ipynb"
            source = nbformat.read(source_path, as_version=4)
            label = exercise_of(source).get(grade.name)
            code = [c.metadata["nbgrader"]["grade_id"] for c in source.cells if c.cell_type == "code"
                    and c.metadata.get("nbgrader", {}).get("solution") and exercise_of(source).get(
                        c.metadata["nbgrader"]["grade_id"]) == label]
            ids = ([grade.name] if written else []) + code
            rows.append({
                "student": student, "cell": grade.name, "max_points": f"{grade.max_score:g}",
                "automatic": "" if written else f"{grade.auto_score:g}",
                "points": "" if grade.manual_score is None else f"{grade.manual_score:g}",
                "comment": _comment(gb, grade.name, notebook, assignment, student),
                "note": "" if written else _note(answer_path, grade.name),
                "answer": _cells(answer_path, ids), "reference": _cells(source_path, ids),
            })
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def check_rows(gb, assignment: str, rows: list[dict]) -> tuple[list, list[str]]:
    """``([(row, notebook, grade, points)], problems)``: every filled-in row checked, each problem
    naming its row (row 2 is the first under the header, as a spreadsheet counts)."""
    from nbgrader.api import MissingEntry

    cells = {c.name: nb.name for nb in gb.find_assignment(assignment).notebooks
             for c in gb.find_notebook(nb.name, assignment).grade_cells}
    good, problems = [], []
    for k, r in enumerate(rows, start=2):
        text = (r.get("points") or "").strip()
        if not text:
            continue
        where = f"row {k} ({r.get('student', '?')}, {r.get('cell', '?')})"
        if r.get("cell") not in cells:
            problems.append(f"{where}: no cell {r.get('cell')!r} in {assignment}; the cells are "
                            + ", ".join(sorted(cells)))
            continue
        try:
            points = float(text)
        except ValueError:
            hint = " (write decimals with a dot: 0.5)" if re.fullmatch(r"\d+,\d+", text) else ""
            problems.append(f"{where}: points {text!r} is not a number{hint}")
            continue
        try:
            grade = gb.find_grade(r["cell"], cells[r["cell"]], assignment, r.get("student", ""))
        except MissingEntry:
            problems.append(f"{where}: no submission of {assignment} by {r.get('student')!r} in the gradebook")
            continue
        if not 0 <= points <= grade.max_score:
            problems.append(f"{where}: {points:g} points, but the most is {grade.max_score:g}")
            continue
        good.append((r, cells[r["cell"]], grade, points))
    return good, problems


def apply(course: Path, assignment: str, path: Path) -> int:
    """Write the sheet's points and comments into the gradebook, or nothing if a row is wrong."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with _gradebook(course) as gb:
        good, problems = check_rows(gb, assignment, rows)
        if problems:
            raise SystemExit(f"{path}: nothing written, {len(problems)} rows to fix:\n  " + "\n  ".join(problems))
        for r, notebook, grade, points in good:
            grade.manual_score, grade.needs_manual_grade = points, False
            if grade.name in {c.name for c in gb.find_notebook(notebook, assignment).solution_cells}:
                comment = gb.find_comment(r["cell"], notebook, assignment, r["student"])
                comment.manual_comment = (r.get("comment") or "").strip() or None
        gb.db.commit()
    return len(good)


def unmarked(course: Path, assignment: str) -> list[str]:
    with _gradebook(course) as gb:
        return [f"{student} {grade.name}" + ("" if written else " (flagged by the grader)")
                for student, _, grade, written in to_mark(gb, assignment) if grade.needs_manual_grade]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["sheet", "apply", "status"])
    p.add_argument("assignment", help="the assignment (a chapter's name, e.g. 02_shapes)")
    p.add_argument("csv", nargs="?", type=Path, help="apply: the filled-in sheet")
    p.add_argument("--out", type=Path, help="sheet: where to write it (default: the screen)")
    p.add_argument("--course", type=Path, default=Path("."), help="nbgrader's course folder (default: here)")
    a = p.parse_args(argv)
    from nbgrader.api import MissingEntry
    try:
        with _gradebook(a.course) as gb:
            gb.find_assignment(a.assignment)
    except MissingEntry:
        raise SystemExit(f"no assignment {a.assignment!r} in {a.course / 'gradebook.db'}") from None
    if a.command == "sheet":
        if a.out:
            with open(a.out, "w", newline="") as f:
                n = sheet(a.course, a.assignment, f)
            print(f"{n} things to mark -> {a.out}")
        else:
            sheet(a.course, a.assignment, sys.stdout)
    elif a.command == "apply":
        if a.csv is None:
            p.error("apply needs the filled-in sheet")
        print(f"{apply(a.course, a.assignment, a.csv)} marks written to gradebook.db")
        a.command = "status"
    if a.command == "status":
        left = unmarked(a.course, a.assignment)
        print(f"{len(left)} not marked yet: {', '.join(left)}" if left
              else "everything is marked: nbgrader generate_feedback and export may follow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
