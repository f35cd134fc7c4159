"""The experiments behind the chapters' conclusions, one module per chapter.

A chapter runs a small version of each experiment live (``ATTNLIB_SCALE=fast``, the
default: under 90 s a notebook on one core) and shows the full-scale version that
``make results`` computed and stored under ``results/`` (``ATTNLIB_SCALE=full`` runs the
full version in the notebook itself, with the same settings, so both give the same numbers).

An :class:`Experiment` holds:

- ``settings``: ``{"fast": {...}, "full": {...}}``, plain JSON values (seed counts, steps,
  learning-rate grids). A changed setting makes the stored file stale (``tests/test_results.py``).
- ``run(ctx, settings)``: the experiment itself. Everything it measures goes through
  ``ctx.unit(key, fn)`` (one configuration: it is stored, and an interrupted run resumes after
  the last finished unit) and every training run through ``ctx.train(...)`` (which records the
  loss curve and drives the progress bar). See :class:`attnlib.results.Run`.
- ``check(stored)``: the chapter's conclusions about the full-scale data, as a list of
  :class:`attnlib.evidence.Verdict`. The notebook calls it on the stored file; ``make
  results`` calls it on the data it has just computed, at any base seed.

The chapter modules are imported on demand, by :func:`experiments`.
"""
import importlib
from dataclasses import dataclass
from typing import Callable

#: chapter (the notebook's name without .ipynb) -> the module holding its experiments
CHAPTERS = {
    "01_activation": "attnlib.experiments.activation",
    "02_shapes": "attnlib.experiments.shapes",
    "03_output_projection": "attnlib.experiments.output_projection",
    "04_softmax_alternatives": "attnlib.experiments.softmax_alternatives",
    "05_pooling": "attnlib.experiments.pooling",
}


@dataclass(frozen=True)
class Experiment:
    chapter: str  # e.g. "04_softmax_alternatives"
    name: str  # e.g. "recall": the stored file is results/<chapter>/<name>.json
    title: str  # one line: what it measures
    settings: dict  # {"fast": {...}, "full": {...}}: JSON values only
    run: Callable  # (ctx: attnlib.results.Run, settings: dict) -> None
    check: Callable  # (stored: dict) -> list[attnlib.evidence.Verdict]

    @property
    def id(self) -> str:
        return f"{self.chapter}/{self.name}"


def chapter_name(chapter: str) -> str:
    """``"chapters/05_pooling.ipynb"``, ``"05_pooling.ipynb"`` or ``"05_pooling"`` -> ``"05_pooling"``;
    a clear error for a chapter that has no full-scale experiments."""
    name = str(chapter).rstrip("/").split("/")[-1]
    name = name[:-len(".ipynb")] if name.endswith(".ipynb") else name
    if name not in CHAPTERS:
        known = ", ".join(f"chapters/{c}.ipynb" for c in CHAPTERS)
        raise ValueError(f"no full-scale experiments for chapter {chapter!r}; the chapters that have them: {known}")
    return name


def experiments(chapter: str | None = None) -> list[Experiment]:
    """The experiments of one chapter (see :func:`chapter_name`), or of every chapter."""
    names = [chapter_name(chapter)] if chapter is not None else list(CHAPTERS)
    found = []
    for name in names:
        found += importlib.import_module(CHAPTERS[name]).EXPERIMENTS
    return found


def experiment(chapter: str, name: str) -> Experiment:
    """One experiment by chapter and name."""
    for exp in experiments(chapter):
        if exp.name == name:
            return exp
    known = [e.name for e in experiments(chapter)]
    raise ValueError(f"chapter {chapter_name(chapter)!r} has no experiment {name!r}; it has {known}")
