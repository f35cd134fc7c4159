"""The coursework loop of teachers.md, end to end, with the real nbgrader.

For each chapter in GRADED: nbgrader's source is written by
``scripts/student_edition.py --nbgrader``, ``nbgrader generate_assignment`` releases it,
three students hand in (every exercise right; nothing done; every exercise wrong, in a way
that runs), ``nbgrader autograde`` grades them, and the automatically graded score of each
is read from the gradebook and from ``nbgrader export``'s CSV. Right answers must get every
point, empty and wrong ones none.

Slow (it executes each graded chapter three times); skipped if nbgrader is not installed.
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NBGRADER = BIN / "nbgrader"

# chapter -> {grade_id of a solution cell: wrong code put where the stub is}. The wrong
# answers are mistakes a learner makes; each runs without error.
GRADED = {
    "00_notation": {
        "ex-notation-attention": "    return torch.softmax(Q @ K.transpose(-2, -1), dim=-1) @ V  # not scaled",
    },
    "03_output_projection": {
        "ex-ch3-gauge": "    return W_V_h @ M, W_O_h @ M  # M where its inverse belongs",
        "ex-ch3-fuse": "    return W_O @ W_1, b_1  # b_O forgotten",
    },
}
STUB = "# YOUR CODE HERE\n"


def run(args, cwd):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def solution_code(source_nb, grade_id):
    """The solution lines (markers dropped) of the source cell ``grade_id``."""
    for cell in source_nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return re.sub(r"^\s*### (BEGIN|END) SOLUTION\n", "", cell.source + "\n", flags=re.M).rstrip("\n")
    raise KeyError(grade_id)


def submission(release_nb, source_nb, kind, wrong):
    nb = nbformat.from_dict(release_nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution") or meta.get("grade"):
            continue
        gid = meta["grade_id"]
        if kind == "right":
            cell.source = solution_code(source_nb, gid)
        elif kind == "wrong":
            stub = re.compile(r"^[ \t]*# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\)", re.M)
            assert stub.search(cell.source), f"{gid}: no stub in the release"
            cell.source = stub.sub(lambda _: wrong[gid], cell.source)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not NBGRADER.exists():
        pytest.skip("nbgrader is not installed (requirements-dev.txt installs it)")
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", course)
    students = ("right", "empty", "wrong")
    for chapter, wrong in GRADED.items():
        run([sys.executable, ROOT / "scripts" / "student_edition.py", ROOT / "chapters" / f"{chapter}.ipynb",
             course / "source" / chapter, "--nbgrader"], ROOT)
        run([NBGRADER, "generate_assignment", chapter], course)
        release = nbformat.read(course / "release" / chapter / f"{chapter}.ipynb", as_version=4)
        source = nbformat.read(course / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        for student in students:
            run([NBGRADER, "db", "student", "add", student], course)
            out = course / "submitted" / student / chapter
            out.mkdir(parents=True)
            nbformat.write(submission(release, source, student, wrong), out / f"{chapter}.ipynb")
        run([NBGRADER, "autograde", chapter], course)
    run([NBGRADER, "export", "--to", "grades.csv"], course)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {(ch, s): (gb.find_submission_notebook(ch, ch, s).code_score,
                            gb.find_submission_notebook(ch, ch, s).max_code_score)
                  for ch in GRADED for s in students}
    with open(course / "grades.csv") as f:
        exported = {(r["assignment"], r["student_id"]): float(r["raw_score"]) for r in csv.DictReader(f)}
    print("\nautograded code score per chapter and submission:")
    for (ch, s), (got, top) in scores.items():
        print(f"  {ch:20s} {s:6s} {got:g} / {top:g}")
    return scores, exported


@pytest.mark.parametrize("chapter", list(GRADED))
def test_right_answers_get_every_point(graded, chapter):
    scores, exported = graded
    got, top = scores[chapter, "right"]
    assert top > 0 and got == top, scores
    assert exported[chapter, "right"] == got


@pytest.mark.parametrize("chapter", list(GRADED))
@pytest.mark.parametrize("student", ["empty", "wrong"])
def test_empty_and_wrong_answers_get_nothing(graded, chapter, student):
    scores, exported = graded
    assert scores[chapter, student][0] == 0, scores
    assert exported[chapter, student] == 0
