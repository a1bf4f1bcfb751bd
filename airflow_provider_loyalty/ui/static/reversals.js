/* Reversals page: links to DAG runs open in the Airflow UI itself, not inside the plugin's frame.
 *
 * Airflow shows the page in a sandboxed iframe (scripts + same origin, no top navigation). On a
 * plain click, a link marked data-airflow-link asks the parent UI's router to show the run
 * (history.pushState + popstate, what the router itself listens to). Anywhere else — the page
 * opened on its own, a modified click, any error — the link just works as a link.
 */
(function () {
  "use strict";

  function parentUi() {
    try {
      if (window.parent === window || window.parent.location.origin !== window.location.origin) {
        return null;
      }
      return window.parent;
    } catch (error) {
      return null;
    }
  }

  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("a[data-airflow-link]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) {
      return;
    }
    var parent = parentUi();
    if (!parent) {
      return;
    }
    try {
      var target = new URL(link.href, window.location.href);
      if (target.origin !== window.location.origin) {
        return;
      }
      var state = parent.history.state;
      var index = state && typeof state.idx === "number" ? state.idx + 1 : 0;
      parent.history.pushState(
        { usr: null, key: Math.random().toString(36).slice(2, 10), idx: index },
        "",
        target.pathname + target.search + target.hash
      );
      parent.dispatchEvent(new PopStateEvent("popstate", { state: parent.history.state }));
      event.preventDefault();
    } catch (error) {
      /* leave the click to the browser */
    }
  });
})();
