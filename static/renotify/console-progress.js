// Refreshes each campaign's progress (an element with data-poll: the URL of its HTML
// fragment) every few seconds while the fragment says the campaign sends (data-live).
// Without JavaScript the page works the same; reloading it shows the latest figures.
(function () {
  "use strict";
  var PERIOD = 5000;

  function poll(box) {
    fetch(box.getAttribute("data-poll"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        if (box.querySelector("[data-live]")) { later(box, PERIOD); }
      })
      .catch(function () { later(box, PERIOD * 4); });
  }

  function later(box, delay) {
    window.setTimeout(function () { poll(box); }, delay);
  }

  document.querySelectorAll("[data-poll]").forEach(function (box) {
    if (box.querySelector("[data-live]")) { later(box, PERIOD); }
  });
}());
