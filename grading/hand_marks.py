"""Hand-marking without a server: the written answers of one assignment in a spreadsheet.

nbgrader's formgrader (JupyterLab, *Nbgrader > Formgrader*) is the usual way to mark the
written answers. Where no Jupyter server can run, mark them in a CSV file instead; run
these from ``grading/``, after ``nbgrader autograde``:

    python hand_marks.py sheet 02_shapes --out marks-02_shapes.csv
        # one row per student and written answer: the answer, the reference answer,
        # its maximum, and empty `points` and `comment` columns to fill in (an answer
        # cell left as released already scores 0: nbgrader marks it, and it is not listed)
    python hand_marks.py apply 02_shapes marks-02_shapes.csv
        # writes the points and comments into gradebook.db (rows left empty are skipped)
    python hand_marks.py status 02_shapes
        # which written answers are not marked yet

then ``nbgrader generate_feedback`` and ``nbgrader export`` as usual: the feedback shows the
points and comments, the export counts them.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import nbformat

FIELDS = ["student", "cell", "max_points", "points", "comment", "answer", "reference"]


def _gradebook(course: Path):
    from nbgrader.api import Gradebook
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}")


def _cell_text(path: Path, grade_id: str) -> str:
    if not path.exists():
        return ""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell.source
    return ""


def written_grades(gb, assignment: str):
    """``(student, notebook, grade)`` for every written answer to mark: the hand-marked cells
    that the student changed (nbgrader scores an untouched answer cell 0 by itself)."""
    for submission in gb.find_assignment(assignment).submissions:
        for nb in submission.notebooks:
            manual = {c.name for c in gb.find_notebook(nb.name, assignment).solution_cells}
            for grade in nb.grades:
                if grade.name in manual and (grade.needs_manual_grade or grade.manual_score is not None):
                    yield submission.student.id, nb.name, grade


def sheet(course: Path, assignment: str, out) -> int:
    rows = []
    with _gradebook(course) as gb:
        for student, notebook, grade in written_grades(gb, assignment):
            rows.append({
                "student": student, "cell": grade.name, "max_points": f"{grade.max_score:g}",
                "points": "" if grade.manual_score is None else f"{grade.manual_score:g}",
                "comment": gb.find_comment(grade.name, notebook, assignment, student).manual_comment or "",
                "answer": _cell_text(course / "autograded" / student / assignment / f"{notebook}.ipynb", grade.name),
                "reference": _cell_text(course / "source" / assignment / f"{notebook}.ipynb", grade.name),
            })
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def apply(course: Path, assignment: str, path: Path) -> int:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("points") or "").strip()]
    with _gradebook(course) as gb:
        notebooks = [nb.name for nb in gb.find_assignment(assignment).notebooks]
        for r in rows:
            notebook = next(nb for nb in notebooks if any(c.name == r["cell"] for c in gb.find_notebook(nb, assignment).grade_cells))
            grade = gb.find_grade(r["cell"], notebook, assignment, r["student"])
            points = float(r["points"])
            if not 0 <= points <= grade.max_score:
                raise SystemExit(f"{r['student']} {r['cell']}: {points:g} points, but the most is {grade.max_score:g}")
            grade.manual_score, grade.needs_manual_grade = points, False
            comment = gb.find_comment(r["cell"], notebook, assignment, r["student"])
            comment.manual_comment = (r.get("comment") or "").strip() or None
        gb.db.commit()
    return len(rows)


def unmarked(course: Path, assignment: str) -> list[str]:
    with _gradebook(course) as gb:
        return [f"{student} {grade.name}" for student, _, grade in written_grades(gb, assignment)
                if grade.needs_manual_grade]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["sheet", "apply", "status"])
    p.add_argument("assignment", help="the assignment (a chapter's name, e.g. 02_shapes)")
    p.add_argument("csv", nargs="?", type=Path, help="apply: the filled-in sheet")
    p.add_argument("--out", type=Path, help="sheet: where to write it (default: the screen)")
    p.add_argument("--course", type=Path, default=Path("."), help="nbgrader's course folder (default: here)")
    a = p.parse_args(argv)
    if a.command == "sheet":
        if a.out:
            with open(a.out, "w", newline="") as f:
                n = sheet(a.course, a.assignment, f)
            print(f"{n} written answers to mark -> {a.out}")
        else:
            sheet(a.course, a.assignment, sys.stdout)
    elif a.command == "apply":
        if a.csv is None:
            p.error("apply needs the filled-in sheet")
        print(f"{apply(a.course, a.assignment, a.csv)} marks written to gradebook.db")
        a.command = "status"
    if a.command == "status":
        left = unmarked(a.course, a.assignment)
        print(f"{len(left)} written answers not marked yet: {', '.join(left)}" if left
              else "every written answer is marked: nbgrader generate_feedback and export may follow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
