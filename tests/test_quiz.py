"""The self-check questions: attnlib.quiz and the files in attnlib/quizzes/.

Every question file has the shape jupyterquiz expects (a type, the right answer
marked, feedback on every answer), every wrong answer points to a section that
exists, and show_quiz displays a file deterministically, or says clearly what is
wrong with it. The browser tests of the rendered quizzes are in test_site_quiz.py.
"""
import json
import re
from pathlib import Path

import pytest

from attnlib import quiz
from attnlib.quiz import QuizError, load_quiz, show_quiz, validate

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
QUIZZES = ROOT / "attnlib" / "quizzes"
QUIZ_FILES = sorted(QUIZZES.glob("*.json"))
CHAPTER_NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
# "see “Section title”" (this chapter) or "see chapter 2, “Section title”"
SEE = re.compile(r"see (?:chapter (\d+), )?“([^”]+)”")


def _question(**over):
    q = {"id": "q", "type": "multiple_choice", "question": "What is $d_k$?",
         "answers": [{"answer": "The width of one head", "correct": True, "feedback": "Correct."},
                     {"answer": "The number of heads", "correct": False, "feedback": "No, that is $h$."}]}
    q.update(over)
    return q


def _headings(notebook):
    nb = json.loads(notebook.read_text())
    return {m.group(1).strip()
            for c in nb["cells"] if c["cell_type"] == "markdown"
            for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", "".join(c["source"]), flags=re.M)}


# --------------------------------------------------------------------------
# The question files


def test_one_quiz_file_per_chapter():
    assert QUIZ_FILES, "no question files in attnlib/quizzes/"
    chapters = {nb.stem for nb in CHAPTER_NOTEBOOKS}
    files = {f.stem for f in QUIZ_FILES}
    assert files == chapters, (f"chapters without questions: {sorted(chapters - files)}; "
                               f"question files without a chapter: {sorted(files - chapters)}")


@pytest.mark.parametrize("path", QUIZ_FILES, ids=lambda p: p.stem)
def test_quiz_file_has_jupyterquiz_shape(path):
    questions = load_quiz(path)  # validate(): type, right answer marked, feedback on every answer
    end = [q for q in questions if not q["id"].startswith("predict-")]  # "predict-" ones sit above experiments
    # one question per misconception a chapter weighs (issue 20), and a chapter can weigh seven
    assert 3 <= len(end) <= 8, f"{path.name}: {len(end)} end-of-chapter questions, the course uses 3 to 8"
    for q in questions:
        assert q["type"] in ("multiple_choice", "many_choice")
        assert any(a["correct"] for a in q["answers"])
        assert all(a["feedback"].strip() for a in q["answers"]), f"{path.name}, {q['id']}: an answer without feedback"


@pytest.mark.parametrize("path", QUIZ_FILES, ids=lambda p: p.stem)
def test_right_answer_is_not_always_in_the_same_place(path):
    """Answers are not shuffled (stable outputs), so the files vary where the right one is."""
    positions = [next(i for i, a in enumerate(q["answers"]) if a["correct"]) for q in load_quiz(path)]
    assert len(set(positions)) > 1, f"{path.name}: the right answer is always option {positions[0] + 1}"


@pytest.mark.parametrize("path", QUIZ_FILES, ids=lambda p: p.stem)
def test_wrong_answers_point_to_a_section_that_exists(path):
    """Each wrong answer's feedback names the section that settles it, as
    'see “Title”' (this chapter) or 'see chapter N, “Title”', and that heading exists."""
    missing, unpointed = [], []
    for q in load_quiz(path):
        for a in q["answers"]:
            refs = SEE.findall(a["feedback"])
            if not a["correct"] and not refs:
                unpointed.append(f"{q['id']}: {a['answer'][:50]!r}")
            for chapter, title in refs:
                nb = (CHAPTERS / (path.stem + ".ipynb") if not chapter
                      else next(iter(CHAPTERS.glob(f"{int(chapter):02d}_*.ipynb")), None))
                if nb is None or not nb.exists():
                    missing.append(f"{q['id']}: no chapter {chapter or path.stem}")
                elif title not in _headings(nb):
                    missing.append(f"{q['id']}: “{title}” is not a heading of {nb.name}")
    assert not unpointed, f"{path.name}: wrong answers whose feedback names no section:\n" + "\n".join(unpointed)
    assert not missing, f"{path.name}: feedback points to sections that do not exist:\n" + "\n".join(missing)


def test_colours_have_aa_contrast():
    """The quiz's text/background pairs reach WCAG AA (4.5:1 for normal text)."""
    def lum(h):
        r, g, b = (int(h.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
        f = lambda c: c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4  # noqa: E731
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)

    def ratio(a, b):
        la, lb = sorted((lum(a), lum(b)), reverse=True)
        return (la + 0.05) / (lb + 0.05)

    c = quiz.COLORS
    pairs = {
        "question text": (c["--jq-text-color"], c["--jq-multiple-choice-bg"]),
        "many-choice question text": (c["--jq-text-color"], c["--jq-many-choice-bg"]),
        "answer text": (quiz.ANSWER_BUTTON_TEXT, c["--jq-mc-button-bg"]),
        "right answer chosen": (c["--jq-text-color"], c["--jq-correct-color"]),
        "wrong answer chosen": (c["--jq-text-color"], c["--jq-incorrect-color"]),
        "feedback 'correct' on the page": (c["--jq-correct-color"], "#ffffff"),
        "feedback 'incorrect' on the page": (c["--jq-incorrect-color"], "#ffffff"),
    }
    low = {k: round(ratio(*v), 2) for k, v in pairs.items() if ratio(*v) < 4.5}
    assert not low, f"contrast below 4.5:1: {low}"
    # the focus ring against the page and against an answer's background (WCAG 1.4.11: 3:1)
    assert ratio(quiz.FOCUS_COLOR, "#ffffff") >= 3 and ratio(quiz.FOCUS_COLOR, c["--jq-mc-button-bg"]) >= 3


# --------------------------------------------------------------------------
# validate / load_quiz: clear errors


@pytest.mark.parametrize("questions, message", [
    ([], "non-empty JSON list"),
    ({"question": "x"}, "non-empty JSON list"),
    ([_question(id="Bad Id")], "needs an \"id\""),
    ([_question(), _question()], "used twice"),
    ([_question(type="numeric")], "\"type\" must be one of"),
    ([_question(type=None)], "\"type\" must be one of"),
    ([_question(question="")], "\"question\": must be a non-empty string"),
    ([_question(question="rank $< d_k$")], "'<' is read as HTML"),
    ([_question(question="unclosed $d_k")], "odd number of $"),
    ([_question(answers=[{"answer": "only", "correct": True, "feedback": "f"}])], "at least two"),
    ([_question(answers=[{"answer": "a", "correct": True, "feedback": "f"},
                         {"answer": "b", "correct": False}])], "answer 2, \"feedback\""),
    ([_question(answers=[{"answer": "a", "correct": True, "feedback": "f"},
                         {"answer": "b", "correct": False, "feedback": "  "}])], "answer 2, \"feedback\""),
    ([_question(answers=[{"answer": "a", "correct": "yes", "feedback": "f"},
                         {"answer": "b", "correct": False, "feedback": "f"}])], "true or false"),
    ([_question(answers=[{"answer": "a", "correct": True, "feedback": "f"},
                         {"answer": "b", "correct": True, "feedback": "f"}])], "exactly one right answer"),
    ([_question(answers=[{"answer": "a", "correct": False, "feedback": "f"},
                         {"answer": "b", "correct": False, "feedback": "f"}])], "exactly one right answer"),
    ([_question(type="many_choice", answers=[{"answer": "a", "correct": False, "feedback": "f"},
                                             {"answer": "b", "correct": False, "feedback": "f"}])],
     "no answer is marked"),
    ([_question(answers=[{"answer": "$d_k$", "correct": True, "feedback": "f"},
                         {"answer": "b", "correct": False, "feedback": "f"}])], "only math"),
])
def test_validate_says_what_is_wrong(questions, message):
    with pytest.raises(QuizError, match=re.escape(message)):
        validate(questions, "test.json")


def test_validate_accepts_code_and_many_choice():
    validate([_question(question="What does <code>nn.Linear</code> do?"),
              _question(id="two", type="many_choice",
                        answers=[{"answer": "a", "correct": True, "feedback": "f"},
                                 {"answer": "b", "correct": True, "feedback": "f"}])])


def test_missing_quiz_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(QuizError, match=r"no quiz 'no_such_chapter': looked for .*quizzes/no_such_chapter\.json"):
        load_quiz("no_such_chapter")
    with pytest.raises(QuizError, match="does not exist"):
        load_quiz(str(tmp_path / "sub" / "x.json"))


def test_malformed_json_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "quizzes").mkdir()
    (tmp_path / "quizzes" / "broken.json").write_text('[{"id": "a",]')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(QuizError, match=r"broken\.json: not valid JSON"):
        load_quiz("broken")


def test_finds_the_quiz_from_the_chapters_folder_and_the_repository_root(monkeypatch):
    monkeypatch.chdir(CHAPTERS)  # where a chapter's kernel runs
    assert load_quiz("00_notation") == json.loads((QUIZZES / "00_notation.json").read_text())
    monkeypatch.chdir(ROOT)
    assert quiz.find_quiz("00_notation") == QUIZZES / "00_notation.json"


def test_an_installed_attnlib_carries_its_questions(tmp_path):
    """On Colab, attnlib is pip-installed from the repository (not editable), with no
    chapters/ folder anywhere: the question files must travel inside the package, and so must
    the stored full-scale results (results/, as attnlib.stored_results) and the data files."""
    import shutil
    import subprocess
    import sys

    source, target = tmp_path / "source", tmp_path / "site"  # a copy: the build writes build/ beside it
    shutil.copytree(ROOT / "attnlib", source / "attnlib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "results", source / "results", ignore=shutil.ignore_patterns(".partial", "seed-*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, cwd=tmp_path)
    code = ("import attnlib.quiz as q; p = q.find_quiz('03_output_projection'); "
            "print(p); q.load_quiz('03_output_projection'); "
            "from attnlib import experiments, results; e = experiments.experiments()[0]; "
            "assert str(results.RESULTS_DIR).startswith(str(p.parents[2])), results.RESULTS_DIR; "
            "results.load(e.chapter, e.name); "
            "from attnlib.tasks import movie_reviews; assert len(movie_reviews().X_test) > 100")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target)), out.stdout


