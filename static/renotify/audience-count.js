// The campaign flow's live audience count: as the filters change (debounced), ask the
// count endpoint and show its figures in place. Without JavaScript the step's "Count"
// button does the same with a whole page. Only text is written (textContent), never HTML.
(function () {
  "use strict";
  var form = document.querySelector("form[data-count-url]");
  var out = document.getElementById("audience-count");
  if (!form || !out) {
    return;
  }
  var SKIP = { csrfmiddlewaretoken: true, step: true, go: true };
  var timer = null;
  var asked = 0;

  function query() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (!SKIP[key]) {
        params.append(key, value);
      }
    });
    return params.toString();
  }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) {
      node.textContent = text;
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function number(n) {
    return Number(n).toLocaleString("en");
  }

  function table(caption, heading, rows) {
    var wrap = element("div", undefined, "table-wrap");
    var tableNode = element("table");
    tableNode.appendChild(element("caption", caption));
    var head = element("tr");
    var first = element("th", heading);
    first.scope = "col";
    var second = element("th", "Members", "num");
    second.scope = "col";
    head.appendChild(first);
    head.appendChild(second);
    tableNode.appendChild(element("thead")).appendChild(head);
    var body = tableNode.appendChild(element("tbody"));
    if (rows.length === 0) {
      var empty = element("td", "none");
      empty.colSpan = 2;
      body.appendChild(element("tr")).appendChild(empty);
    }
    rows.forEach(function (row) {
      var tr = body.appendChild(element("tr"));
      tr.appendChild(element("td", row[0]));
      tr.appendChild(element("td", number(row[1]), "num"));
    });
    wrap.appendChild(tableNode);
    return wrap;
  }

  function sorted(counts, labels) {
    return Object.keys(counts).sort().map(function (key) {
      return [labels ? labels[key] || key : key || "(none)", counts[key]];
    });
  }

  function show(figures) {
    out.textContent = "";
    var notReachable = figures.targeted - figures.reachable;
    var headline = element("p", undefined, "headline");
    headline.appendChild(element("strong", number(figures.reachable)));
    headline.appendChild(document.createTextNode(" reachable by email of "));
    headline.appendChild(element("strong", number(figures.targeted)));
    headline.appendChild(document.createTextNode(" selected"));
    if (notReachable) {
      headline.appendChild(document.createTextNode("; "));
      headline.appendChild(element("strong", number(notReachable)));
      headline.appendChild(document.createTextNode(" not reachable"));
    }
    headline.appendChild(document.createTextNode("."));
    out.appendChild(headline);
    if (notReachable) {
      out.appendChild(table("Not reachable by email, and why", "Why", sorted(figures.unreachable, figures.labels)));
    } else {
      out.appendChild(element("p", figures.targeted ? "Everyone selected can be emailed." : "No member matches these filters."));
    }
    var grid = element("div", undefined, "grid narrow");
    grid.appendChild(table("Reachable by jurisdiction", "Jurisdiction", sorted(figures.by_jurisdiction)));
    grid.appendChild(table("Reachable by locale", "Locale", sorted(figures.by_locale)));
    out.appendChild(grid);
  }

  function problem(errors) {
    out.textContent = "";
    out.appendChild(element("p", "Not counted: correct the filters.", "muted"));
    var list = element("ul", undefined, "errorlist");
    Object.keys(errors || {}).forEach(function (field) {
      errors[field].forEach(function (message) {
        list.appendChild(element("li", field.replace(/_/g, " ") + ": " + message));
      });
    });
    if (list.childNodes.length) {
      out.appendChild(list);
    }
  }

  function count() {
    var mine = ++asked;
    out.setAttribute("aria-busy", "true");
    fetch(form.getAttribute("data-count-url") + "?" + query(), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, body: body };
        });
      })
      .then(function (answer) {
        if (mine === asked) {
          answer.ok ? show(answer.body) : problem(answer.body.errors);
        }
      })
      .catch(function () {
        if (mine === asked) {
          problem({ count: ["could not be reached; press Count to try again"] });
        }
      })
      .then(function () {
        if (mine === asked) {
          out.removeAttribute("aria-busy");
        }
      });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(count, 400);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();
