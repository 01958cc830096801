// Progressive enhancement only: every page works without this script.
// On a delivery's page (and a ticket's), poll a small JSON status while something is still
// in progress and reload the page when it changed, so a test event, a replay or a ticket's
// new event is seen landing.
(function () {
  "use strict";
  var FINAL = { delivered: true, failed: true };
  var INTERVAL_MS = 1500;
  var GIVE_UP_AFTER_MS = 10 * 60 * 1000;

  function watch(region) {
    var url = region.getAttribute("data-poll-url");
    var status = region.getAttribute("data-status");
    var attempts = region.getAttribute("data-attempts");
    var started = Date.now();
    // A delivery in a final state, or a page whose deliveries have all ended, has nothing to wait for.
    if (!url || FINAL[status] || region.getAttribute("data-poll-done") === "true") { return; }
    var note = region.querySelector("[data-poll-note]");
    if (note) { note.textContent = "Updating automatically…"; }

    function tick() {
      if (Date.now() - started > GIVE_UP_AFTER_MS) {
        if (note) { note.textContent = "Stopped updating: reload the page to see the latest state."; }
        return;
      }
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (body && (body.status !== status || String(body.attempts) !== attempts)) {
            if (note) { note.textContent = "Status changed; refreshing…"; }
            window.location.reload();
            return;
          }
          window.setTimeout(tick, INTERVAL_MS);
        })
        .catch(function () { window.setTimeout(tick, INTERVAL_MS * 2); });
    }
    window.setTimeout(tick, INTERVAL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-poll-url]");
    for (var i = 0; i < regions.length; i++) { watch(regions[i]); }
  });
})();
