// The live execution list: server-sent events from <tbody data-events>, newest first,
// at most data-max rows. Rows arrive rendered (and escaped) by the server.
(function () {
  "use strict";
  function start() {
    var list = document.getElementById("executions");
    if (!list || !window.EventSource) return;
    var live = document.getElementById("live");
    var max = parseInt(list.getAttribute("data-max"), 10) || 200;
    var source = new EventSource(list.getAttribute("data-events"));
    source.addEventListener("open", function () {
      if (live) { live.textContent = "live"; live.className = "live on"; }
    });
    source.addEventListener("error", function () {
      if (live) { live.textContent = "reconnecting…"; live.className = "live off"; }
    });
    source.addEventListener("execution", function (event) {
      var data = JSON.parse(event.data);
      var holder = document.createElement("tbody");
      holder.innerHTML = data.html;
      var row = holder.firstElementChild;
      if (!row) return;
      var old = document.getElementById(row.id);
      if (old) { old.parentNode.replaceChild(row, old); } else { list.insertBefore(row, list.firstChild); }
      var empty = document.getElementById("no-executions");
      if (empty) empty.parentNode.removeChild(empty);
      while (list.rows.length > max) list.deleteRow(-1);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
