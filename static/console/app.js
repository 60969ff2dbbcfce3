// Agent Ops Console: small behaviours shared by every page. No inline scripts (CSP).
(function () {
  "use strict";

  // Confirm destructive buttons: <button data-confirm="...">
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Live connection indicator: any element with [data-live-status].
  function setLiveStatus(text, state) {
    document.querySelectorAll("[data-live-status]").forEach(function (el) {
      el.textContent = text;
      el.setAttribute("data-state", state);
    });
  }
  document.addEventListener("htmx:wsOpen", function () { setLiveStatus("live", "open"); });
  document.addEventListener("htmx:wsClose", function () { setLiveStatus("reconnecting…", "closed"); });
  document.addEventListener("htmx:wsError", function () { setLiveStatus("live updates unavailable", "error"); });

  // Countdowns: <time data-due="ISO-8601">; refreshed every second, overdue marked.
  function formatLeft(ms) {
    var overdue = ms < 0;
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var text = (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
    return overdue ? "overdue by " + text : text + " left";
  }
  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      var left = due - now;
      el.textContent = formatLeft(left);
      el.classList.toggle("overdue", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 5 * 60 * 1000);
    });
  }
  setInterval(tickCountdowns, 1000);
  document.addEventListener("DOMContentLoaded", tickCountdowns);
  document.addEventListener("htmx:afterSettle", tickCountdowns);

  // A form answered with field errors: move focus to the first bad field, so a keyboard user
  // (who pressed a shortcut, or whose focused button was swapped away) can correct it at once.
  function focusFirstError(root) {
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active) && !root.contains(active)) { return; }
    var bad = root.querySelector('.has-error input:not([type=hidden]), .has-error select, .has-error textarea, [aria-invalid="true"]');
    if (bad) { bad.focus(); }
  }
  document.addEventListener("htmx:afterSettle", function (event) { focusFirstError(event.target); });
  document.addEventListener("DOMContentLoaded", function () { focusFirstError(document.getElementById("main") || document); });

  // Keyboard shortcuts: elements with data-key="a" are clicked when that key is pressed
  // outside text inputs. Pages declare their own (approve, reject, next...).
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) { return; }
    var target = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
    if (target) {
      event.preventDefault();
      if (target.tagName === "A" || target.tagName === "BUTTON") { target.click(); } else { target.focus(); }
    }
  });
})();
