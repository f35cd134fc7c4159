"""Browser tests of the built website (``_build/html``).

Every page of ``_toc.yml`` is served on 127.0.0.1 and opened in headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright). The checks:

- the page loads with no JavaScript error, no failed request, and no request
  that leaves 127.0.0.1 (the site must work with no internet);
- math renders (a MathJax container in every math element);
- every image has loaded, with alt text or a caption; notebook figures have captions;
- widgets render, and moving a slider changes the output linked to it;
- exercises are present and solutions are collapsed until clicked;
- the Binder and Colab buttons open the page's own notebook in the repository;
- internal links resolve (file and anchor);
- each chapter's Colab set-up cell is there, hidden on the site, and does
  nothing where attnlib is installed.

A full-page screenshot of each page is saved in ``test-artifacts/site/``.

The site must be built first (``make test`` does it). Run on their own:

    jupyter-book build . -W -n --keep-going && pytest tests/test_site.py

Without a built site or without Chromium these tests are skipped, unless
``SITE_TESTS=required`` (set by ``make test``), which makes that a failure.
Environment: ``SITE_DIR`` (default ``_build/html``), ``CHROMIUM``
(default ``/usr/bin/chromium``).
"""
import functools
import http.server
import json
import os
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("SITE_DIR", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "site"
REQUIRED = os.environ.get("SITE_TESTS", "") == "required"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
TIMEOUT_MS = 60_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _unavailable(reason):
    if REQUIRED:
        pytest.fail(reason + " (SITE_TESTS=required)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------
# The pages: every file of _toc.yml, and what their sources contain


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        for key in ("parts", "chapters", "sections"):
            for entry in node.get(key, []) or []:
                if "file" in entry:
                    files.append(entry["file"])
                walk(entry)

    walk(toc)
    return files


def source_of(doc):
    for ext in (".ipynb", ".md"):
        if (ROOT / (doc + ext)).exists():
            return ROOT / (doc + ext)
    return None


def source_text(doc):
    """The markdown of a page (for a notebook: its markdown cells)."""
    src = source_of(doc)
    if src is None:
        return ""
    if src.suffix == ".md":
        return src.read_text()
    nb = json.loads(src.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def has_math(text):
    # drop code (fenced and inline) before looking for $...$ or a math directive
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return bool(re.search(r"\$[^$\n]+\$|\$\$|\\begin\{|```\{math\}", text))


PAGES = toc_files()
NOTEBOOK_PAGES = [d for d in PAGES if (s := source_of(d)) is not None and s.suffix == ".ipynb"]
CHAPTER_NOTEBOOKS = [d for d in NOTEBOOK_PAGES if d.startswith("chapters/")]


def config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


# --------------------------------------------------------------------------
# Serving the site and driving Chromium


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Visit:
    """One page opened in a fresh browser context, with what went wrong while loading it."""

    def __init__(self, browser, site_url, doc):
        self.doc = doc
        self.url = site_url + doc + ".html"
        self.errors = []  # console errors and uncaught exceptions
        self.failed = []  # failed requests, HTTP errors, requests that leave the site
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = self.page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text} @ {m.location}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url}: HTTP {r.status}"))

        def route(r):
            if r.request.url.startswith(site_url) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.failed.append(f"{r.request.url}: leaves the site (it must work offline)")
                r.abort()

        page.route("**/*", route)
        page.goto(self.url, wait_until="load")
        # MathJax typesets asynchronously; wait for it where it is loaded
        page.wait_for_function(
            "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise"
            " && (MathJax.startup.promise.then(() => window.__mjDone = true), window.__mjDone))")
        if self.widget_views():
            page.wait_for_function(
                f"""() => [...document.querySelectorAll('script[type="{WIDGET_VIEW}"]')]
                       .every(s => s.previousElementSibling
                                   && s.previousElementSibling.querySelector('.jupyter-widgets, .widget-subarea *'))""")
        page.wait_for_load_state("networkidle")

    def widget_views(self):
        return self.page.locator(f'script[type="{WIDGET_VIEW}"]').count()

    def screenshot(self, suffix=""):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / (self.doc.replace("/", "__") + suffix + ".png")
        # no focus ring or "skip to content" bar left over from a click, view from the top
        self.page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self):
        self.context.close()


