// Accessibility fixes for markup that the theme, docutils and the widget manager write,
// loaded on every page (html_js_files in _config.yml). tests/test_site.py audits every page
// with axe-core (WCAG 2.1 A/AA) and fails on any serious or critical violation.
(function () {
  function fixStatic() {
    // The search buttons show "Search Ctrl+K" but were named "Search" only: a speech-input
    // user saying what they see would miss. Their visible text is a good name; use it.
    document.querySelectorAll("button.search-button-field[aria-label]").forEach(function (b) {
      b.removeAttribute("aria-label");
    });
    // The toggles of hidden code cells were named "Toggle hidden content" while they show
    // "Show code cell content": name them by what they show.
    document.querySelectorAll("details.hide > summary[aria-label]").forEach(function (s) {
      s.removeAttribute("aria-label");
    });
    // The bibliography is a role="list" whose entries carry the deprecated role
    // doc-biblioentry: a list must hold list items.
    document.querySelectorAll('[role="list"] > [role="doc-biblioentry"]').forEach(function (e) {
      e.setAttribute("role", "listitem");
    });
  }

  // Widgets render after the page has loaded: name each slider by its visible label.
  function fixWidgets(root) {
    root.querySelectorAll(".widget-slider, .jupyter-widgets.widget-hslider").forEach(function (w) {
      var label = w.querySelector(".widget-label");
      var name = label && label.textContent.trim();
      if (!name) return;
      w.querySelectorAll('[role="slider"]').forEach(function (h) {
        if (!h.getAttribute("aria-label")) h.setAttribute("aria-label", name);
      });
    });
  }

  // The theme's own scripts (tooltips, for one) may run after this one and
  // set titles and labels again: repeat the fixes on every change, and once all has loaded.
  // Each fix is idempotent, so the observer settles.
  function fixAll() {
    fixStatic();
    fixWidgets(document);
  }

  function start() {
    fixAll();
    new MutationObserver(fixAll).observe(document.body, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["aria-label", "title"],
    });
    window.addEventListener("load", fixAll);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
