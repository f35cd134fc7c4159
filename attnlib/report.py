"""Numbers and tables from a notebook's own run, put into its text (MyST-NB ``glue``).

A chapter's prose quotes numbers that its code computes. Glued, they are inserted where the
text names them, so that text and output agree at every base seed::

    glue("relu_gap", diff)                      # in a code cell
    The gap was {glue:text}`relu_gap:+.3f`.     # in the Markdown

    glue("recall_table", Text(format_table(rows)))   # a table, shown in a "How sure are we?" block
    ```{glue} recall_table
    ```

Gluing needs MyST-NB, which comes with the book's build tools (``requirements-dev.txt``); where
it is missing (Binder, Colab) :func:`glue` does nothing, and the text shows the glue role as written.
"""


class Text(str):
    """A string that shows as itself (no quotes, real line breaks): a text table to glue."""

    def __repr__(self):
        return str(self)


def glue(name: str, value, display: bool = False):
    """``myst_nb.glue(name, value, display)`` where MyST-NB is installed; elsewhere nothing."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)