@pytest.fixture(scope="session")
def visited(browser, site_url):
    """Each page loaded once (with its screenshot), shared by the checks that only read it."""
    cache = {}

    def get(doc):
        if doc not in cache:
            v = cache[doc] = Visit(browser, site_url, doc)
            v.screenshot()
        return cache[doc]

    yield get
    for v in cache.values():
        v.close()


# --------------------------------------------------------------------------
# Every page


@pytest.mark.parametrize("doc", PAGES)
def test_page_loads_without_errors(visited, doc):
    assert (SITE / (doc + ".html")).exists(), f"{doc}.html was not built"
    v = visited(doc)
    assert v.page.locator("article h1").count() >= 1, f"{doc}: no title"
    assert not v.errors, f"{doc}: JavaScript errors:\n" + "\n".join(v.errors)
    assert not v.failed, f"{doc}: failed requests:\n" + "\n".join(v.failed)


@pytest.mark.parametrize("doc", PAGES)
def test_math_renders(visited, doc):
    v = visited(doc)
    n_math = v.page.locator("article .math").count()
    if has_math(source_text(doc)):
        assert n_math > 0, f"{doc}: the source has math, the page has no math element"
    if n_math == 0:
        return
    unrendered = v.page.evaluate(
        "() => [...document.querySelectorAll('article .math')]"
        ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80))")
    assert not unrendered, f"{doc}: math not rendered by MathJax: {unrendered[:5]}"
    errors = v.page.locator("article mjx-merror").count()
    assert errors == 0, f"{doc}: {errors} MathJax errors (bad TeX)"


AXE = ROOT / "test-vendor" / "axe-core" / "axe.min.js"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_RUN = """tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
    .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5), count: v.nodes.length})))"""


def axe_audit(v):
    """axe-core's WCAG 2.0/2.1 A and AA violations on the page that ``v`` visited."""
    if not AXE.exists():
        _unavailable(f"no {AXE.relative_to(ROOT)}: run scripts/vendor_assets.py (make test does)")
    v.page.add_script_tag(path=str(AXE))
    return v.page.evaluate(AXE_RUN, AXE_RULES)


@pytest.mark.parametrize("doc", PAGES)
def test_accessibility_no_serious_violations(visited, doc):
    """WCAG 2.1 A/AA, audited by axe-core: no serious or critical violation; the rest listed."""
    violations = axe_audit(visited(doc))
    minor = [x for x in violations if x["impact"] not in ("serious", "critical")]
    for x in minor:
        print(f"{doc}: axe {x['impact']}: {x['id']} ({x['count']}x): {x['help']}")
    bad = [x for x in violations if x["impact"] in ("serious", "critical")]
    assert not bad, f"{doc}: serious/critical accessibility violations:\n" + "\n".join(
        f"  {x['impact']}: {x['id']} ({x['count']}x) {x['help']}: {x['nodes']}" for x in bad)


IMAGES_JS = """() => [...document.querySelectorAll('article img')].map(img => {
    const fig = img.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return {src: img.getAttribute('src') || '', alt: (img.getAttribute('alt') || '').trim(),
            loaded: img.complete && img.naturalWidth > 0,
            caption: cap ? cap.textContent.trim() : '',
            widget: !!img.closest('.jupyter-widgets, .widget-subarea'),
            visible: !!(img.offsetWidth || img.offsetHeight || img.getClientRects().length),
            output: !!img.closest('.cell_output, .output')};
})"""


def _real_alt(im):
    """Sphinx writes the file name as alt when none is given: that is no alt text."""
    alt = im["alt"]
    return bool(alt) and not alt.endswith((".png", ".svg", ".jpg", ".jpeg", ".gif")) and alt not in im["src"]


