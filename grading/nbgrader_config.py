"""nbgrader's configuration for grading the course's chapters (teachers.md, "Grading").

Run nbgrader from this folder; `make assignment CHAPTER=02_shapes` prepares one
chapter as one assignment here. Everything nbgrader writes here (source/, release/,
submitted/, autograded/, feedback/, gradebook.db, grades.csv) is git-ignored.
"""
c = get_config()  # noqa: F821  (nbgrader provides it)

c.CourseDirectory.course_id = "attention-questioned"
c.CourseDirectory.root = "."

# Some chapter cells train many seeds at once for up to a minute on one core:
# nbgrader's default per-cell timeout (30 s) would cut them off.
c.Execute.timeout = 600

# What a student finds where the solution code was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
