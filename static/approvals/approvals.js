// Approvals UI behaviours (no inline scripts: CSP).
(function () {
  "use strict";

  // Forms marked data-swap-errors answer 400 (validation) and 409 (someone else was first) with
  // the re-rendered fragment; htmx does not swap 4xx by default, so let those through.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr && event.detail.xhr.status;
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    if ((status === 400 || status === 409) && elt && elt.closest && elt.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Live cards arrive at the end of the list; keep it sorted by due time, then id.
  function sortList(list) {
    // A card fetched twice (a signal racing a refetch) appears once: the later copy wins.
    var seen = {};
    Array.prototype.slice.call(list.querySelectorAll(":scope > article[id]")).reverse().forEach(function (card) {
      if (seen[card.id]) { card.remove(); } else { seen[card.id] = true; }
    });
    var cards = Array.prototype.slice.call(list.querySelectorAll(":scope > article[data-sort-due]"));
    var sorted = cards.slice().sort(function (a, b) {
      var da = Date.parse(a.getAttribute("data-sort-due")) || 0;
      var db = Date.parse(b.getAttribute("data-sort-due")) || 0;
      if (da !== db) { return da - db; }
      return (parseInt(a.getAttribute("data-sort-id"), 10) || 0) - (parseInt(b.getAttribute("data-sort-id"), 10) || 0);
    });
    var changed = sorted.some(function (card, i) { return card !== cards[i]; });
    if (changed) { sorted.forEach(function (card) { list.appendChild(card); }); }
  }
  // After a websocket reconnect, pushes may have been missed: fetch the first page of the list again.
  document.addEventListener("htmx:wsOpen", function (event) {
    var socketElt = event.target;
    if (socketElt.getAttribute("data-opened") === "yes") {
      var list = document.querySelector("[data-rows-url]");
      if (list && window.htmx) {
        window.htmx.ajax("GET", list.getAttribute("data-rows-url"), { target: list, swap: "innerHTML" });
      }
    }
    socketElt.setAttribute("data-opened", "yes");
  });

  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("[data-sorted-list]").forEach(sortList);
  });
})();