@pytest.mark.parametrize("doc", PAGES)
def test_images_load_and_are_described(visited, doc):
    v = visited(doc)
    images = v.page.evaluate(IMAGES_JS)
    broken = [im["src"][:80] for im in images if im["visible"] and not im["loaded"]]
    assert not broken, f"{doc}: images that did not load: {broken}"
    # images drawn by widgets (explorer frames) have no alt attribute in ipywidgets;
    # the cell around them is checked by the figure-caption test of its notebook instead
    undescribed = [im["src"][:80] for im in images
                   if not im["widget"] and not _real_alt(im) and not im["caption"]]
    assert not undescribed, f"{doc}: images with neither alt text nor a caption: {undescribed}"


@pytest.mark.parametrize("doc", NOTEBOOK_PAGES)
def test_notebook_figures_have_captions_and_alt_text(visited, doc):
    v = visited(doc)
    images = [im for im in v.page.evaluate(IMAGES_JS) if im["output"] and not im["widget"]]
    uncaptioned = [im["src"][:80] for im in images if not im["caption"]]
    no_alt = [im["src"][:80] for im in images if not _real_alt(im)]
    assert not uncaptioned, (f"{doc}: figures without a caption (cell metadata mystnb.figure.caption): "
                             f"{uncaptioned}")
    assert not no_alt, f"{doc}: figures without alt text (cell metadata mystnb.image.alt): {no_alt}"


# --------------------------------------------------------------------------
# Widgets


def _pages_with_widgets():
    return [d for d in PAGES if (SITE / (d + ".html")).exists()
            and WIDGET_VIEW in (SITE / (d + ".html")).read_text()]


@pytest.mark.parametrize("doc", NOTEBOOK_PAGES)
def test_widgets_render(visited, doc):
    v = visited(doc)
    n = v.widget_views()
    if n == 0:
        src = source_of(doc).read_text()
        assert WIDGET_VIEW not in src, f"{doc}: the notebook has widget outputs, the page shows none"
        return
    html = (SITE / (doc + ".html")).read_text()
    assert "application/vnd.jupyter.widget-state+json" in html, (
        f"{doc}: widget views but no widget state: re-execute the notebook and save its widget state")
    text = v.page.locator("article").inner_text()
    assert "Error displaying widget" not in text, f"{doc}: a widget failed to display"
    rendered = v.page.evaluate(
        f"""() => [...document.querySelectorAll('script[type="{WIDGET_VIEW}"]')]
               .filter(s => s.previousElementSibling && s.previousElementSibling.querySelector('.jupyter-widgets')).length""")
    assert rendered == n, f"{doc}: {n - rendered} of {n} widget views did not render"


SLIDER_STATE_JS = """(i) => {
    const slider = document.querySelectorAll('article .widget-slider, article .jupyter-widget-slider')[i];
    const root = slider.closest('.widget-subarea') || slider.closest('.cell_output');
    const readout = slider.querySelector('.widget-readout');
    const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
    const parts = [];
    for (const e of root.querySelectorAll('img, .widget-html-content, .widget-label, pre, svg, canvas')) {
        if (slider.contains(e) || !visible(e)) continue;
        parts.push(e.tagName === 'IMG' ? e.src.slice(-200) : e.textContent);
    }
    return {readout: readout ? (readout.value || readout.textContent) : '', output: parts.join('|')};
}"""


