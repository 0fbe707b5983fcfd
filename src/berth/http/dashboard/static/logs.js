// Live logs: follows the page's Server-Sent Events stream and appends each line (as text, never HTML).
(function () {
  "use strict";
  var log = document.getElementById("log");
  var status = document.getElementById("log-status");
  if (!log || !window.EventSource) { return; }
  var source = new EventSource(log.getAttribute("data-stream"));
  function stick() { log.scrollTop = log.scrollHeight; }
  source.onopen = function () { status.textContent = "Live: following"; };
  source.onmessage = function (event) {
    var line = JSON.parse(event.data);
    var span = document.createElement("span");
    span.className = "fd" + line.fd;
    span.title = line.task;
    span.textContent = line.data;
    log.appendChild(span);
    stick();
  };
  source.addEventListener("done", function () { status.textContent = "The app has stopped: no more logs."; source.close(); });
  source.addEventListener("signed-out", function () { status.textContent = "Signed out."; source.close(); });
  source.onerror = function () { status.textContent = "Live: reconnecting…"; };
  stick();
}());
