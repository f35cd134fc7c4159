// Loaded on pages with widgets, before require.js and the widget manager
// (see nb_ipywidgets_js in _config.yml). Two fixes, so that widgets work from
// the book's own copies with no internet and no console errors:
(function () {
  var here = document.currentScript.src;
  var staticDir = here.slice(0, here.lastIndexOf("/") + 1);

  // 1. The widget manager finds its fonts next to the URL that require.js
  //    gives its modules, by default relative to the page. Point that
  //    module path at the vendored copy in _static/. (A `require` object set
  //    before require.js loads is its configuration.)
  window.require = {
    paths: { "@jupyter-widgets/html-manager/dist": staticDir + "html-manager/dist" },
  };

  // 2. The widget manager typesets labels with MathJax 2's API
  //    (MathJax.Hub.Queue); the book loads MathJax 3, which has no Hub.
  //    Translate the call, before and after MathJax 3 has started.
  var hub = {
    Queue: function (job) {
      var mj = window.MathJax;
      var el = job && job[2];
      if (el && mj && mj.typesetPromise) {
        mj.typesetPromise([el]).catch(function (e) { console.warn("MathJax:", e); });
      }
    },
  };
  var mj = (window.MathJax = window.MathJax || {});
  mj.Hub = hub;
  mj.startup = mj.startup || {};
  mj.startup.ready = function () {
    window.MathJax.startup.defaultReady();
    window.MathJax.Hub = hub;
  };
})();
