"""Two of nbgrader 0.9's quirks, worked around (``nbgrader_config.py`` uses both).

* :class:`OverwriteCellsQuietly`: the gradebook keeps each locked cell's checksum from before
  the hidden tests were removed, so nbgrader warns "Attribute 'checksum' ... has changed!" for
  every graded cell with hidden tests of every submission (jupyter/nbgrader#1961). A cell
  handed back exactly as it was released is put back here without a word; a locked cell that
  a student changed still gets the warning.
  And a graded cell that a student deleted, which nbgrader puts back (``add_missing_cells``),
  gets a cell id, without which nbformat warns.
* :class:`ClearHiddenTestsFromFeedback`: nbconvert's HTML exporter sets
  ``display_data_priority`` on every preprocessor, which ``ClearHiddenTests`` does not declare
  configurable; declared here, ``generate_feedback`` prints no warning about it. And it reads
  the locked cells only: a student's cell that quotes nbgrader's marker no longer stops it.
"""
from nbgrader.preprocessors import ClearHiddenTests, OverwriteCells
from traitlets import List

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def released(source: str) -> str:
    """A cell's source as students receive it: without its hidden region (nbgrader's markers)."""
    kept, hidden = [], False
    for line in source.split("\n"):
        if BEGIN in line:
            hidden = True
        elif END in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


class OverwriteCellsQuietly(OverwriteCells):
    """nbgrader's OverwriteCells, without its false alarm on every graded cell with hidden tests."""

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id and cell.cell_type == "code":
            try:
                stored = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except Exception:  # noqa: BLE001  (nbgrader reports a missing cell itself)
                stored = None
            if stored is not None and stored.locked and released(stored.source).strip() == cell.source.strip():
                cell.source = stored.source
        return super().preprocess_cell(cell, resources, cell_index)

    def missing_cell_transform(self, source_cell, max_score, is_solution=False, is_task=False):
        cell = super().missing_cell_transform(source_cell, max_score, is_solution, is_task)
        cell["id"] = source_cell.name
        return cell


class ClearHiddenTestsFromFeedback(ClearHiddenTests):
    """ClearHiddenTests, with the trait nbconvert sets declared, on the locked cells only.

    A student's own cell that mentions nbgrader's marker (``BEGIN HIDDEN TESTS`` in a string,
    as in a submission that tried to rewrite the gradebook) stopped ``generate_feedback`` for
    that student ("No end hidden tests statement found"); hidden tests live in locked cells."""

    display_data_priority = List().tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if not cell.metadata.get("nbgrader", {}).get("locked"):
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)
