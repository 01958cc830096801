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

// Copy buttons (shown only when this script runs) and the integration form's helpers:
// "Add another" for list options, and "All events" unticking the single events.
(function () {
  "use strict";

  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    var status = document.querySelector('[data-copy-status="' + button.getAttribute("data-copy") + '"]');
    if (!target) { return; }
    var text = target.textContent;
    function done(message) { if (status) { status.textContent = message; } }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(target);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done(document.execCommand && document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C to copy.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done("Copied."); }, fallback);
    } else {
      fallback();
    }
  }

  function addInput(button) {
    var box = button.parentNode;
    var inputs = box.querySelectorAll("input");
    var last = inputs[inputs.length - 1];
    var copyOf = last.cloneNode(false);
    copyOf.value = "";
    copyOf.removeAttribute("id");
    copyOf.setAttribute("aria-label", (last.getAttribute("aria-label") || "").replace(/\d+$/, String(inputs.length + 1)));
    box.insertBefore(copyOf, button);
    copyOf.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var i;
    var buttons = document.querySelectorAll("[data-copy], [data-add-input]");
    for (i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener("click", function (event) {
        var button = event.currentTarget;
        if (button.hasAttribute("data-copy")) { copy(button); } else { addInput(button); }
      });
    }
    var all = document.querySelector("[data-all-events]");
    var single = document.querySelectorAll("[data-event]");
    if (all) {
      all.addEventListener("change", function () {
        if (all.checked) { for (var j = 0; j < single.length; j++) { single[j].checked = false; } }
      });
      for (i = 0; i < single.length; i++) {
        single[i].addEventListener("change", function (event) { if (event.target.checked) { all.checked = false; } });
      }
    }
  });
})();

// The integration form's "Test filter", "Preview" and "Load sample": without this script each
// submits the form to its own page, which comes back with the answer; with it, the same fields
// go to the console's JSON route and the answer (drawn by the server, escaped) is put in place.
(function () {
  "use strict";

  function answerIn(form, button, region, fallback) {
    var fields = new FormData(form);
    fields.set("try", button.value);
    button.disabled = true;
    region.setAttribute("aria-busy", "true");
    fetch(form.getAttribute("data-try-url"), {
      method: "POST", body: fields, credentials: "same-origin", headers: { Accept: "application/json" }
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { throw new Error("refused"); }
        var target = document.getElementById("try-" + body.target) || region;
        target.innerHTML = body.html;  // the server's own template, every value escaped
        if (body.sample !== null && body.sample !== undefined) {
          document.getElementById("f-sample_event").value = body.sample;
        }
      })
      .catch(function () { region.textContent = fallback; })
      .then(function () { button.disabled = false; region.removeAttribute("aria-busy"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-try-url]");
    if (!form) { return; }
    var buttons = form.querySelectorAll("[data-try]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        var button = event.currentTarget;
        var target = button.value === "filter" ? "filter" : button.value === "sample" ? "sample"
          : button.value.replace(/^preview:/, "");
        var region = document.getElementById("try-" + target);
        if (!region || !window.fetch || !window.FormData) { return; }  // the form submit still works
        event.preventDefault();
        answerIn(form, button, region, "No answer: your session may have ended. Reload the page and try again.");
      });
    }
    var picker = form.querySelector("[data-sample-type]");
    var load = form.querySelector('[data-try][value="sample"]');
    if (picker && load) { picker.addEventListener("change", function () { load.click(); }); }
  });
})();