@pytest.mark.parametrize("doc", _pages_with_widgets() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no page has widgets yet"))])
def test_sliders_change_their_linked_output(browser, site_url, doc):
    v = Visit(browser, site_url, doc)
    try:
        sliders = v.page.locator("article .widget-slider, article .jupyter-widget-slider")
        n = sliders.count()
        if n == 0:
            pytest.skip(f"{doc}: widgets but no slider")
        for i in range(n):
            before = v.page.evaluate(SLIDER_STATE_JS, i)
            handle = sliders.nth(i).locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            v.page.keyboard.press("End" if i % 2 == 0 else "Home")
            v.page.keyboard.press("ArrowLeft" if i % 2 == 0 else "ArrowRight")
            v.page.wait_for_timeout(300)
            after = v.page.evaluate(SLIDER_STATE_JS, i)
            if after["readout"] == before["readout"]:  # the slider started at that end: go the other way
                v.page.keyboard.press("Home" if i % 2 == 0 else "End")
                v.page.wait_for_timeout(300)
                after = v.page.evaluate(SLIDER_STATE_JS, i)
            assert after["readout"] != before["readout"], f"{doc}: slider {i} did not move"
            assert after["output"] != before["output"], (
                f"{doc}: moving slider {i} ({before['readout']} -> {after['readout']}) changed nothing "
                "else on the page: is its output linked with jslink, and is the widget state saved?")
        v.screenshot("__slider-moved")
        assert not v.errors, f"{doc}: JavaScript errors while moving sliders:\n" + "\n".join(v.errors)
    finally:
        v.close()


FOCUSED_JS = """() => { const e = document.activeElement;
    return e ? {slider: e.getAttribute('role') === 'slider', name: e.getAttribute('aria-label') || '',
                inArticle: !!e.closest('article')} : null; }"""


@pytest.mark.parametrize("doc", _pages_with_widgets() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no page has widgets yet"))])
def test_explorers_work_from_the_keyboard(browser, site_url, doc):
    """Tab reaches each explorer's slider, which has a name; the arrow keys move it and its output."""
    v = Visit(browser, site_url, doc)
    try:
        n = v.page.locator("article .widget-slider, article .jupyter-widget-slider").count()
        if n == 0:
            pytest.skip(f"{doc}: widgets but no slider")
        v.page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
        for _ in range(400):  # Tab from the top until the first slider has the focus
            v.page.keyboard.press("Tab")
            f = v.page.evaluate(FOCUSED_JS)
            if f and f["slider"] and f["inArticle"]:
                break
        else:
            pytest.fail(f"{doc}: 400 presses of Tab never reached an explorer's slider")
        assert f["name"], f"{doc}: the focused slider has no accessible name (aria-label)"
        before = v.page.evaluate(SLIDER_STATE_JS, 0)
        v.page.keyboard.press("ArrowRight")
        v.page.wait_for_timeout(300)
        after = v.page.evaluate(SLIDER_STATE_JS, 0)
        if after["readout"] == before["readout"]:  # it started at the right end
            v.page.keyboard.press("ArrowLeft")
            v.page.wait_for_timeout(300)
            after = v.page.evaluate(SLIDER_STATE_JS, 0)
        assert after["readout"] != before["readout"], f"{doc}: the arrow keys did not move the focused slider"
        assert after["output"] != before["output"], f"{doc}: moving the slider by keyboard changed nothing else"
    finally:
        v.close()


# --------------------------------------------------------------------------
# Exercises and solutions


def _count_directives(text, name):
    return len(re.findall(r"^(?:```|:::)\{" + name + r"\}", text, flags=re.M))


@pytest.mark.parametrize("doc", PAGES)
def test_exercises_present_and_solutions_collapsed(browser, site_url, doc):
    text = source_text(doc)
    n_ex = _count_directives(text, "exercise") + _count_directives(text, "exercise-start")
    n_sol = _count_directives(text, "solution") + _count_directives(text, "solution-start")
    if n_ex == 0 and n_sol == 0:
        return
    v = Visit(browser, site_url, doc)
    try:
        exercises = v.page.locator("article .exercise")
        solutions = v.page.locator("article .solution")
        assert exercises.count() == n_ex, f"{doc}: {n_ex} exercises in the source, {exercises.count()} on the page"
        assert solutions.count() == n_sol, f"{doc}: {n_sol} solutions in the source, {solutions.count()} on the page"
        for i in range(solutions.count()):
            sol = solutions.nth(i)
            body = sol.locator(":scope > :not(.admonition-title)").first
            assert "dropdown" in (sol.get_attribute("class") or ""), f"{doc}: solution {i} is not a dropdown"
            assert not body.is_visible(), f"{doc}: solution {i} is visible before it is clicked"
            sol.locator(".toggle-button").first.click()
            body.wait_for(state="visible", timeout=5_000)
        if solutions.count():
            v.screenshot("__solutions-open")
    finally:
        v.close()


# --------------------------------------------------------------------------
# Launch buttons and the Colab cell


def _repository():
    repo = config()["repository"]
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)/?$", repo["url"])
    assert m, f"_config.yml: repository.url should be a GitHub repository, is {repo['url']}"
    return m.group(1), m.group(2), repo.get("branch", "main")


@pytest.mark.parametrize("doc", NOTEBOOK_PAGES)
def test_launch_buttons_open_this_notebook(visited, doc):
    org, repo, branch = _repository()
    path = source_of(doc).relative_to(ROOT).as_posix()
    v = visited(doc)
    hrefs = v.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    binder = [h for h in hrefs if "mybinder.org" in h]
    colab = [h for h in hrefs if "colab.research.google.com" in h]
    assert binder, f"{doc}: no Binder button"
    assert colab, f"{doc}: no Colab button"
    for h in binder:
        u = urllib.parse.urlparse(h)
        assert u.path == f"/v2/gh/{org}/{repo}/{branch}", f"{doc}: Binder button opens another repository: {h}"
        target = urllib.parse.parse_qs(u.query)["urlpath"][0].split("/", 1)[1]
        assert target == path and (ROOT / target).exists(), f"{doc}: Binder opens {target}, not {path}"
    for h in colab:
        prefix = f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/"
        assert h.startswith(prefix), f"{doc}: Colab button opens another repository: {h}"
        target = h[len(prefix):]
        assert target == path and (ROOT / target).exists(), f"{doc}: Colab opens {target}, not {path}"


def _first_code_cell(doc):
    nb = json.loads(source_of(doc).read_text())
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("doc", CHAPTER_NOTEBOOKS)
def test_colab_cell_first_and_hidden(doc):
    cell = _first_code_cell(doc)
    src = "".join(cell["source"])
    org, repo, _ = _repository()
    assert "remove-cell" in cell.get("metadata", {}).get("tags", []), (
        f"{doc}: the first code cell (Colab set-up) must be tagged remove-cell")
    assert f"git+https://github.com/{org}/{repo}" in src, (
        f"{doc}: the first code cell must install attnlib from github.com/{org}/{repo} when it is missing")
    html = (SITE / (doc + ".html")).read_text() if (SITE / (doc + ".html")).exists() else None
    if html is None:
        _unavailable(f"{doc}.html is not built")
    for line in src.splitlines():
        if "git+https" in line:
            assert "git+https" not in html, f"{doc}: the Colab cell is visible on the site"


@pytest.mark.parametrize("doc", CHAPTER_NOTEBOOKS)
def test_colab_cell_installs_only_when_attnlib_is_missing(doc, monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell("".join(_first_code_cell(doc)["source"]))
    calls = []

    class FakeIPython:
        def run_line_magic(self, name, line, *a, **k):
            calls.append(f"%{name} {line}")

        def run_cell_magic(self, name, line, cell, *a, **k):
            calls.append(f"%%{name} {line}")

        def system(self, cmd, *a, **k):
            calls.append(f"!{cmd}")

    env = {"get_ipython": lambda: FakeIPython()}
    exec(compile(code, doc, "exec"), dict(env))
    assert not calls, f"{doc}: the Colab cell does something where attnlib is installed: {calls}"

    import sys

    monkeypatch.setitem(sys.modules, "attnlib", None)  # `import attnlib` now raises ModuleNotFoundError
    exec(compile(code, doc, "exec"), dict(env))
    assert any("pip" in c and "install" in c for c in calls), (
        f"{doc}: without attnlib the Colab cell should pip-install it, it ran {calls}")


# --------------------------------------------------------------------------
# Links, headers, bibliography


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.hrefs.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") != "preload":
            self.hrefs.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(path):
    p = _Links()
    p.feed(path.read_text(errors="replace"))
    return p


@pytest.mark.parametrize("doc", PAGES)
def test_internal_links_resolve(doc):
    page = SITE / (doc + ".html")
    if not page.exists():
        _unavailable(f"{doc}.html is not built")
    broken = []
    for href in _parse(page).hrefs:
        u = urllib.parse.urlparse(href)
        if u.scheme or href.startswith("//") or href.startswith(("mailto:", "javascript:")):
            continue
        target = (page.parent / urllib.parse.unquote(u.path)).resolve() if u.path else page
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{href} (no file)")
        elif u.fragment and target.suffix == ".html" and u.fragment not in _parse(target).ids:
            broken.append(f"{href} (no anchor #{u.fragment})")
    assert not broken, f"{doc}: internal links that 404:\n" + "\n".join(sorted(set(broken)))


@pytest.mark.parametrize("doc", CHAPTER_NOTEBOOKS)
def test_chapter_header(visited, doc):
    """Every chapter opens the same way: its title, then the 'In this chapter' box
    with the objectives, the time it takes and the prerequisites."""
    v = visited(doc)
    box = v.page.locator("article .admonition").first
    assert box.count(), f"{doc}: no 'In this chapter' box"
    title = box.locator(".admonition-title").inner_text().strip()
    text = box.inner_text()
    assert title == "In this chapter", f"{doc}: the first box is {title!r}, not 'In this chapter'"
    for part in ("You will", "Time:", "Prerequisites:"):
        assert part in text, f"{doc}: the 'In this chapter' box does not say {part!r}"


def test_bibliography_lists_every_reference(visited):
    docs = [d for d in PAGES if "bibliography" in d]
    assert docs, "no bibliography page in _toc.yml"
    n_bib = len(re.findall(r"^@\w+\{", (ROOT / "references.bib").read_text(), flags=re.M))
    v = visited(docs[0])
    n_page = v.page.locator("article .citation").count()
    assert n_page == n_bib, f"references.bib has {n_bib} entries, the bibliography page lists {n_page}"


def test_no_top_level_static_folder():
    """Jupyter Book adds every .js under a top-level _static/ to every page (all of
    MathJax, if it were there): vendored files live in vendor/ instead."""
    assert not (ROOT / "_static").exists()


def test_assets_are_served_from_the_book():
    """MathJax, require.js and the widget manager come from the book, not a CDN."""
    for f in ("_static/mathjax/es5/tex-mml-chtml.js", "_static/requirejs/require.js",
              "_static/html-manager/dist/embed-amd.js"):
        if not (SITE / "index.html").exists():
            _unavailable(f"no built site in {SITE}")
        assert (SITE / f).exists(), f"{f} is missing from the site: run scripts/vendor_assets.py and rebuild"
    for doc in PAGES:
        page = SITE / (doc + ".html")
        if page.exists():
            cdn = re.findall(r'<script[^>]+src="(https?://[^"]+)"', page.read_text())
            assert not cdn, f"{doc}: scripts from the internet: {cdn}"


def test_palette_is_colour_blind_safe():
    from attnlib import plotting

    okabe_ito = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}
    assert {c.upper() for c in plotting.PALETTE} <= okabe_ito


def test_binder_gets_cpu_torch_and_attnlib():
    """Binder reads only binder/: a CPU build of torch (a free Binder has 1-2 GB and
    no GPU) and the reader's requirements, whose `-e .` installs attnlib."""
    req = (ROOT / "binder" / "requirements.txt").read_text()
    lines = [l.split("#")[0].strip() for l in req.splitlines() if l.split("#")[0].strip()]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert any(re.fullmatch(r"torch==[\d.]+\+cpu", l) for l in lines), "pin torch's +cpu build"
    assert "-r ../requirements.txt" in lines
    top = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-e ." in top, "requirements.txt must install attnlib with `-e .`"
