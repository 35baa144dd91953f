// Live station status for portal pages: one websocket to /ws/live/, no polling. The server sends only what the
// logged-in user may see (it subscribes the socket to their organisations' or sites' groups). Elements that
// show a status carry data-station (identity) and data-connector ("<evse>-<connector>") or data-role="connection".
(function () {
  "use strict";
  var TONES = {Available: "ok", Charging: "live", Occupied: "live", Preparing: "live", SuspendedEV: "live",
    SuspendedEVSE: "warn", Finishing: "live", Reserved: "warn", Unavailable: "muted", Faulted: "bad",
    Offline: "bad", Online: "ok"};
  var indicator = document.getElementById("live-indicator");
  var stateText = document.getElementById("live-state");
  var delay = 1000;

  function setState(on, text) {
    if (indicator) indicator.classList.toggle("on", on);
    if (stateText) stateText.textContent = text;
  }

  function setBadge(container, status) {
    var badge = container.querySelector(".badge[data-status]");
    if (!badge) return;
    badge.textContent = status;
    badge.dataset.status = status;
    badge.className = "badge badge-" + (TONES[status] || "muted");
  }

  function stationElements(identity) {
    return document.querySelectorAll('[data-station="' + CSS.escape(identity) + '"]');
  }

  // The events this page received, for troubleshooting (and the browser tests); the latest 500.
  window.cpmsLiveLog = [];

  function apply(event) {
    window.cpmsLiveLog.push(event);
    if (window.cpmsLiveLog.length > 500) window.cpmsLiveLog.shift();
    stationElements(event.identity).forEach(function (el) {
      if (event.type === "status") {
        var key = event.evse_id + "-" + event.connector_id;
        var selector = '[data-connector="' + CSS.escape(key) + '"]';
        if (el.matches(selector)) setBadge(el, event.status);
        el.querySelectorAll(selector).forEach(function (c) { setBadge(c, event.status); });
      } else if (event.type === "connection") {
        el.querySelectorAll('[data-role="connection"]').forEach(function (c) {
          setBadge(c, event.connected ? "Online" : "Offline");
        });
      }
      // Parts of the page that show more than a badge (sessions, buttons) reload themselves (htmx).
      if (el.hasAttribute("data-live-refresh")) el.dispatchEvent(new CustomEvent("cpms-live"));
    });
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/live/");
    socket.onopen = function () { delay = 1000; setState(true, "Live"); };
    socket.onmessage = function (message) {
      try { apply(JSON.parse(message.data)); } catch (e) { /* a malformed event changes nothing */ }
    };
    socket.onclose = function () {
      setState(false, "Live status disconnected; reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  if ("WebSocket" in window) connect(); else setState(false, "Live status needs a browser with WebSockets.");
})();
