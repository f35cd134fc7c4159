"""Every attnlib name that the book writes down works as written.

The chapters (markdown and code cells), intro.md and teachers.md mention API names such as
``attnlib.sdpa.explicit_softmax()`` or ``attnlib.checks.pooling``, and import names with
``from attnlib.x import y``. A reader who types one of them must get the object, not an
AttributeError: this test finds them all and resolves each one.

A dotted name resolves the way Python resolves it in a reader's session: the longest prefix
that is a module is imported (``import attnlib.checks.pooling``), then every part is looked
up with getattr from ``attnlib`` down. So a package attribute that hides a submodule of the
same name (the function ``attnlib.attention`` once hid the module ``attnlib.attention``)
fails here.
"""
import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
PAGES = [ROOT / "intro.md", ROOT / "teachers.md"]

# attnlib followed by one or more ".identifier"; a trailing "()" or "." is not part of it.
DOTTED = re.compile(r"(?<![\w./-])attnlib(?:\.[A-Za-z_]\w*)+")


def _python(source):
    """A code cell's source with each IPython magic or shell escape replaced by ``pass``."""
    lines = []
    for ln in source.splitlines():
        body = ln.lstrip()
        lines.append(ln[: len(ln) - len(body)] + "pass" if body.startswith(("%", "!")) else ln)
    return "\n".join(lines)


def _imported(source):
    """Dotted names that a code cell's ``import`` statements name."""
    names = []
    for node in ast.walk(ast.parse(_python(source))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "attnlib":
            names += [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "attnlib"]
    return names


def mentions(paths=None):
    """``{dotted name: [where, ...]}`` over the chapters and the two pages (or ``paths``)."""
    found = {}

    def add(name, where):
        found.setdefault(name, []).append(where)

    for path in paths if paths is not None else CHAPTERS + PAGES:
        path = Path(path)
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            for i, cell in enumerate(nb.cells):
                where = f"{path.name} cell {i} ({cell.cell_type})"
                for name in DOTTED.findall(cell.source):
                    add(name, where)
                if cell.cell_type == "code":
                    for name in _imported(cell.source):
                        add(name, where)
        else:
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for name in DOTTED.findall(line):
                    add(name, f"{path.name} line {lineno}")
    return found


def resolve(name):
    """The object a reader gets for the dotted ``name``; raises if there is none."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):  # import the longest prefix that is a module
        try:
            importlib.import_module(".".join(parts[:end]))
            break
        except ModuleNotFoundError as e:
            if e.name != ".".join(parts[:end]) and not ".".join(parts[:end]).startswith(e.name + "."):
                raise  # the module exists but one of its own imports failed
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if not hasattr(obj, part):
            raise AttributeError(f"{'.'.join(parts[:i])} (a {type(obj).__name__}) has no "
                                 f"attribute {part!r}")
        obj = getattr(obj, part)
    return obj


NAMES = mentions()


def test_the_book_mentions_api_names():
    # Guard against a scanner that finds nothing and so passes vacuously.
    assert len(NAMES) >= 20, sorted(NAMES)
    assert "attnlib.sdpa.explicit_softmax" in NAMES
    assert "attnlib.MultiHeadAttention" in NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_name_resolves(name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{name}, written in {'; '.join(NAMES[name])}, does not resolve: {e}")


def test_resolve_sees_shadowing(tmp_path, monkeypatch):
    """A package attribute that hides a submodule fails, even though the submodule imports."""
    pkg = tmp_path / "shadowpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .inner import inner\n")
    (pkg / "inner.py").write_text("def inner():\n    pass\n\ndef helper():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("shadowpkg.inner") is importlib.import_module("shadowpkg").inner
    with pytest.raises(AttributeError, match="no attribute 'helper'"):
        resolve("shadowpkg.inner.helper")
    with pytest.raises(ModuleNotFoundError):
        resolve("shadowpkg_absent.x")


def test_scanner_finds_markdown_and_import_names(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Wrap it in `attnlib.sdpa.explicit_softmax()`; see attnlib.stats."),
        nbformat.v4.new_code_cell("%matplotlib inline\nfrom attnlib.sdpa import (attention,\n"
                                  "    explicit_softmax)\nimport attnlib.checks.pooling as cp\n"
                                  "from attnlib import *\n"),
    ]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    page = tmp_path / "p.md"
    page.write_text("Use `attnlib.training.train(...)` but not attnlib/config.py.\n")
    assert set(mentions([path, page])) == {
        "attnlib.sdpa.explicit_softmax", "attnlib.stats", "attnlib.sdpa", "attnlib.sdpa.attention",
        "attnlib.checks.pooling", "attnlib.training.train",
    }
