"""nbgrader's configuration for grading the course's chapters (teachers.md, "Grading").

Run nbgrader from this folder; `make assignment CHAPTER=02_shapes` prepares one chapter as
one assignment here. Everything nbgrader writes here (source/, release/, submitted/,
autograded/, feedback/, gradebook.db, grades.csv) is git-ignored.
"""
import copy
import os
import warnings

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, DeduplicateIds, GetGrades,
                                    OverwriteCells, OverwriteKernelspec)
from sqlalchemy.exc import SAWarning
from traitlets import List

c = get_config()  # noqa: F821  (nbgrader provides it)

c.CourseDirectory.course_id = "attention-questioned"
# An absolute root (a relative one makes every command warn that it is "not absolute").
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# An assignment runs its exercises only (no experiments): every cell takes seconds. A cell
# still running after 30 s (an endless loop at the top level of an answer cell) is interrupted
# and scores 0. Inside a graded cell, each call of the student's function gets 1 s of CPU in
# the self-check (ATTNLIB_CHECK_TIME_LIMIT, read by attnlib.checks) and 1 s in the hidden
# tests (grading/references.py), so an endless loop in a function costs about 2 s.
c.Execute.timeout = 30
os.environ["ATTNLIB_CHECK_TIME_LIMIT"] = "1"
# One thread per kernel, as the course's timings assume (the kernels inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The kernels' own log stays quiet: ipykernel 7 warns at every start that it talks to nbgrader
# over TCP without encryption (on this machine, to this machine).
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]


class OverwriteCellsQuietly(OverwriteCells):
    """nbgrader's OverwriteCells, without its false alarm on every graded cell with hidden tests.

    The gradebook keeps each locked cell's checksum from before the hidden tests were removed,
    so nbgrader 0.9 warns "Attribute 'checksum' ... has changed!" for every such cell of every
    submission (jupyter/nbgrader#1961). A cell handed back exactly as it was released is put back
    here without a word; a locked cell that a student changed still gets the warning.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id and cell.cell_type == "code":
            try:
                stored = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except Exception:  # noqa: BLE001  (nbgrader reports a missing cell itself)
                stored = None
            if stored is not None and stored.locked:
                released = copy.deepcopy(cell)
                released.source = stored.source
                ClearHiddenTests(enforce_metadata=False)._remove_hidden_test_region(released)
                if released.source.strip() == cell.source.strip():
                    cell.source = stored.source
        return super().preprocess_cell(cell, resources, cell_index)


c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCellsQuietly,
                                      CheckCellMetadata]

# nbgrader 0.9 builds each new submission's rows before it adds them to the database session,
# which SQLAlchemy 2 reports once per submission ("Object of type <SubmittedAssignment> not in
# session, add operation ... will not proceed"); the rows are added all the same.
warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session", category=SAWarning)

# What a student finds where the solution code was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}



class ClearHiddenTestsFromFeedback(ClearHiddenTests):
    """ClearHiddenTests on the feedback pages. nbconvert's HTML exporter sets display_data_priority
    for every preprocessor, which ClearHiddenTests does not declare configurable (GetGrades
    does): declared here, so that generate_feedback prints no warning about it."""

    display_data_priority = List().tag(config=True)


# The feedback pages show each graded cell's verdict, not its hidden tests (which carry the
# reference outputs, and may serve again next year).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTestsFromFeedback, CSSHTMLHeaderPreprocessor]
