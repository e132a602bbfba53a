// Small behaviours on top of htmx. No inline scripts anywhere: the CSP forbids them.
(function () {
  "use strict";

  // A request that failed (server error or network) shows a banner instead of doing nothing.
  // A network failure clears once any request gets through again (a status poll will do); an
  // error answer to something the admin did stays until the admin's next request succeeds, so a
  // background poll cannot hide it before it is read. A form that expired stays said until the
  // page is reloaded: nothing else gives it a fresh token.
  function banner() { return document.getElementById("request-error"); }
  function showError(text, cause) {
    var b = banner();
    if (!b) return;
    b.textContent = text;
    b.dataset.cause = cause;
    b.hidden = false;
  }
  function polled(elt) { return /every /.test(elt.getAttribute("hx-trigger") || ""); }
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    if (xhr.getResponseHeader("X-Form-Expired") === "true") {
      // A stale security token (signed in again elsewhere): the server's own words, and the one
      // thing that helps, since sending the same form again fails the same way.
      showError(xhr.responseText, "expired");
      var reload = document.createElement("button");
      reload.type = "button";
      reload.dataset.reload = "";
      reload.textContent = "Reload the page";
      banner().appendChild(document.createTextNode(" "));
      banner().appendChild(reload);
      // The banner is at the top; the button pressed may be far below it (Save, Test, an SA's
      // Rekey). The focus goes to Reload, which brings the banner into view and is the next step.
      reload.focus();
      return;
    }
    showError("The router answered " + xhr.status + " " + (xhr.statusText || "") + " to that request.", "response");
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The router could not be reached. Check the connection and try again.", "network");
  });
  document.addEventListener("htmx:targetError", function () {
    showError("This page is out of step with the router. Reload it and try again.", "response");
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var b = banner();
    if (!e.detail.successful || !b || b.hidden) return;
    if (b.dataset.cause === "expired") return;  // only a reload brings a fresh token
    if (b.dataset.cause === "network" || !polled(e.detail.elt)) b.hidden = true;
  });

  // Assistive technology hears that a button is waiting (the spinner is CSS on .htmx-request).
  document.addEventListener("htmx:beforeRequest", function (e) { e.detail.elt.setAttribute("aria-busy", "true"); });
  document.addEventListener("htmx:afterRequest", function (e) { e.detail.elt.removeAttribute("aria-busy"); });

  // A refused form comes back with its fields marked: the admin lands on the first of them, in
  // view, not at the top of the page or on <body>. A form refused as a whole (its peer deleted
  // meanwhile) marks the message to land on.
  document.addEventListener("htmx:afterSettle", function (e) {
    var form = e.target;
    if (!form.matches || !form.matches("form")) return;
    var field = form.querySelector("[data-focus-first]") ||
      form.querySelector(".invalid input:not([type=hidden]), .invalid textarea, .invalid select");
    if (!field) return;
    field.focus({ preventScroll: true });
    field.scrollIntoView({ block: "center" });
  });

  // A deleted row takes the focus with it: it moves to the next row (or the one before), or to
  // the table's heading once the table is empty.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.requestConfig.verb !== "delete") return;
    var row = e.detail.target.closest("tr");
    var next = row && (row.nextElementSibling || row.previousElementSibling);
    var focus = (next && next.querySelector("a")) || document.getElementById("peers-heading");
    if (focus) setTimeout(function () { focus.focus(); }, 0);
  });

  // The keyboard stays where it was after Connect, Disconnect or a quick command. The button is
  // disabled while it posts, and may be hidden once the state it answered changes (Disconnect
  // gives way to Connect): either drops the focus to <body>. It goes back to the button, or to
  // the one that replaced it beside it, unless the admin has moved on (or a dialog took it).
  var pressed = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var active = document.activeElement;
    if (active && active !== document.body && e.detail.elt.contains(active)) pressed = active;
  });
  document.addEventListener("pointerdown", function () { pressed = null; });  // not a keyboard user's place
  function shown(elt) { return elt.isConnected && !elt.disabled && elt.getClientRects().length > 0; }
  function refocus() {
    var was = pressed, active = document.activeElement;
    if (!was) return;
    if (active && active !== document.body && active !== was) { pressed = null; return; }
    if (was.disabled && was.getClientRects().length > 0) return;  // still posting: its answer decides
    if (shown(was)) { if (active !== was) was.focus(); return; }
    var place = was.isConnected && was.closest("td, form");
    var next = place && Array.prototype.find.call(place.querySelectorAll("button, a[href]"), shown);
    if (next) { pressed = next; next.focus(); }
  }
  document.addEventListener("htmx:afterRequest", function () { setTimeout(refocus, 0); });
  document.addEventListener("htmx:afterSettle", function () { setTimeout(refocus, 0); });

  // A link or filter inside an output pane (Get routes' pager, Clear filter) is replaced with the
  // pane, which drops the focus to <body>: it goes to the same control in the new pane when there
  // is one (the filter field), else to the pane itself, so the keyboard stays where it was.
  var inPane = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var active = document.activeElement;
    var pane = e.detail.elt.closest && e.detail.elt.closest("#command-output [tabindex='-1']");
    if (pane) inPane = { pane: pane.id, control: active && pane.contains(active) ? active.id : "" };
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    var was = inPane;
    if (!was || e.target.id !== "command-output") return;
    inPane = null;
    if (document.activeElement && document.activeElement !== document.body) return;
    var to = (was.control && document.getElementById(was.control)) || document.getElementById(was.pane);
    if (to) to.focus({ preventScroll: true });
  });

  // A question that must be answered first (Restart IPsec?) is a real modal dialog: focus stays
  // in it, Escape or Cancel closes it, and it is gone once closed. A request sent from it closes
  // it when the answer is in.
  document.addEventListener("htmx:load", function (e) {
    var elt = e.detail.elt;
    var dialogs = elt.matches("dialog[data-modal]") ? [elt] : elt.querySelectorAll("dialog[data-modal]");
    dialogs.forEach(function (dialog) {
      dialog.addEventListener("close", function () { dialog.remove(); });
      dialog.showModal();
    });
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var dialog = e.detail.elt.closest && e.detail.elt.closest("dialog[open]");
    if (dialog) dialog.close();
  });

  // What an output shows, said once: a pane that refreshes itself is announced again only when
  // its one-line summary changes, not every few seconds.
  document.addEventListener("htmx:afterSettle", function (e) {
    var elt = e.target, out = document.getElementById("announce");
    if (!out || !elt.querySelector) return;
    var source = elt.matches("[data-announce]") ? elt : elt.querySelector("[data-announce]");
    if (!source) return;
    var text = source.getAttribute("data-announce");
    var asked = e.detail.requestConfig && !polled(e.detail.requestConfig.elt);
    if (text === out.dataset.last && !asked) return;  // a refresh that changed nothing
    out.dataset.last = text;
    out.textContent = "";  // emptied first, so the same line asked for again is read again
    setTimeout(function () { out.textContent = text; }, 50);
  });

  // Restart IPsec takes a few seconds, less than the rows' poll period: while it is in flight the
  // rows ask every second (the server says "restarting" from the moment it starts), and once more
  // when it is answered, so the admin sees the restart and the tunnels coming back.
  document.addEventListener("htmx:beforeSend", function (e) {
    if (!e.detail.elt.matches || !e.detail.elt.matches("[data-refreshes-states]")) return;
    function refresh() {
      var rows = document.querySelector("#peer-table tbody");
      if (rows) htmx.trigger(rows, "states-refresh");
    }
    var timer = setInterval(refresh, 1000);
    setTimeout(refresh, 300);  // the restart has begun on the server by then
    e.detail.xhr.addEventListener("loadend", function () { clearInterval(timer); refresh(); });
  });

  // Controls that only work with this script stay hidden without it.
  document.addEventListener("htmx:load", function (e) {
    e.detail.elt.querySelectorAll("[data-needs-js]").forEach(function (el) { el.hidden = false; });
  });

  document.addEventListener("click", function (e) {
    var preset = e.target.closest("[data-preset]");
    if (preset) {
      applyPreset(preset.form || preset.closest("form"), JSON.parse(preset.dataset.preset));
      algorithmsChanged(preset.closest("form"));
    }
    if (e.target.closest("#psk-generate")) generateKey();
    if (e.target.closest("[data-reload]")) location.reload();
    var copy = e.target.closest("[data-copy]");
    if (copy) copyText(copy, document.getElementById(copy.dataset.copy));
  });
  document.addEventListener("change", function (e) {
    if (e.target.closest("#algorithms")) algorithmsChanged(e.target.form);
  });
  document.addEventListener("htmx:load", function (e) {
    var form = e.detail.elt.querySelector ? e.detail.elt.querySelector("#peer-form") : null;
    if (e.detail.elt.id === "peer-form") form = e.detail.elt;
    if (form) algorithmsChanged(form);
  });
  document.addEventListener("input", function (e) {
    if (e.target.id === "psk") showStrength(e.target.value);
  });

  // A preset (field name -> keywords, from PRESETS in webui/peers.py) ticks exactly its boxes.
  function applyPreset(form, preset) {
    Object.keys(preset).forEach(function (name) {
      form.querySelectorAll('input[name="' + name + '"]').forEach(function (box) {
        box.checked = preset[name].indexOf(box.value) >= 0;
      });
    });
  }

  // AES-GCM and ChaCha20-Poly1305 include integrity: while only they are chosen, the integrity
  // boxes beside them are greyed out (a disabled fieldset is not sent; the server ignores them
  // too). And the Algorithms summary names the preset the boxes match, or Custom.
  function algorithmsChanged(form) {
    if (!form) return;
    ["ike", "esp"].forEach(function (part) {
      var chosen = form.querySelectorAll('input[name="' + part + '_encryption"]:checked');
      var aeadOnly = chosen.length > 0 && Array.prototype.every.call(chosen, function (box) { return box.hasAttribute("data-aead"); });
      var integrity = document.getElementById(part + "_integrity-group");
      if (integrity) {
        integrity.disabled = aeadOnly;
        integrity.classList.toggle("not-applicable", aeadOnly);
      }
    });
    var name = document.getElementById("algorithms-preset");
    if (!name) return;
    var matching = Array.prototype.find.call(form.querySelectorAll("[data-preset]"), function (button) {
      var preset = JSON.parse(button.dataset.preset);
      return Object.keys(preset).every(function (field) {
        var ticked = Array.prototype.map.call(form.querySelectorAll('input[name="' + field + '"]:checked'), function (box) { return box.value; });
        return ticked.length === preset[field].length && preset[field].every(function (k) { return ticked.indexOf(k) >= 0; });
      });
    });
    name.textContent = matching ? matching.textContent : "Custom";
  }

  // 32 characters without look-alikes (0/O, 1/l/I): about 186 bits, and easy to read out.
  var ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
  function generateKey() {
    var key = "", bytes = new Uint8Array(64), limit = 256 - 256 % ALPHABET.length;
    while (key.length < 32) {
      crypto.getRandomValues(bytes);
      for (var i = 0; i < bytes.length && key.length < 32; i++) {
        if (bytes[i] < limit) key += ALPHABET[bytes[i] % ALPHABET.length];  // no modulo bias
      }
    }
    var input = document.getElementById("psk");
    input.type = "text";  // the admin must pass it on to the other side, so show it
    input.value = key;
    showStrength(key, "Copy it now for the other side: it is never shown again once saved.");
  }

  // An estimate from length and the kinds of characters used; it cannot see a reused or known phrase.
  function estimateBits(key) {
    var pool = 0;
    if (/[a-z]/.test(key)) pool += 26;
    if (/[A-Z]/.test(key)) pool += 26;
    if (/[0-9]/.test(key)) pool += 10;
    if (/[^a-zA-Z0-9]/.test(key)) pool += 33;
    return pool ? Math.round(key.length * Math.log2(pool)) : 0;
  }
  function showStrength(key, note) {
    var out = document.getElementById("psk-strength");
    if (!out) return;
    var bits = estimateBits(key);
    var word = bits < 64 ? "weak" : bits < 100 ? "fair" : "strong";
    out.className = "strength " + word;
    out.textContent = key ? "Estimated strength: about " + bits + " bits (" + word +
      ", if the characters are random). " + (note || "") : "";
  }

  function copyText(button, source) {
    function done(text) { button.textContent = text; }
    function select() {
      source.focus();
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    // The clipboard API needs HTTPS or localhost; a router at http://192.168.1.1 gets the selection.
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(function () { done("Copied"); },
        function () { select(); done("Selected: press Ctrl+C"); });
    } else {
      select();
      done("Selected: press Ctrl+C");
    }
  }
})();
