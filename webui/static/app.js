// Small behaviours on top of htmx. No inline scripts anywhere: the CSP forbids them.
(function () {
  "use strict";

  // A request that failed (server error or network) shows a banner instead of doing nothing.
  function showError(text) {
    var banner = document.getElementById("request-error");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    showError("The router answered " + xhr.status + " " + (xhr.statusText || "") + " to that request.");
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The router could not be reached. Check the connection and try again.");
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.successful) {
      var banner = document.getElementById("request-error");
      if (banner) banner.hidden = true;
    }
  });
})();
