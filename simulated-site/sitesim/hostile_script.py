"""Hostile scripts (``--hostile-script URL,...``): JavaScript-only pages that attack local services.

A crawler fetches a JavaScript-only shell again in a real browser, which runs
the site's scripts. With ``--hostile-script`` every such shell (``--js-only-rate``)
also carries a script that, before the page's content appears, tries to reach
each of the given URLs (stand-ins for scrapyd on 127.0.0.1:6800, a Pushgateway,
the crawl's own monitoring server) in every way a page can:

==========================  ===============================================================
``fetch``                   ``fetch()`` POST (``no-cors``)
``xhr``                     ``XMLHttpRequest`` POST
``form``                    a form posted into a frame
``form-popup``              a form posted into a new window (``target=_blank``)
``window-open``             ``window.open()``
``iframe``                  an ``<iframe src>``
``iframe-navigation``       a frame navigated by script
``navigation``              the page itself navigated (``location.assign``, once loaded)
``image``                   an ``<img src>``
``script``                  a ``<script src>``
``stylesheet``              a ``<link rel=stylesheet>``
``prefetch``                a ``<link rel=prefetch>``
``websocket``               ``new WebSocket()``
``beacon``                  ``navigator.sendBeacon()``
``eventsource``             ``new EventSource()``
``redirect-307``            a POST to this site that answers 307 to the target
``redirect-302``            an image on this site that answers 302 to the target
``service-worker``          a service worker of this site that POSTs to the target
``webrtc-turn``             WebRTC with the target as a TURN server over TCP
``webrtc-stun``             WebRTC with the target as a STUN server (UDP, same port)
==========================  ===============================================================

Each attempt asks for its own path, ``<target>/matter-hostile/<vector>``, so a
listener there can tell which one reached it (the WebRTC ones send STUN, not
HTTP). The page's content appears :data:`CONTENT_DELAY_MS` after the script
started (the plain shell's 50 ms is stretched), so every attempt has been made
before a crawler can take the page.

The site answers ``/matter-hostile/redirect?status=307&to=URL`` (any method) with
that redirect, and ``/matter-hostile/sw.js`` with the service worker, only while
``--hostile-script`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

PATH_PREFIX = "/matter-hostile/"
REDIRECT_PATH = PATH_PREFIX + "redirect"
SERVICE_WORKER_PATH = PATH_PREFIX + "sw.js"
VECTORS = (
    "fetch", "xhr", "form", "form-popup", "window-open", "iframe", "iframe-navigation",
    "navigation", "image", "script", "stylesheet", "prefetch", "websocket", "beacon",
    "eventsource", "redirect-307", "redirect-302", "service-worker", "webrtc-turn", "webrtc-stun",
)  # fmt: skip
#: When the page's content appears, after the hostile script started.
CONTENT_DELAY_MS = 1000
#: The shell's loader script, before which the hostile one goes.
_LOADER = b'<script id="product-root-loader">'

_SCRIPT = """<script id="matter-hostile-script">
(function () {
  var targets = %(targets)s;
  var realTimeout = window.setTimeout;
  // the page's content appears only once every attempt below has been made
  window.setTimeout = function (callback, delay) {
    return realTimeout(callback, Math.max(delay || 0, %(delay)d));
  };
  function attempt(action) { try { action(); } catch (error) { /* blocked: fine */ } }
  function add(tag, attributes) {
    var node = document.createElement(tag);
    Object.keys(attributes).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    (tag === "link" ? document.head : document.body).appendChild(node);
    return node;
  }
  function form(url, target) {
    var node = add("form", {method: "post", action: url, target: target});
    var field = document.createElement("input");
    field.name = "project";
    field.value = "matter_crawler";
    node.appendChild(field);
    node.submit();
  }
  function peer(kind, hostPort) {
    var server = kind === "turn"
      ? {urls: "turn:" + hostPort + "?transport=tcp", username: "u", credential: "p"}
      : {urls: "stun:" + hostPort};
    var connection = new RTCPeerConnection({iceServers: [server]});
    connection.createDataChannel("x");
    connection.createOffer().then(function (offer) { connection.setLocalDescription(offer); });
  }
  add("iframe", {name: "matter-hostile-sink"});
  targets.forEach(function (target, index) {
    var base = target.replace(/\\/+$/, "") + "/matter-hostile/";
    var hostPort = base.split("/")[2];
    var body = "project=matter_crawler&spider=matter_products";
    var redirect = "%(redirect)s?to=";
    attempt(function () { fetch(base + "fetch", {method: "POST", mode: "no-cors", body: body}); });
    attempt(function () {
      var request = new XMLHttpRequest();
      request.open("POST", base + "xhr");
      request.send(body);
    });
    attempt(function () { form(base + "form", "matter-hostile-sink"); });
    attempt(function () { form(base + "form-popup", "_blank"); });
    attempt(function () { window.open(base + "window-open"); });
    attempt(function () { add("iframe", {src: base + "iframe"}); });
    attempt(function () {
      var frame = add("iframe", {src: "about:blank"});
      frame.contentWindow.location = base + "iframe-navigation";
    });
    attempt(function () { add("img", {src: base + "image"}); });
    attempt(function () { add("script", {src: base + "script"}); });
    attempt(function () { add("link", {rel: "stylesheet", href: base + "stylesheet"}); });
    attempt(function () { add("link", {rel: "prefetch", href: base + "prefetch"}); });
    attempt(function () { new WebSocket(base.replace(/^http/, "ws") + "websocket"); });
    attempt(function () { navigator.sendBeacon(base + "beacon", body); });
    attempt(function () { new EventSource(base + "eventsource"); });
    attempt(function () {
      fetch(redirect + encodeURIComponent(base + "redirect-307") + "&status=307", {
        method: "POST", body: body,
        headers: {"Content-Type": "application/x-www-form-urlencoded"}
      });
    });
    attempt(function () {
      add("img", {src: redirect + encodeURIComponent(base + "redirect-302") + "&status=302"});
    });
    attempt(function () {
      var worker = "%(worker)s?to=" + encodeURIComponent(base + "service-worker");
      navigator.serviceWorker.register(worker);
    });
    attempt(function () { peer("turn", hostPort); });
    attempt(function () { peer("stun", hostPort); });
    if (index === 0) {  // once loaded: a navigation before that would only spoil the render
      window.addEventListener("load", function () {
        attempt(function () { location.assign(base + "navigation"); });
      });
    }
  });
})();
</script>
"""

_SERVICE_WORKER = """self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function () {
  var target = new URL(location.href).searchParams.get("to");
  fetch(target, {method: "POST", mode: "no-cors", body: "project=matter_crawler"});
});
"""


def script(targets: Sequence[str]) -> str:
    """The hostile script for these target URLs."""
    return _SCRIPT % {
        "targets": json.dumps(list(targets)).replace("<", "\\u003c"),
        "delay": CONTENT_DELAY_MS,
        "redirect": REDIRECT_PATH,
        "worker": SERVICE_WORKER_PATH,
    }


def inject(page: bytes, targets: Sequence[str]) -> bytes:
    """A JavaScript-only shell with the hostile script before its loader."""
    return page.replace(_LOADER, script(targets).encode() + _LOADER, 1)


def answer(path: str, args: dict[bytes, list[bytes]]) -> tuple[int, bytes, tuple]:
    """The site's own helpers: the redirect and the service worker (status, body, headers)."""
    if path == SERVICE_WORKER_PATH:
        return 200, _SERVICE_WORKER.encode(), ((b"content-type", b"text/javascript"),)
    if path == REDIRECT_PATH:
        to = args.get(b"to", [b""])[0].decode("utf-8", "replace")
        status = args.get(b"status", [b"302"])[0]
        if urlsplit(to).scheme in ("http", "https") and status in (b"301", b"302", b"307", b"308"):
            location = quote(to, safe=":/?&=%#[]@!$'()*+,;~")
            headers = ((b"content-type", b"text/plain"), (b"location", location.encode()))
            return int(status), b"", headers
    return 404, b"not found\n", ((b"content-type", b"text/plain"),)


def target_list(value: object) -> tuple[str, ...]:
    """``--hostile-script``: comma-separated http(s) URLs (or a JSON list); "" clears it."""
    if value is None or value == "":
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        raise ValueError(f"expected URLs separated by commas, got {value!r}")
    targets = tuple(str(part).strip() for part in parts if str(part).strip())
    for target in targets:
        if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).netloc:
            raise ValueError(f"not an http(s) URL: {target!r}")
    return targets
