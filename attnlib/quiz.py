"""Self-check questions with instant feedback, shown with jupyterquiz.

Each chapter's questions live in one JSON file, ``attnlib/quizzes/<chapter>.json``
(package data, so that they install with the package, on Colab too),
in jupyterquiz's own format (a list of questions; see ``validate`` for what is
required). In a chapter, one line shows them::

    from attnlib.quiz import show_quiz
    show_quiz("02_shapes")                      # every question of the file
    show_quiz("02_shapes", ids=["one-matrix"])  # only these, in this order

``show_quiz`` reads the file, checks it (a missing file or a malformed question
raises ``QuizError``, which names the file and the question), and displays it with
``jupyterquiz.display_quiz``: the questions and jupyterquiz's JavaScript and CSS go
*inline* into the cell's output, so the quiz works in a notebook and on the static
website, with no kernel and no network. Answers are never shuffled, so the
committed output is what the code produces (nbval compares it), and the look is
fixed here:

- a deterministic container id (jupyterquiz draws a random one), so that
  re-executing a notebook does not change its output;
- colours with at least WCAG AA contrast (jupyterquiz's green is 4.2:1 on white);
- one answer per row; a focus ring on the answer that has the keyboard focus
  (Tab reaches a question's answers, the arrow keys and Space choose one; Enter
  does not, as for any radio button); MathJax's formulas inside an answer are
  taken out of the tab order, so that an answer is one stop;
- the feedback on a white ground, so that its colours keep their contrast when
  the reader switches the site to dark mode;
- the feedback is announced by screen readers (``aria-live``), and each question's
  answers form a radio group named by the question;
- on a web page, the quiz is drawn once the page's MathJax has started, so the
  math in the questions is typeset and jupyterquiz never tries to fetch MathJax
  from a CDN (which it does when it finds MathJax configured but not yet loaded).

Where the file is looked for: ``quizzes/`` under the working directory first (the
student edition puts a copy beside the notebooks, which a teacher may edit), then
the ``quizzes/`` folder of this package.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

__all__ = ["QUIZ_DIR", "QuizError", "find_quiz", "load_quiz", "validate", "show_quiz", "COLORS"]

# jupyterquiz's CSS variables: every text/background pair here is at least 4.5:1
# (tests/test_quiz.py checks it).
COLORS = {
    "--jq-multiple-choice-bg": "#392061",  # question box; text --jq-text-color
    "--jq-many-choice-bg": "#8a3b00",  # jupyterquiz's orange is 3.1:1 with white text
    "--jq-mc-button-bg": "#fafafa",
    "--jq-mc-button-border": "#767676",
    "--jq-mc-button-inset-shadow": "#555555",
    "--jq-correct-color": "#007a1a",  # feedback text on white, and the chosen button's background
    "--jq-incorrect-color": "#c80202",
    "--jq-text-color": "#fafafa",
    "--jq-link-color": "#ffffff",
}
FOCUS_COLOR = "#005a9c"
ANSWER_BUTTON_TEXT = "#333333"  # jupyterquiz's colour for an answer not yet chosen

TYPES = ("multiple_choice", "many_choice")
# HTML that a question may contain (jupyterquiz inserts the text as HTML)
ALLOWED_TAGS = ("code", "em", "strong", "b", "i", "sub", "sup", "br")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")

#: The questions that ship with the package: one ``<chapter>.json`` per chapter.
QUIZ_DIR = Path(__file__).resolve().parent / "quizzes"

_shown: dict[str, int] = {}  # container ids used in this kernel, to keep them unique


class QuizError(ValueError):
    """A quiz file that is missing or does not have jupyterquiz's shape."""


def _candidates(name):
    fname = name if name.endswith(".json") else name + ".json"
    return [Path.cwd() / "quizzes" / fname, QUIZ_DIR / fname]


def find_quiz(name):
    """The path of quiz ``name`` (``"02_shapes"``, or a path to a JSON file)."""
    p = Path(name)
    if p.suffix == ".json" and (p.is_absolute() or len(p.parts) > 1):
        if p.exists():
            return p
        raise QuizError(f"quiz file {p} does not exist")
    tried = _candidates(name)
    for c in tried:
        if c.exists():
            return c
    raise QuizError(f"no quiz {name!r}: looked for " + ", ".join(str(c) for c in dict.fromkeys(tried))
                    + f". The questions ship with attnlib in {QUIZ_DIR}; is attnlib installed "
                    "completely (pip install of the course repository)?")


