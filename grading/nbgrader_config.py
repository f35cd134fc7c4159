"""nbgrader's configuration for grading the course's chapters (teachers.md, "Grading").

Run nbgrader from this folder; `make assignment CHAPTER=02_shapes` prepares one chapter as
one assignment here. Everything nbgrader writes here (source/, release/, submitted/,
autograded/, feedback/, gradebook.db, grades.csv) is git-ignored.
"""
import os
import sys
import warnings

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, Execute,
                                    GetGrades, IgnorePattern, LimitOutput, OverwriteKernelspec)
from sqlalchemy.exc import SAWarning

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the course's own preprocessors, beside this file
from judge import GuardGradebook, Judge, SaveAutoGradesAndFlags  # noqa: E402
from nbgrader_fixes import ClearHiddenTestsFromFeedback, OverwriteCellsQuietly  # noqa: E402

c = get_config()  # noqa: F821  (nbgrader provides it)

c.CourseDirectory.course_id = "attention-questioned"
# An absolute root (a relative one makes every command warn that it is "not absolute").
c.CourseDirectory.root = HERE

# The marks are decided here, in nbgrader's process, by the Judge, right after nbgrader has run
# the notebook: the graded cells only print what the students' functions return on hidden
# inputs (grading/judge.py). This is nbgrader 0.9's list, with the Judge added (and GuardGradebook,
# which lets it undo a notebook's writes to the gradebook), and
# SaveAutoGrades replaced by one that also flags what the Judge wants a teacher to look at.
c.Autograde.autograde_preprocessors = [GuardGradebook, Execute, Judge, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGradesAndFlags, AssignLatePenalties, CheckCellMetadata]
# nbgrader's sanitizing list, with its false alarm on hidden tests silenced (nbgrader_fixes.py),
# and a graded cell that a student deleted put back and graded (else it scores 0 silently).
c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCellsQuietly,
                                      CheckCellMetadata]
c.OverwriteCells.add_missing_cells = True

# A cell still running after 30 s is interrupted and scores 0 (nbgrader's default, stated here
# because the guide quotes it). An assignment runs no experiment, so no cell of a right answer
# comes close; inside a graded cell each function runs in a copy of the kernel with 1 s of CPU
# for the self-check and 1 s for the hidden tests (attnlib.checks.sandbox), which the operating
# system enforces, so an endless loop costs about 2 s whatever it catches.
c.Execute.timeout = 30
# The kernels: one thread each, as the course's timings assume, and a quiet log (ipykernel 7
# warns at every start that it talks to nbgrader over TCP without encryption, on this machine).
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR",
                             "--IPKernelApp.exec_lines=import torch; torch.set_num_threads(1)"]

# nbgrader 0.9 builds each new submission's rows before it adds them to the database session,
# which SQLAlchemy 2 reports once per submission ("Object of type <SubmittedAssignment> not in
# session, add operation ... will not proceed"); the rows are added all the same.
warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session", category=SAWarning)

# What a student finds where the solution code was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# The feedback pages show each graded cell's verdict, not its hidden tests (which hold the
# hidden inputs' seed, and may serve again next year).
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTestsFromFeedback, CSSHTMLHeaderPreprocessor]
