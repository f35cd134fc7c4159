"""The self-check questions (attnlib.quiz, rendered by jupyterquiz) on the built site, in headless
Chromium: every question drawn offline, the right feedback for a wrong and a right answer, and
the quizzes usable from the keyboard.

Split from test_site.py (whose page helpers they use; the server and the browser are fixtures
of conftest.py) so that ``make test``'s
workers (``pytest -n N --dist loadfile``: one file per worker at a time) check the quizzes and the
rest of the site at the same time.
"""
import json
import re

import pytest

from test_site import ARTIFACTS, NOTEBOOK_PAGES, ROOT, TIMEOUT_MS, Visit, _unavailable, source_of

def _quiz_calls(doc):
    """The quizzes a notebook shows, in order: [(name, ids or None)], from its show_quiz(...) calls."""
    import ast

    calls = []
    for c in json.loads(source_of(doc).read_text())["cells"]:
        if c["cell_type"] != "code" or "show_quiz(" not in "".join(c["source"]):
            continue
        # the whole cell at once (a call may span lines), without IPython's magics and shell lines
        code = "\n".join(l for l in "".join(c["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "show_quiz":
                kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                calls.append((ast.literal_eval(node.args[0]), kw.get("ids")))
    return calls


def _quiz_questions(doc):
    """The questions each quiz of the page should show, from attnlib/quizzes/."""
    from attnlib.quiz import load_quiz

    out = []
    for name, ids in _quiz_calls(doc):
        qs = load_quiz(ROOT / "attnlib" / "quizzes" / f"{name}.json")
        out.append(qs if ids is None else [next(q for q in qs if q["id"] == i) for i in ids])
    return out


QUIZ_PAGES = [d for d in NOTEBOOK_PAGES if _quiz_calls(d)]
QUIZ_PARAMS = QUIZ_PAGES or [pytest.param(None, marks=pytest.mark.skip(reason="no chapter shows a quiz yet"))]
QUIZ_READY = "n => document.querySelectorAll('article [id^=jq_][data-quiz-ready]').length === n"
QUIZ_STATE_JS = """q => { const w = document.querySelectorAll('article [id^=jq_] .Quiz')[q];
    const fb = w.querySelector('.Feedback');
    return {feedback: fb.textContent.trim(), fbClass: fb.className, fbColor: getComputedStyle(fb).color,
            chosen: [...w.querySelectorAll('label.MCButton')].map(l => l.className),
            focus: document.activeElement && w.contains(document.activeElement) ? document.activeElement.tagName : null}; }"""


def _rgb(hex_colour):
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


def _plain(text):
    """The part of a feedback before its first formula or tag: what the page must show verbatim."""
    return re.split(r"\$|<", text)[0].replace("&amp;", "&").strip()


def _open_quiz_page(browser, site_url, doc):
    v = Visit(browser, site_url, doc)
    v.page.wait_for_function(QUIZ_READY, arg=len(_quiz_calls(doc)), timeout=TIMEOUT_MS)
    v.page.wait_for_timeout(700)  # jupyterquiz typesets once more after 500 ms
    return v


@pytest.mark.parametrize("doc", QUIZ_PARAMS)
def test_quiz_renders_every_question_offline(browser, site_url, doc):
    """Every question of every quiz is drawn, with its answers and typeset math, from the
    page alone: no request leaves the site, no console error."""
    expected = _quiz_questions(doc)
    v = _open_quiz_page(browser, site_url, doc)
    try:
        containers = v.page.locator("article [id^=jq_]")
        assert containers.count() == len(expected), f"{doc}: {len(expected)} quizzes in the notebook, {containers.count()} on the page"
        for k, questions in enumerate(expected):
            wraps = containers.nth(k).locator(".Quiz")
            assert wraps.count() == len(questions), f"{doc}: quiz {k} shows {wraps.count()} of {len(questions)} questions"
            for i, q in enumerate(questions):
                w = wraps.nth(i)
                assert w.locator("label.MCButton").count() == len(q["answers"]), f"{doc}: {q['id']}: answers missing"
                assert w.locator("label.MCButton input[type=radio]").count() == len(q["answers"])
                text = w.inner_text()
                assert _plain(q["question"])[:30] in text, f"{doc}: {q['id']}: question text not shown"
                assert "\\(" not in text and "$" not in text, f"{doc}: {q['id']}: math left as TeX: {text[:200]!r}"
                if "$" in q["question"] + "".join(a["answer"] for a in q["answers"]):
                    assert w.locator("mjx-container").count() > 0, f"{doc}: {q['id']}: math not typeset"
        assert v.page.locator("article [id^=jq_] mjx-merror").count() == 0, f"{doc}: MathJax errors in a quiz"
        assert not v.errors, f"{doc}: JavaScript errors:\n" + "\n".join(v.errors)
        assert not v.failed, f"{doc}: failed requests (the quiz must work offline):\n" + "\n".join(v.failed)
    finally:
        v.close()


@pytest.mark.parametrize("doc", QUIZ_PARAMS)
def test_quiz_gives_the_right_feedback(browser, site_url, doc):
    """Clicking a wrong answer, then the right one, of every question shows that answer's
    own feedback in the 'incorrect' then 'correct' colour; screenshots of a question answered
    wrong and one answered right; axe-core finds nothing serious in the answered quizzes."""
    from attnlib.quiz import COLORS

    expected = [q for qs in _quiz_questions(doc) for q in qs]
    v = _open_quiz_page(browser, site_url, doc)
    try:
        wraps = v.page.locator("article [id^=jq_] .Quiz")
        for i, q in enumerate(expected):
            labels = wraps.nth(i).locator("label.MCButton")
            right = next(j for j, a in enumerate(q["answers"]) if a["correct"])
            wrong = next(j for j, a in enumerate(q["answers"]) if not a["correct"])
            for j, verdict, colour in ((wrong, "incorrect", "--jq-incorrect-color"),
                                       (right, "correct", "--jq-correct-color")):
                labels.nth(j).scroll_into_view_if_needed()
                labels.nth(j).click()
                v.page.wait_for_timeout(900)  # the chosen button's colour is animated over 0.8 s
                s = v.page.evaluate(QUIZ_STATE_JS, i)
                assert verdict in s["fbClass"].split(), f"{doc}: {q['id']}: answer {j + 1} gave {s['fbClass']!r}"
                assert s["feedback"].startswith(_plain(q["answers"][j]["feedback"])), (
                    f"{doc}: {q['id']}: answer {j + 1} shows {s['feedback'][:80]!r}")
                assert s["fbColor"] == _rgb(COLORS[colour]), f"{doc}: {q['id']}: feedback colour {s['fbColor']}"
                assert f"{verdict}Button" in s["chosen"][j].split(), f"{doc}: {q['id']}: {s['chosen'][j]!r}"
                if i == 0 and verdict == "incorrect":
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    wraps.nth(i).screenshot(path=str(ARTIFACTS / (doc.replace("/", "__") + "__quiz-answered-wrong.png")))
            if i == 1 or len(expected) == 1:
                wraps.nth(i).screenshot(path=str(ARTIFACTS / (doc.replace("/", "__") + "__quiz-answered-right.png")))
        assert not v.errors, f"{doc}: JavaScript errors while answering:\n" + "\n".join(v.errors)
        assert not v.failed, f"{doc}: requests while answering:\n" + "\n".join(v.failed)
        violations = [x for x in axe_audit_of(v, "article [id^=jq_]") if x["impact"] in ("serious", "critical")]
        assert not violations, f"{doc}: serious/critical accessibility violations in the answered quizzes:\n" + "\n".join(
            f"  {x['impact']}: {x['id']} ({x['count']}x) {x['help']}: {x['nodes']}" for x in violations)
    finally:
        v.close()


def axe_audit_of(v, selector):
    """axe-core's WCAG 2.0/2.1 A and AA violations inside the elements that match ``selector``."""
    axe = ROOT / "test-vendor" / "axe-core" / "axe.min.js"
    if not axe.exists():
        _unavailable(f"no {axe.relative_to(ROOT)}: run scripts/vendor_assets.py (make test does)")
    v.page.add_script_tag(path=str(axe))
    return v.page.evaluate(
        """([sel, tags]) => axe.run({include: [...document.querySelectorAll(sel)].map(e => '#' + e.id)},
               {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
           .then(r => r.violations.map(x => ({id: x.id, impact: x.impact, help: x.help,
               nodes: x.nodes.map(n => n.target.join(' ')).slice(0, 5), count: x.nodes.length})))""",
        [selector, ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]])


QUIZ_FOCUS_JS = """() => { const e = document.activeElement; const w = e && e.closest('[id^=jq_] .Quiz');
    if (!w) return null;
    const label = e.closest('label');
    return {q: [...document.querySelectorAll('article [id^=jq_] .Quiz')].indexOf(w), tag: e.tagName, type: e.type || '',
            answer: label ? [...w.querySelectorAll('label.MCButton')].indexOf(label) : -1,
            ring: label ? getComputedStyle(label).outlineStyle : ''}; }"""


@pytest.mark.parametrize("doc", QUIZ_PARAMS)
def test_quiz_works_from_the_keyboard(browser, site_url, doc):
    """Tab from the top of the page reaches the first question's answers (a radio button,
    with a visible focus ring); Space chooses it, the arrow keys move to the next answer and
    choose it, each with its feedback; Tab goes on to the next question's answers.
    (Enter does not choose: a radio button does not react to it, in jupyterquiz or anywhere.)"""
    expected = [q for qs in _quiz_questions(doc) for q in qs]
    v = _open_quiz_page(browser, site_url, doc)
    try:
        v.page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
        for _ in range(600):
            v.page.keyboard.press("Tab")
            f = v.page.evaluate(QUIZ_FOCUS_JS)
            if f and f["tag"] == "INPUT":
                break
        else:
            pytest.fail(f"{doc}: 600 presses of Tab never reached a quiz answer")
        assert f["type"] == "radio" and f["q"] == 0 and f["answer"] == 0, f"{doc}: Tab first reached {f}"
        assert f["ring"] not in ("", "none"), f"{doc}: the focused answer shows no focus ring"
        q = expected[0]
        v.page.keyboard.press("Space")
        v.page.wait_for_timeout(300)
        s = v.page.evaluate(QUIZ_STATE_JS, 0)
        verdict = "correct" if q["answers"][0]["correct"] else "incorrect"
        assert verdict in s["fbClass"].split() and s["feedback"].startswith(_plain(q["answers"][0]["feedback"])), (
            f"{doc}: Space on answer 1 gave {s['fbClass']!r}: {s['feedback'][:60]!r}")
        v.page.keyboard.press("ArrowDown")
        v.page.wait_for_timeout(300)
        f, s = v.page.evaluate(QUIZ_FOCUS_JS), v.page.evaluate(QUIZ_STATE_JS, 0)
        assert f and f["q"] == 0 and f["answer"] == 1, f"{doc}: ArrowDown moved the focus to {f}"
        assert s["feedback"].startswith(_plain(q["answers"][1]["feedback"])), f"{doc}: ArrowDown: {s['feedback'][:60]!r}"
        if len(expected) > 1:
            # past the formulas of the feedback, which MathJax makes focusable, and, where the next
            # question is a later quiz of the page (a "predict" question sits above an experiment),
            # past the links, buttons and sliders in between
            for _ in range(600):
                v.page.keyboard.press("Tab")
                f = v.page.evaluate(QUIZ_FOCUS_JS)
                if f and f["tag"] == "INPUT":
                    break
            assert f and f["q"] == 1 and f["type"] == "radio", f"{doc}: Tab after question 1 reached {f}"
        assert not v.errors, f"{doc}: JavaScript errors:\n" + "\n".join(v.errors)
    finally:
        v.close()