# --------------------------------------------------------------------------
# show_quiz


@pytest.fixture
def shown(monkeypatch):
    """Call show_quiz in an IPython shell and return its display outputs (mime bundles)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    monkeypatch.chdir(CHAPTERS)
    monkeypatch.setattr(quiz, "_shown", {})

    def run(*args, **kwargs):
        with capture_output() as cap:
            show_quiz(*args, **kwargs)
        return [o.data for o in cap.outputs]

    return run


def test_show_quiz_outputs_html_and_inline_javascript(shown):
    html_out, js_out = shown("00_notation")
    html, js = html_out["text/html"], js_out["application/javascript"]
    assert html.startswith('<div id="jq_00_notation"') and html.rstrip().endswith("</div>")
    assert html.count("<div") == html.count("</div>"), "the quiz container is left open"
    assert 'data-shuffleanswers="False"' in html and 'data-shufflequestions="False"' in html
    assert "var questionsjq_00_notation=" in js and "show_questions(" in js, "jupyterquiz's script is not inline"
    assert "mj.startup.promise.then(run)" in js
    questions = json.loads(re.search(r"var questionsjq_00_notation=(\[.*?\]);\n", js, flags=re.S).group(1))
    assert questions == load_quiz("00_notation")
    # no other script or style is fetched: jupyterquiz's only URL is its MathJax fallback,
    # which the wrapper avoids by running after the page's MathJax has started
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", html)


def test_show_quiz_output_is_deterministic(shown, monkeypatch):
    first = shown("00_notation")
    monkeypatch.setattr(quiz, "_shown", {})
    assert shown("00_notation") == first, "re-executing the notebook would change its output (nbval)"
    again = shown("00_notation")  # the same quiz twice in one notebook: a second container id
    assert 'id="jq_00_notation_2"' in again[0]["text/html"]


def test_show_quiz_selects_questions_by_id(shown):
    ids = [q["id"] for q in load_quiz("02_shapes")]
    _, js_out = shown("02_shapes", ids=[ids[2], ids[0]])
    m = re.search(r"var questions(jq_02_shapes_\w+)=(\[.*?\]);\n", js_out["application/javascript"], flags=re.S)
    assert [q["id"] for q in json.loads(m.group(2))] == [ids[2], ids[0]]
    with pytest.raises(QuizError, match="has no question"):
        shown("02_shapes", ids=["no-such-id"])


def test_show_quiz_refuses_a_malformed_file(shown, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_question(answers=[{"answer": "a", "correct": True},
                                                  {"answer": "b", "correct": False, "feedback": "f"}])]))
    with pytest.raises(QuizError, match=r"bad\.json, question 1 \(q\), answer 1, \"feedback\""):
        shown(str(bad))


# --------------------------------------------------------------------------
# Packaging and the chapter


def test_jupyterquiz_is_a_pinned_reader_requirement():
    import jupyterquiz

    req = (ROOT / "requirements.txt").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    pin = re.search(r"^jupyterquiz==([\d.]+)\s*$", req, flags=re.M)
    assert pin, "requirements.txt must pin jupyterquiz (attnlib.quiz relies on its output)"
    assert f'"jupyterquiz=={pin.group(1)}"' in pyproject, "pyproject.toml must pin the same jupyterquiz"
    assert jupyterquiz.__version__ == pin.group(1)


def test_chapter_0_checks_understanding_before_where_to_go_next():
    nb = json.loads((CHAPTERS / "00_notation.ipynb").read_text())
    cells = nb["cells"]
    src = ["".join(c["source"]) for c in cells]
    check = next(i for i, s in enumerate(src) if s.startswith("## Check your understanding"))
    nxt = next(i for i, s in enumerate(src) if s.startswith("## Where to go next"))
    assert check < nxt
    quiz_cells = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and 'show_quiz("00_notation")' in src[i]]
    assert quiz_cells and check < quiz_cells[0] < nxt
    outputs = cells[quiz_cells[0]]["outputs"]
    assert any("application/javascript" in o.get("data", {}) for o in outputs), "execute the notebook"


@pytest.mark.parametrize("notebook", [p for p in CHAPTER_NOTEBOOKS if not p.name.startswith("00_")], ids=lambda p: p.stem)
def test_every_chapter_checks_understanding_before_its_summary(notebook):
    """Every chapter ends with its quiz ("Check your understanding", just before "Summary"), whose
    questions are the file's end-of-chapter ones; "predict-" questions are shown above experiments."""
    nb = json.loads(notebook.read_text())
    src = ["".join(c["source"]) for c in nb["cells"]]
    check = next(i for i, s in enumerate(src) if s.startswith("## Check your understanding"))
    summary = next(i for i, s in enumerate(src) if s.startswith("## Summary"))
    assert check < summary
    calls = [(i, s) for i, s in enumerate(src) if nb["cells"][i]["cell_type"] == "code" and "show_quiz(" in s]
    assert any(check < i < summary for i, _ in calls), "no quiz cell between the heading and the Summary"
    for i, _ in calls:
        assert any("application/javascript" in o.get("data", {}) for o in nb["cells"][i]["outputs"]), \
            f"cell {i}: execute the notebook"
    shown = " ".join(s for _, s in calls)
    for q in load_quiz(QUIZZES / f"{notebook.stem}.json"):
        assert f'"{q["id"]}"' in shown, f"question {q['id']} is shown by no cell"
