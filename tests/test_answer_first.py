"""Answer first (issue 27): every question chapter states its answer in a short box of verdicts,
keeps its audit in collapsed "How sure are we?" blocks, and stays readable in length; the
introduction gives each chapter one short line.

The counts are mechanical stand-ins for what a reader notices: a short answer of more than 5
bullets or about 150 words, or one that hedges, is not an answer yet.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTION_CHAPTERS = sorted((ROOT / "chapters").glob("0[1-9]_*.ipynb"))
HEDGES = re.compile(r"not asserted|cannot tell|can't tell|not settled|do(?:es)? not settle|claim nothing|"
                    r"undecided|printed, not|inconclusive|stays open|we do not know", re.I)
MAX_BULLETS, MAX_SHORT_WORDS, MAX_PROSE_WORDS, MAX_INTRO_WORDS = 5, 170, 3300, 40


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _markdown(path):
    return "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "markdown")


def words(text: str) -> int:
    """Words of prose as a reader sees them: a math expression, a code span and a glued number count as
    one word each, a glossary link as the words it shows; link targets do not count."""
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " 0 ", text)  # renders as one number
    text = re.sub(r"\{term\}`([^`<]*?)\s*(?:<[^>]*>)?`", r" \1 ", text)  # renders as its text
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " x ", text)  # any other role (a citation, a reference)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", " x ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " x ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return len(re.findall(r"[A-Za-z0-9][\w'’.-]*", text))


def short_answer(path) -> str:
    m = re.search(r"(`{3,}|:{3,})\{admonition\}\s*Short answer\s*\n(.*?)\n\1(?!`|:)", _markdown(path), re.S | re.I)
    assert m, f"{path.name} has no ```{{admonition}} Short answer box"
    return re.sub(r"^:class:.*$", "", m.group(2), flags=re.M)


def main_line(path) -> str:
    """The Markdown a reader sees without opening anything: collapsed blocks, exercises and their
    solutions, and the self-check section are left out."""
    text = _markdown(path)
    text = re.sub(r"```\{solution-start\}.*?```\{solution-end\}\s*```", " ", text, flags=re.S)
    # fenced directives (``` or :::, any length) that are collapsed or are exercises
    pattern = re.compile(r"^(`{3,}|:{3,})\{(\w[\w:-]*)\}([^\n]*)\n(.*?)^\1\s*$", re.S | re.M)

    def drop(m):
        collapsed = m.group(2) in ("dropdown", "exercise", "toggle") or re.search(r":class:[^\n]*dropdown", m.group(4))
        return " " if collapsed else m.group(0)

    for _ in range(3):  # nested blocks
        text = pattern.sub(drop, text)
    return text.split("## Check your understanding", 1)[0]


@pytest.mark.parametrize("path", QUESTION_CHAPTERS, ids=lambda p: p.stem)
def test_short_answer_is_at_most_five_verdicts(path):
    box = short_answer(path)
    bullets = re.findall(r"^(?:-|\d+\.) ", box, flags=re.M)  # a list, bulleted or numbered
    assert 1 <= len(bullets) <= MAX_BULLETS, f"{path.name}: {len(bullets)} bullets in the short answer"
    n = words(box)
    assert n <= MAX_SHORT_WORDS, f"{path.name}: the short answer has {n} words (about 150 at most)"
    hedges = HEDGES.findall(box)
    assert not hedges, f"{path.name}: the short answer hedges: {hedges}"


@pytest.mark.parametrize("path", QUESTION_CHAPTERS, ids=lambda p: p.stem)
def test_audit_is_collapsed_and_the_main_line_is_readable(path):
    md = _markdown(path)
    assert re.search(r"\{dropdown\}\s*How sure are we\?", md), f"{path.name} has no 'How sure are we?' dropdown"
    n = words(main_line(path))
    assert n <= MAX_PROSE_WORDS, f"{path.name}: {n} words of prose outside collapsed blocks (about 3,000)"


@pytest.mark.parametrize("path", QUESTION_CHAPTERS, ids=lambda p: p.stem)
def test_no_output_prints_a_verdict_the_chapter_disowns(path):
    for i, cell in enumerate(_cells(path)):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert "not asserted" not in text.lower(), f"{path.name}, cell {i}: prints a verdict marked 'not asserted'"


def test_intro_gives_each_chapter_one_short_line():
    rows = re.findall(r"^\| (\d) \| (.*?) \| (.*?) \|\s*$", (ROOT / "intro.md").read_text(), flags=re.M)
    assert len(rows) == len(QUESTION_CHAPTERS)
    for number, _, line in rows:
        assert words(line) <= MAX_INTRO_WORDS, f"intro.md, chapter {number}: {words(line)} words (at most 40)"
        assert not HEDGES.findall(line), f"intro.md, chapter {number} hedges: {HEDGES.findall(line)}"


def test_word_counts_count_what_a_reader_reads():
    # math and a code span count as one word each; a link counts its text, not its target
    assert words("The gap was $x^2$ and `code` [here](a.md) 2.5 points.") == 9
    assert words("A gap of {glue:text}`ch1_gap:.1f` points on the {term}`residual stream`.") == 9
    assert words("The {term}`needle <needle task>` and {cite}`vaswani2017attention`.") == 4
    md = "Open.\n\n:::{dropdown} How sure are we?\nhidden words here\n:::\n\nShut."
    assert "hidden" not in re.sub(r"^(`{3,}|:{3,})\{dropdown\}.*?^\1\s*$", "", md, flags=re.S | re.M)
