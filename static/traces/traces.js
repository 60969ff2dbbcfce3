// Run timeline: places live/caught-up span rows under their parents, rescales the bars,
// folds and unfolds subtrees, and catches up "after the cursor" whenever the socket (re)opens.
// No inline scripts (CSP); agent text is never turned into markup here (only attributes and classes).
(function () {
  "use strict";

  function depthOf(row) {
    var d = parseInt(row.getAttribute("data-depth"), 10);
    return isNaN(d) ? 0 : d;
  }

  function setDepth(row, depth) {
    row.setAttribute("data-depth", String(depth));
    var label = row.querySelector(".span-label");
    if (!label) { return; }
    label.className = label.className.replace(/\bdepth-\d+\b/g, "").trim() + " depth-" + Math.min(depth, 24);
  }

  // The last element of row's subtree (rows after it that are deeper; "more" markers included).
  function subtreeEnd(row) {
    var depth = depthOf(row);
    var last = row;
    var next = row.nextElementSibling;
    while (next && (next.classList.contains("span-row") || next.classList.contains("span-more"))) {
      if (depthOf(next) <= depth) { break; }
      last = next;
      next = next.nextElementSibling;
    }
    return last;
  }

  function descendants(row) {
    var out = [];
    var end = subtreeEnd(row);
    var el = row;
    while (el !== end) { el = el.nextElementSibling; out.push(el); }
    return out;
  }

  function isClosed(row) {
    return row.classList.contains("span-closed") || row.hasAttribute("data-hidden");
  }

  function setHiddenCount(row, n) {
    row.setAttribute("data-hidden", String(n));
    var badge = row.querySelector(".span-hidden-count");
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "span-hidden-count";
      row.querySelector(".span-label").appendChild(badge);
    }
    badge.textContent = "+" + n;
    showToggle(row, "▸");
  }

  function showToggle(row, glyph) {
    var toggle = row.querySelector(".span-toggle");
    if (toggle) { toggle.hidden = false; if (glyph) { toggle.textContent = glyph; } }
  }

  function Timeline(container) {
    this.el = container;
    this.runId = container.getAttribute("data-run-id");
    this.url = container.getAttribute("data-spans-url");
    this.cursor = parseInt(container.getAttribute("data-cursor"), 10) || 0;
    this.bigRun = container.hasAttribute("data-collapsed");
    this.t0 = null;
    this.t1 = null;
    this.fetching = false;
    this.again = false;
    this.unseen = 0;
  }

  Timeline.prototype.rowId = function (spanId) { return "span-" + this.runId + "-" + spanId; };

  Timeline.prototype.process = function () {
    var self = this;
    var changed = false;
    this.el.querySelectorAll(".spans-after").forEach(function (marker) {
      var after = parseInt(marker.getAttribute("data-after"), 10) || 0;
      var more = marker.getAttribute("data-more") === "1";
      marker.remove();
      if (after > self.cursor) { self.cursor = after; }
      self.fetching = false;
      if (more || self.again) { self.again = false; self.catchUp(); }
    });
    var fresh = Array.prototype.slice.call(this.el.querySelectorAll(".span-row:not([data-placed])"));
    fresh.forEach(function (row) {
      var seq = parseInt(row.getAttribute("data-seq"), 10) || 0;
      if (seq > self.cursor) { self.cursor = seq; }
      var twin = document.getElementById(row.id);
      if (twin && twin !== row) { row.remove(); return; }  // already shown: spans never change once stored
      self.place(row);
      changed = true;
    });
    this.el.querySelectorAll(".span-row[data-placed]:not([data-scaled])").forEach(function () { changed = true; });
    this.el.setAttribute("data-cursor", String(this.cursor));
    if (changed) { this.rescale(); }
    var empty = document.getElementById("spans-empty");
    if (empty && this.el.querySelector(".span-row")) { empty.remove(); }
  };

  Timeline.prototype.place = function (row) {
    row.setAttribute("data-placed", "1");
    var parentId = row.getAttribute("data-parent-id");
    var parent = parentId ? document.getElementById(this.rowId(parentId)) : null;
    if (parentId && !parent) {
      if (this.bigRun) {  // its parent sits inside a closed subtree: count it, fetch it when opened
        row.remove();
        this.unseen += 1;
        this.noteUnseen();
        return;
      }
      row.classList.add("span-detached");  // the parent has not arrived yet; moved under it when it does
      setDepth(row, 0);
      this.el.appendChild(row);
      return;
    }
    if (parent) {
      if (parent.hasAttribute("data-hidden")) {  // folded and not loaded: the server has it when opened
        row.remove();
        setHiddenCount(parent, (parseInt(parent.getAttribute("data-hidden"), 10) || 0) + 1);
        return;
      }
      setDepth(row, depthOf(parent) + 1);
      parent.setAttribute("data-loaded", "1");
      showToggle(parent, parent.classList.contains("span-closed") ? "▸" : null);
      var end = subtreeEnd(parent);
      end.after(row);
      if (isClosed(parent) || parent.hidden) { row.hidden = true; }
    } else {
      setDepth(row, 0);
      if (row.parentNode !== this.el || row.nextElementSibling) { this.el.appendChild(row); }
    }
    this.adoptDetached(row);
  };

  // Rows that arrived before this one (their parent) are moved under it.
  Timeline.prototype.adoptDetached = function (parent) {
    var self = this;
    var spanId = parent.getAttribute("data-span-id");
    this.el.querySelectorAll(".span-detached").forEach(function (orphan) {
      if (orphan.getAttribute("data-parent-id") !== spanId) { return; }
      var moving = [orphan].concat(descendants(orphan));
      var base = depthOf(orphan);
      orphan.classList.remove("span-detached");
      var anchor = subtreeEnd(parent);
      moving.forEach(function (el) {
        setDepth(el, depthOf(el) - base + depthOf(parent) + 1);
        anchor.after(el);
        anchor = el;
      });
      showToggle(parent, null);
      self.adoptDetached(orphan);
    });
  };

  Timeline.prototype.noteUnseen = function () {
    var note = document.getElementById("spans-unseen");
    if (!note) {
      note = document.createElement("p");
      note.id = "spans-unseen";
      note.className = "hint";
      this.el.parentNode.insertBefore(note, this.el);
    }
    note.textContent = this.unseen + " new span(s) arrived inside closed subtrees; open them (or reload) to see.";
  };

  // Bars: x and width in ms from the earliest start; every row shares one viewBox width.
  Timeline.prototype.rescale = function () {
    var rows = this.el.querySelectorAll(".span-row");
    var t0 = Infinity, t1 = -Infinity;
    rows.forEach(function (row) {
      var s = parseFloat(row.getAttribute("data-start")), d = parseFloat(row.getAttribute("data-dur")) || 0;
      if (isNaN(s)) { return; }
      if (s < t0) { t0 = s; }
      if (s + d > t1) { t1 = s + d; }
    });
    if (!isFinite(t0)) { return; }
    var width = Math.max(1, t1 - t0);
    var same = this.t0 === t0 && this.t1 === t1;
    this.t0 = t0; this.t1 = t1;
    rows.forEach(function (row) {
      if (same && row.hasAttribute("data-scaled")) { return; }
      var svg = row.querySelector("svg.span-bar");
      var rect = svg && svg.querySelector("rect");
      if (!rect) { return; }
      var s = parseFloat(row.getAttribute("data-start")) || t0;
      var d = parseFloat(row.getAttribute("data-dur")) || 0;
      svg.setAttribute("viewBox", "0 0 " + width + " 10");
      rect.setAttribute("x", String(s - t0));
      rect.setAttribute("width", String(Math.max(d, width / 500)));  // a visible sliver for instant spans
      row.setAttribute("data-scaled", "1");
    });
  };

  Timeline.prototype.catchUp = function () {
    if (!window.htmx) { return; }
    if (this.fetching) { this.again = true; return; }  // asked again meanwhile: fetch once more after this answer
    this.fetching = true;
    var self = this;
    window.htmx.ajax("GET", this.url + "?after=" + this.cursor, {target: this.el, swap: "beforeend"})
      .then(function () {
        setTimeout(function () {  // an error answer brings no marker: do not stay "fetching" forever
          if (self.fetching) { self.fetching = false; if (self.again) { self.again = false; self.catchUp(); } }
        }, 50);
      })
      .catch(function () { self.fetching = false; self.again = false; });
  };

  Timeline.prototype.toggle = function (row) {
    if (row.hasAttribute("data-hidden")) {  // folded and never loaded: fetch the subtree
      var self = this;
      row.removeAttribute("data-hidden");
      var badge = row.querySelector(".span-hidden-count");
      if (badge) { badge.remove(); }
      row.classList.remove("span-collapsed", "span-closed");
      row.setAttribute("data-loaded", "1");
      showToggle(row, "▾");
      window.htmx.ajax("GET", this.url + "?under=" + encodeURIComponent(row.getAttribute("data-span-id")),
                       {target: row, swap: "afterend"}).then(function () { self.process(); });
      return;
    }
    var closing = !row.classList.contains("span-closed");
    row.classList.toggle("span-closed", closing);
    showToggle(row, closing ? "▸" : "▾");
    var hideBelow = null;  // while opening, keep subtrees that are themselves closed hidden
    descendants(row).forEach(function (el) {
      if (closing) { el.hidden = true; return; }
      var d = depthOf(el);
      if (hideBelow !== null && d > hideBelow) { el.hidden = true; return; }
      hideBelow = null;
      el.hidden = false;
      if (el.classList.contains("span-row") && el.classList.contains("span-closed")) { hideBelow = d; }
    });
  };

  function init() {
    document.querySelectorAll(".spans[data-run-id]").forEach(function (container) {
      if (container._timeline) { return; }
      var timeline = new Timeline(container);
      container._timeline = timeline;
      container.querySelectorAll(".span-row").forEach(function (row) { row.setAttribute("data-placed", "1"); });
      timeline.process();
      new MutationObserver(function () { timeline.process(); }).observe(container, {childList: true});
      container.addEventListener("click", function (event) {
        var toggle = event.target.closest(".span-toggle");
        if (toggle) { timeline.toggle(toggle.closest(".span-row")); return; }
        var name = event.target.closest(".span-name");
        if (name) {
          container.querySelectorAll(".span-row.selected").forEach(function (r) { r.classList.remove("selected"); });
          name.closest(".span-row").classList.add("selected");
        }
      });
    });
  }

  // Runs list: a pushed "new" row can meet a row the page already rendered; keep the first (newest).
  function dedupeRunRows(tbody) {
    var seen = {};
    tbody.querySelectorAll("tr.run-row").forEach(function (row) {
      if (seen[row.id]) { row.remove(); } else { seen[row.id] = true; }
    });
    var empty = document.getElementById("runs-empty");
    if (empty && tbody.querySelector("tr.run-row")) { empty.remove(); }
  }
  // Runs list pushes are the same for every viewer: rows of runs this page does not show, and new runs
  // for a list that cannot take them (a filtered or older page has no #runs-rows). htmx reports an
  // out-of-band swap without a target as a console error, so keep only what this page can place:
  // updates of rows it shows (also when pushed as new), and new rows only where #runs-rows is.
  function keepPlaceableRows(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    Array.prototype.slice.call(tpl.content.children).forEach(function (el) {
      var oob = el.getAttribute("hx-swap-oob") || "true";
      var sep = oob.indexOf(":");
      if (sep < 0) {
        if (!el.id || !document.getElementById(el.id)) { el.remove(); }
        return;
      }
      el.querySelectorAll("tr[id]").forEach(function (row) {
        var shown = document.getElementById(row.id);
        if (!shown) { return; }
        // replaced here: a bare <tr> after a <tbody> in one fragment is lost when htmx parses it
        var fresh = document.importNode(row, true);
        shown.replaceWith(fresh);
        window.htmx.process(fresh);
        row.remove();
      });
      if (!el.children.length || !document.querySelector(oob.slice(sep + 1))) { el.remove(); }
    });
    return tpl.innerHTML;
  }
  if (window.htmx) {
    window.htmx.defineExtension("runs-live", {
      transformResponse: function (text) { return keepPlaceableRows(text); }
    });
  }

  function initRunsList() {
    var tbody = document.getElementById("runs-rows");
    if (!tbody || tbody._watched) { return; }
    tbody._watched = true;
    new MutationObserver(function () { dedupeRunRows(tbody); }).observe(tbody, {childList: true});
  }
  document.addEventListener("DOMContentLoaded", initRunsList);
  if (document.readyState !== "loading") { initRunsList(); }

  // A running run that hears nothing from its agent for the runaway detector's max_idle_seconds is shown
  // as stalled (display only, as the server renders it on the next load): no push comes to say so.
  function markStalledRuns() {
    var now = Date.now();
    document.querySelectorAll(".status-running[data-stalls-at]").forEach(function (badge) {
      var at = Date.parse(badge.getAttribute("data-stalls-at"));
      if (isNaN(at) || now <= at) { return; }
      badge.classList.remove("status-running");
      badge.classList.add("status-stalled");
      badge.textContent = "Stalled";
      badge.title = badge.getAttribute("data-stall-title") || "";
      badge.removeAttribute("data-stalls-at");
    });
  }
  setInterval(markStalledRuns, 5000);

  // Every (re)connect: fetch what was written after the last seq shown, so a dropped socket loses nothing.
  document.addEventListener("htmx:wsOpen", function () {
    document.querySelectorAll(".spans[data-run-id]").forEach(function (container) {
      if (container._timeline) { container._timeline.catchUp(); }
    });
  });
  document.addEventListener("DOMContentLoaded", init);
  if (document.readyState !== "loading") { init(); }
})();
