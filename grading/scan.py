"""What a submission's own code uses, read from its source by the grader (not run).

:func:`scan` reads the code cells a student wrote (the answer cells and any cell they
added) and lists every *hit*: where the code names attnlib or torch's own implementation of
an exercise (a shortcut), or reaches for the notebook's machinery instead of computing
(``get_ipython``, the input history ``_ih``, ``globals()``, frames, ``eval``/``exec``,
``__import__``, IPython's events...). :func:`reaches` says which hits a graded function's
code can reach: its own body, and the notebook's top-level statements that bind a name it
uses, followed name by name.

The judge (``grading/judge.py``) gives no marks for a shortcut that the graded function
reaches, and lists every other hit for the teacher, who decides: a hit is a reason to look,
not a verdict. A name the student binds themselves (a variable called ``In``) is not a hit.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

#: Names (read, not bound by the student) and attributes that reach for the notebook's machinery.
MACHINERY_NAMES = {"get_ipython", "_ih", "_oh", "_i", "_ii", "_iii", "In", "Out", "eval", "exec", "compile",
                   "__import__", "globals", "locals", "vars", "__builtins__", "breakpoint"}
MACHINERY_ATTRIBUTES = {"_getframe", "currentframe", "f_back", "f_locals", "f_globals", "f_code", "tb_frame",
                        "gi_frame", "cr_frame", "set_custom_exc", "events", "showtraceback", "run_cell",
                        "setprofile", "settrace", "__globals__", "__code__", "__subclasses__", "_exit", "fork"}
#: Modules an answer may import without a note for the teacher: computing, not reaching outside the
#: function. Any other import is listed (``os``, ``sqlite3``, ``pkgutil``, ``runpy``, ``importlib``...):
#: an allow-list, since a deny-list misses the next module that loads code or writes files.
COMPUTING_MODULES = {"torch", "numpy", "math", "cmath", "typing", "functools", "itertools", "collections",
                     "dataclasses", "warnings", "time", "random", "sys", "__future__", "copy", "enum", "abc",
                     "numbers", "fractions", "decimal", "statistics", "string", "re", "matplotlib", "einops"}
#: Built-in functions that look a name up from a string, or reach files: a way around reading the
#: code's names (``getattr(F, "scaled_dot_" + "product_attention")``), listed like the machinery.
DYNAMIC_NAMES = {"getattr", "setattr", "delattr", "open"}
DYNAMIC_ATTRIBUTES = {"__dict__", "__getattribute__", "__getattr__", "__import__", "__loader__", "__spec__"}
#: IPython magics that only time or show things.
HARMLESS_MAGICS = {"time", "timeit", "matplotlib", "pip", "who", "whos"}
LIBRARY = "attnlib"


@dataclass
class Hit:
    cell: int            # the cell's index in the notebook
    line: int            # in the cell
    what: str            # the name, e.g. "get_ipython", "attnlib", "scaled_dot_product_attention"
    library: bool        # attnlib or a name of torch's implementations (a shortcut where reached)


@dataclass
class Statement:
    cell: int
    node: ast.stmt
    binds: set = field(default_factory=set)
    reads: set = field(default_factory=set)
    hits: list = field(default_factory=list)


def python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


def _binds(node) -> set:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _magic(node) -> str | None:
    """``name`` for ``get_ipython().run_line_magic('name', ...)`` (IPython's translation of ``%name``)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("run_line_magic", "run_cell_magic", "system", "getoutput")
            and isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "id", "") == "get_ipython"):
        if node.func.attr in ("system", "getoutput"):
            return "!"
        return node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
    return None


def _hits(cell: int, node, forbidden: set, own: set) -> list:
    hits, skip = [], set()
    for n in ast.walk(node):
        if id(n) in skip:
            continue
        line = getattr(n, "lineno", 0)
        magic = _magic(n)
        if magic is not None:
            skip |= {id(x) for x in ast.walk(n.func.value)}
            if magic not in HARMLESS_MAGICS:
                hits.append(Hit(cell, line, "a shell command" if magic == "!" else f"%{magic}", False))
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            for m in modules:
                top = m.split(".")[0]
                if top == LIBRARY or top not in COMPUTING_MODULES:
                    hits.append(Hit(cell, line, top, top == LIBRARY))
            if isinstance(n, ast.ImportFrom):
                hits += [Hit(cell, line, a.name, True) for a in n.names if a.name in forbidden]
        elif isinstance(n, ast.Name):
            if n.id == LIBRARY or n.id in forbidden:
                hits.append(Hit(cell, line, n.id, True))
            elif n.id in MACHINERY_NAMES | DYNAMIC_NAMES and n.id not in own and isinstance(n.ctx, ast.Load):
                hits.append(Hit(cell, line, n.id, False))
        elif isinstance(n, ast.Attribute):
            if n.attr in forbidden:
                hits.append(Hit(cell, line, n.attr, True))
            elif (n.attr in MACHINERY_ATTRIBUTES | DYNAMIC_ATTRIBUTES
                  or (n.attr == "modules" and getattr(n.value, "id", "") == "sys")):
                hits.append(Hit(cell, line, n.attr, False))
    return hits


def _reads(node) -> set:
    """The global names a top-level statement reads (in a function: the names it does not bind itself)."""
    import symtable

    try:
        top = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except SyntaxError:
        return set()
    names = set()

    def walk(table):
        for s in table.get_symbols():
            if (table is top and s.is_referenced()) or (table is not top and s.is_global() and s.is_referenced()):
                names.add(s.get_name())
        for child in table.get_children():
            walk(child)
    walk(top)
    return names


def scan(cells: list[tuple[int, str]], forbidden=()) -> tuple[list[Statement], list[str]]:
    """The top-level statements of a student's code cells, with their hits.

    Args:
        cells: ``(index in the notebook, source)`` of the cells the student wrote.
        forbidden: names of torch's implementations that count as a shortcut (where reached).

    Returns:
        the statements, and ``(cell, message)`` for each cell that does not parse (its functions
        were never defined: the judge says so where it matters).
    """
    parsed, broken = [], []
    for index, source in cells:
        try:
            parsed.append((index, ast.parse(python(source))))
        except SyntaxError:
            broken.append(index)
    own = set().union(*[_binds(node) for _, tree in parsed for node in tree.body])
    statements = []
    for index, tree in parsed:
        for node in tree.body:
            statements.append(Statement(index, node, _binds(node), _reads(node), _hits(index, node, set(forbidden), own)))
    return statements, broken


def reaches(statements: list[Statement], name: str) -> list[Statement]:
    """The statements that the function ``name`` can reach: those binding it, then, name by
    name, those binding what they read."""
    todo, seen, found = [name], set(), []
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for s in statements:
            if n in s.binds and not any(s is f for f in found):
                found.append(s)
                todo += sorted(s.reads)
    return found