def _check_text(text, where):
    if not isinstance(text, str) or not text.strip():
        raise QuizError(f"{where}: must be a non-empty string")
    n_dollars = len(re.findall(r"(?<!\\)\$", text))
    if n_dollars % 2:
        raise QuizError(f"{where}: an odd number of $ (unclosed math): {text!r}")
    for m in re.finditer(r"<\s*/?\s*([a-zA-Z]*)", text):
        if m.group(1).lower() not in ALLOWED_TAGS:
            raise QuizError(f"{where}: '<' is read as HTML; write \\lt or \\le inside $...$, or use one of "
                            f"the tags {', '.join(ALLOWED_TAGS)}: {text!r}")


def validate(questions, source="<questions>"):
    """Check that ``questions`` has the shape jupyterquiz expects, as this course uses it.

    A list of questions; each has a unique ``id`` (lower-case letters, digits and
    dashes), a ``type`` (``multiple_choice``: exactly one right answer, or
    ``many_choice``: at least one), a ``question`` and at least two ``answers``;
    every answer has its text (``answer``, with some words outside the math, which
    name the answer's radio button for a screen reader), ``correct`` (true or
    false) and a ``feedback``: every option, right or wrong, says why. Math is
    written ``$...$``; HTML is limited to a few inline tags. Raises ``QuizError``.
    """
    if not isinstance(questions, list) or not questions:
        raise QuizError(f"{source}: must be a non-empty JSON list of questions")
    seen = set()
    for i, q in enumerate(questions, start=1):
        where = f"{source}, question {i}"
        if not isinstance(q, dict):
            raise QuizError(f"{where}: must be a JSON object")
        qid = q.get("id")
        if not isinstance(qid, str) or not _ID.match(qid):
            raise QuizError(f"{where}: needs an \"id\" of lower-case letters, digits and dashes, has {qid!r}")
        if qid in seen:
            raise QuizError(f"{where}: the id {qid!r} is used twice")
        seen.add(qid)
        where = f"{source}, question {i} ({qid})"
        if q.get("type") not in TYPES:
            raise QuizError(f"{where}: \"type\" must be one of {', '.join(TYPES)}, is {q.get('type')!r}")
        _check_text(q.get("question"), where + ", \"question\"")
        answers = q.get("answers")
        if not isinstance(answers, list) or len(answers) < 2:
            raise QuizError(f"{where}: needs a list of at least two \"answers\"")
        for j, a in enumerate(answers, start=1):
            aw = f"{where}, answer {j}"
            if not isinstance(a, dict):
                raise QuizError(f"{aw}: must be a JSON object")
            _check_text(a.get("answer"), aw + ", \"answer\"")
            outside_math = re.sub(r"<[^>]*>", "", re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", a["answer"]))
            if not re.search(r"\w", outside_math):
                raise QuizError(f"{aw}: an answer that is only math has no accessible name for a screen "
                                f"reader (axe-core: 'label'); add words outside the $...$: {a['answer']!r}")
            if not isinstance(a.get("correct"), bool):
                raise QuizError(f"{aw}: \"correct\" must be true or false")
            _check_text(a.get("feedback"), aw + ", \"feedback\" (every answer explains itself)")
        n_right = sum(a["correct"] for a in answers)
        if q["type"] == "multiple_choice" and n_right != 1:
            raise QuizError(f"{where}: a multiple_choice question has exactly one right answer, this one has "
                            f"{n_right}")
        if n_right == 0:
            raise QuizError(f"{where}: no answer is marked \"correct\": true")
    return questions


def load_quiz(name):
    """The questions of quiz ``name`` (see ``find_quiz``), checked by ``validate``."""
    path = find_quiz(name)
    try:
        questions = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise QuizError(f"{path}: not valid JSON: {e}") from None
    return validate(questions, str(path))


def _container_id(name, ids):
    stem = re.sub(r"\W", "_", Path(name).stem)
    key = f"jq_{stem}" if ids is None else (
        f"jq_{stem}_" + hashlib.sha1("|".join(ids).encode()).hexdigest()[:6])
    _shown[key] = _shown.get(key, 0) + 1
    return key if _shown[key] == 1 else f"{key}_{_shown[key]}"


def _extra_css(div):
    return f"""
#{div} .Answer {{ grid-template-columns: 1fr; }}
#{div} .MCButton {{ color: {ANSWER_BUTTON_TEXT}; }}
#{div} .MCButton.correctButton, #{div} .MCButton.incorrectButton {{ color: var(--jq-text-color); }}
#{div} .MCButton:focus-within {{ outline: 3px solid {FOCUS_COLOR}; outline-offset: 2px; }}
#{div} .MCButton:has(input:focus:not(:focus-visible)) {{ outline: none; }}
#{div} .MCButton input[type=radio] {{ position: absolute; width: 1px; height: 1px; margin: -1px;
    padding: 0; overflow: hidden; clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }}
#{div} .Feedback {{ font-size: 14pt; text-align: left; }}
#{div} .Feedback:not(:empty) {{ padding: 4px 10px 6px; background: #ffffff; border-radius: inherit; }}
"""


def _wrap_js(js, div):
    """Run jupyterquiz's script once the page (and its MathJax) is ready, then add
    the ARIA attributes that it does not set."""
    return f"""(function () {{
var run = function () {{
{js}
var root = document.getElementById("{div}");
if (!root) return;
root.querySelectorAll(".Quiz").forEach(function (wrap) {{
  var q = wrap.querySelector("[id^=quizQn]"), a = wrap.querySelector(".Answer"), fb = wrap.querySelector(".Feedback");
  if (a) {{ a.setAttribute("role", "radiogroup"); if (q) a.setAttribute("aria-labelledby", q.id); }}
  if (fb) fb.setAttribute("aria-live", "polite");
}});
// MathJax puts every formula in the tab order: inside an answer it would take the
// focus from the answer's radio button, which is the one stop an answer needs
var untab = function () {{
  root.querySelectorAll(".MCButton mjx-container[tabindex]").forEach(function (m) {{
    if (m.getAttribute("tabindex") !== "-1") m.setAttribute("tabindex", "-1");
  }});
}};
untab();
if (window.MutationObserver) {{
  new MutationObserver(untab).observe(root, {{childList: true, subtree: true, attributes: true, attributeFilter: ["tabindex"]}});
}}
root.setAttribute("data-quiz-ready", "true");
}};
var start = function () {{
  var mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {{ mj.startup.promise.then(run); }} else {{ run(); }}
}};
if (document.readyState === "loading") {{ document.addEventListener("DOMContentLoaded", start); }} else {{ start(); }}
}})();
"""


def show_quiz(name, ids=None):
    """Display the self-check questions of chapter ``name`` (e.g. ``"00_notation"``).

    ``ids``: show only the questions with these ids, in this order (for a
    "predict before you run" question placed before an experiment); default all.
    Raises ``QuizError`` if the file is missing or malformed, or an id is unknown.
    """
    from IPython.display import publish_display_data
    from IPython.utils.capture import capture_output
    from jupyterquiz import display_quiz

    questions = load_quiz(name)
    if ids is not None:
        ids = [ids] if isinstance(ids, str) else list(ids)
        by_id = {q["id"]: q for q in questions}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise QuizError(f"quiz {name!r} has no question {unknown}; its ids: {list(by_id)}")
        questions = [by_id[i] for i in ids]
    div = _container_id(name, ids)

    with capture_output() as cap:
        display_quiz(questions, shuffle_questions=False, shuffle_answers=False, colors=dict(COLORS),
                     max_width=800, border_radius=10)
    html_out = [o for o in cap.outputs if "text/html" in o.data]
    js_out = [o for o in cap.outputs if "application/javascript" in o.data]
    if len(html_out) != 1 or len(js_out) != 1:
        raise RuntimeError("jupyterquiz.display_quiz produced unexpected outputs "
                           f"({[list(o.data) for o in cap.outputs]}): pin jupyterquiz==2.9.6.4")
    html = html_out[0].data["text/html"]
    m = re.match(r'<div id="([A-Za-z]+)"', html)
    if not m:
        raise RuntimeError("jupyterquiz's container has changed: pin jupyterquiz==2.9.6.4")
    random_id = m.group(1)
    js = js_out[0].data["application/javascript"].replace(random_id, div)
    # jupyterquiz leaves its container <div> open; close it so that the page after it is not nested inside
    html = html.replace(random_id, div).replace("</style>", _extra_css(div) + "</style>", 1) + "</div>"
    publish_display_data({"text/html": html, "text/plain": f"<self-check questions: {name}>"})
    publish_display_data({"application/javascript": _wrap_js(js, div)})
