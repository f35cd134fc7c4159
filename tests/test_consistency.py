"""The pages tell one story: the figures that the README, the introduction, the teachers' guide
and the chapters all quote agree where they can be read mechanically (issue 27).

The marks and the exercises' times are checked in test_student_edition.py; here: the run-time
budget, the number of chapters, and each chapter's time.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = {name: (ROOT / name).read_text() for name in ("README.md", "intro.md", "teachers.md", "CONTRIBUTING.md")}
QUESTION_CHAPTERS = sorted((ROOT / "chapters").glob("0[1-9]_*.ipynb"))


def _markdown(path):
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_quotes_the_same_run_time_budget(page):
    text = re.sub(r"\s+", " ", PAGES[page])
    budgets = re.findall(r"(?:in (?:at most|under) |within (?:its )?)(\d+) ?(?:s\b|seconds)", text)
    assert "90" in budgets or "a minute and a half" in text, f"{page} does not state the 90-second budget"
    assert set(budgets) <= {"90"}, f"{page} quotes another per-notebook budget: {budgets}"
    other = re.search(r"(?:under|in|within) (?:a|one) minute(?! and a half)", text)
    assert not other, f"{page} says {other.group(0)!r}; the budget is 90 s a notebook"


def test_the_five_minute_total_is_the_same_where_it_is_quoted():
    for page in ("README.md", "CONTRIBUTING.md"):
        text = re.sub(r"\s+", " ", PAGES[page])
        assert re.search(r"5 minutes|5-minute", text), f"{page} does not state the 5-minute total"


def test_every_page_counts_the_same_chapters():
    n = len(QUESTION_CHAPTERS)
    readme = re.findall(r"^(\d)\. ", PAGES["README.md"].split("## The two commands")[0], flags=re.M)
    intro = re.findall(r"^\| (\d) \| \[", PAGES["intro.md"], flags=re.M)
    toc = (ROOT / "_toc.yml").read_text().split("The questions", 1)[1].split("caption", 1)[0]
    guide = re.findall(r"^### (\d)\. ", PAGES["teachers.md"], flags=re.M)
    counts = {"chapters/": n, "README": len(readme), "intro.md table": len(intro),
              "_toc.yml": toc.count("- file: chapters/"), "teachers.md": len(guide)}
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("path", QUESTION_CHAPTERS, ids=lambda p: p.stem)
def test_chapter_time_is_the_one_the_guide_gives(path):
    said = re.search(r"\*\*Time:\*\*\s*(\d+) minutes", _markdown(path))
    assert said, f"{path.name} gives no '**Time:** N minutes'"
    section = PAGES["teachers.md"].split(f"](chapters/{path.name})", 1)[1].split("\n### ", 1)[0]
    guide = re.search(r"\*Time:\s*(\d+) minutes", section)
    assert guide and guide.group(1) == said.group(1), \
        f"{path.name} says {said.group(1)} minutes, teachers.md {guide.group(1) if guide else 'nothing'}"
    plus = re.search(r"\*\*Time:\*\*[^*]*?plus (\d+) for the exercises", _markdown(path))
    if plus:
        assert re.search(rf"plus\s+{plus.group(1)}\s+for\s+the\s+exercises", section), \
            f"{path.name}: the chapter gives {plus.group(1)} minutes for its exercises, teachers.md does not"


def test_readme_cost_table_is_the_stored_provenance():
    """The README's full-scale cost table (CPU seconds per chapter) is the sum of the stored files'
    provenance, so that a re-run of `make results` that changes a cost cannot leave the table behind."""
    table = PAGES["README.md"].split("## Full-scale results")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\s*\| (\d\d_\w+|all) \|[^|]*\| (\d+) \|", table, flags=re.M))
    stored = {}
    for path in sorted((ROOT / "results").glob("0*/*.json")):
        stored.setdefault(path.parent.name, 0.0)
        stored[path.parent.name] += json.loads(path.read_text())["provenance"]["cpu_s"]
    assert stored, "no stored results under results/"
    quoted = {chapter: int(rows.get(chapter, -1)) for chapter in stored}
    assert quoted == {chapter: round(cpu) for chapter, cpu in stored.items()}, "README cost table (quoted) vs provenance"
    assert int(rows.get("all", -1)) == round(sum(stored.values())), "README cost table: the 'all' row"
