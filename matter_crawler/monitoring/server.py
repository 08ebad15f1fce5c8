"""The crawl's one local HTTP server: ``/metrics``, ``/status``, ``/events`` and ``/``.

Twisted Web on the crawl's own reactor (no thread, nothing to install), bound
to ``PROMETHEUS_HOST`` (127.0.0.1 by default) on the first free port of
``PROMETHEUS_PORT``: one port (``9410``), a range (``9410-9430``: parallel
scrapyd jobs each take the next free one) or ``0`` (any free port). The chosen
address is logged. A crawl whose whole range is taken runs without a server
and says so.

Extensions put their resources on the shared server
(:meth:`MonitoringServer.from_crawler`) and call :meth:`~MonitoringServer.start`
when the spider opens; the server stops when the engine stops, after every
``spider_closed`` handler has run (the live page gets the crawl's last event):
the port is freed, open connections, event streams included, are closed.

``/events`` is a Server-Sent Events stream fed by the
:class:`~matter_crawler.monitoring.events.EventHub`. Pages are served with a
Content-Security-Policy that allows only the server's own scripts.

Against DNS rebinding (a web page whose host name is made to resolve to
127.0.0.1, so the browser lets it read the live page and ``/status``), every
request must name this server in its ``Host`` header: ``127.0.0.1``,
``localhost``, ``[::1]``, ``PROMETHEUS_HOST``, the address the connection
arrived on, or a name in ``MONITORING_ALLOWED_HOSTS``; with this server's port.
Anything else gets 421 Misdirected Request. Prometheus sends the target's
address (``127.0.0.1:<port>`` from the service-discovery file), so it passes.
When bound to all interfaces (``0.0.0.0``) the machine's host names, the one
the service-discovery entry carries included, are accepted too.
"""

from __future__ import annotations

import json
import logging
import pkgutil
import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from scrapy import signals
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import CannotListenError
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .events import EventHub

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

DEFAULT_PORTS = "9410-9430"
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
}

#: Names of this machine every server answers to (with its own port).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

_per_crawler: weakref.WeakKeyDictionary[Crawler, MonitoringServer] = weakref.WeakKeyDictionary()


def parse_ports(spec: Any) -> list[int]:
    """``9410`` -> [9410]; ``"9410-9430"`` -> 9410..9430; ``0`` -> [0] (any free port)."""
    text = str(spec).strip()
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
        else:
            first = last = int(text)
    except ValueError:
        raise ValueError(
            f"PROMETHEUS_PORT must be a port (9410), a range (9410-9430) or 0, not {spec!r}"
        ) from None
    if not (0 <= first <= last <= 65535) or (first == 0 and last != 0):
        raise ValueError(f"PROMETHEUS_PORT {spec!r} is not a valid port or range")
    return list(range(first, last + 1))


def host_name(host: str) -> str:
    """A host as it appears in a URL or a Host header: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_host_names(host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The names a server bound to ``host`` answers to (lower case, without a port)."""
    names = set(LOOPBACK_NAMES)
    if host in WILDCARD_HOSTS:
        names.update({socket.getfqdn(), socket.gethostname()})
    else:
        names.add(host_name(host))
    names.update(host_name(name.strip()) for name in extra if name.strip())
    return frozenset(name.lower().rstrip(".") for name in names)


def split_authority(authority: str) -> tuple[str, int | None]:
    """``"Host:port"`` -> ("host", port); ("host", None) without a port; ("", None) if bad."""
    text = authority.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "", None
        name, rest = text[: end + 1], text[end + 1 :]
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
    if not rest:
        return name.rstrip("."), None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return "", None
    return name.rstrip("."), int(rest[1:])


def _apply_headers(request: Request, content_type: bytes) -> None:
    request.setHeader(b"Content-Type", content_type)
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class MetricsResource(Resource):
    """Prometheus exposition (text or OpenMetrics, as the scraper's Accept asks)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        _apply_headers(request, content_type.encode("latin-1"))
        return encoder(self.registry)


class JsonResource(Resource):
    isLeaf = True

    def __init__(self, produce: Callable[[], Any]) -> None:
        super().__init__()
        self.produce = produce

    def render_GET(self, request: Request) -> bytes:
        _apply_headers(request, b"application/json")
        return json.dumps(self.produce(), default=str).encode("ascii")


class PackageFileResource(Resource):
    """A file shipped in the package (read with pkgutil: works from a zipped egg too)."""

    isLeaf = True

    def __init__(self, package: str, name: str, content_type: bytes) -> None:
        super().__init__()
        data = pkgutil.get_data(package, name)
        if data is None:
            raise FileNotFoundError(f"{package}/{name} is not in the package")
        self.data = data
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        _apply_headers(request, self.content_type)
        return self.data


class EventsResource(Resource):
    """Server-Sent Events: the hub's snapshots and task events, live."""

    isLeaf = True
    KEEPALIVE_SECONDS = 15.0

    def __init__(self, hub: EventHub) -> None:
        super().__init__()
        self.hub = hub
        self.clients: dict[Request, Callable[[str, str], None]] = {}
        self._keepalive: Any = None

    def render_GET(self, request: Request) -> Any:
        _apply_headers(request, b"text/event-stream; charset=utf-8")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.write(b"retry: 2000\n\n")

        def send(kind: str, data: str) -> None:
            request.write(f"event: {kind}\ndata: {data}\n\n".encode("ascii"))

        self.clients[request] = send
        request.notifyFinish().addBoth(self._gone, request)
        self.hub.subscribe(send)
        if self._keepalive is None:
            self._keepalive = create_looping_call(self._ping)
            self._keepalive.start(self.KEEPALIVE_SECONDS, now=False)
        return NOT_DONE_YET

    def _ping(self) -> None:
        for request in list(self.clients):
            request.write(b": keep-alive\n\n")

    def _gone(self, _: Any, request: Request) -> None:
        send = self.clients.pop(request, None)
        if send is not None:
            self.hub.unsubscribe(send)

    def close(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        for request, send in list(self.clients.items()):
            self.hub.unsubscribe(send)
            self.clients.pop(request, None)
            if not request.finished and not getattr(request, "_disconnected", False):
                request.finish()


class MisdirectedResource(Resource):
    """421 for a request whose Host header names another server (DNS rebinding)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(421, b"Misdirected Request")
        _apply_headers(request, b"text/plain; charset=utf-8")
        return b"This server answers only to its own address (Host header refused).\n"


class _QuietSite(Site):
    """A Site that logs no access lines, checks Host headers, remembers its connections."""

    def __init__(self, resource: Resource, allowed_names: frozenset[str]) -> None:
        super().__init__(resource, timeout=120)
        self.channels: weakref.WeakSet[HTTPChannel] = weakref.WeakSet()
        self.allowed_names = allowed_names
        self.misdirected = MisdirectedResource()

    def host_allowed(self, request: Request) -> bool:
        header = request.getHeader(b"host")
        if header is None:
            return False
        name, port = split_authority(header.decode("latin-1"))
        local = request.getHost()
        if port is None:
            port = 80
        return port == local.port and (
            name in self.allowed_names or name == host_name(local.host).lower()
        )

    def getResourceFor(self, request: Request) -> Resource:
        if not self.host_allowed(request):
            return self.misdirected
        return super().getResourceFor(request)

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.channels.add(channel)
        return channel

    def log(self, request: Request) -> None:
        pass  # a scrape every few seconds is not worth a log line


class MonitoringServer:
    """The crawl's HTTP server, shared by the monitoring extensions."""

    def __init__(
        self,
        crawler: Crawler,
        host: str,
        ports: list[int],
        enabled: bool = True,
        allowed_hosts: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.crawler = crawler
        self.host = host
        self.ports = ports
        self.enabled = enabled
        self.root = Resource()
        self.static = Resource()
        self.root.putChild(b"static", self.static)
        self.site = _QuietSite(self.root, allowed_host_names(host, allowed_hosts))
        self.listening: Any = None
        self.url: str | None = None
        self._closers: list[Callable[[], None]] = []
        self._tried = False
        crawler.signals.connect(self.engine_stopped, signal=signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> MonitoringServer:
        server = _per_crawler.get(crawler)
        if server is None:
            settings = crawler.settings
            server = cls(
                crawler,
                host=settings.get("PROMETHEUS_HOST") or "127.0.0.1",
                ports=parse_ports(settings.get("PROMETHEUS_PORT", DEFAULT_PORTS)),
                enabled=settings.getbool("MONITORING_SERVER_ENABLED", True),
                allowed_hosts=settings.getlist("MONITORING_ALLOWED_HOSTS"),
            )
            _per_crawler[crawler] = server
        return server

    def put(self, path: str, resource: Resource) -> None:
        """Serve ``resource`` at ``/path`` ("" is the root page, "static/x" a static file)."""
        parent = self.root
        parts = path.split("/")
        if len(parts) == 2 and parts[0] == "static":
            parent, parts = self.static, parts[1:]
        parent.putChild(parts[0].encode("ascii"), resource)
        closer = getattr(resource, "close", None)
        if callable(closer):
            self._closers.append(closer)

    @property
    def port(self) -> int | None:
        return self.listening.getHost().port if self.listening is not None else None

    def start(self) -> str | None:
        """Listen on the first free port (idempotent); the base URL, or None."""
        if self._tried or not self.enabled:
            return self.url
        self._tried = True
        # imported here: importing it at module level would install a default reactor
        from twisted.internet import reactor  # noqa: PLC0415

        for port in self.ports:
            try:
                self.listening = reactor.listenTCP(
                    port, self.site, backlog=128, interface=self.host
                )
            except CannotListenError:
                continue
            break
        if self.listening is None:
            first, last = self.ports[0], self.ports[-1]
            logger.warning(
                "No free port for the monitoring server on %s in %s: running without it",
                self.host,
                first if first == last else f"{first}-{last}",
            )
            return None
        self.url = f"http://{host_name(self.host)}:{self.port}/"
        logger.info(
            "Monitoring server on %s (metrics at %smetrics, live page at %s)",
            self.url,
            self.url,
            self.url,
        )
        return self.url

    async def stop(self) -> None:
        """Close event streams and connections, free the port (idempotent)."""
        for close in self._closers:
            try:
                close()
            except Exception:
                logger.exception("Closing a monitoring resource failed")
        listening, self.listening = self.listening, None
        if listening is None:
            return
        stopped = listening.stopListening()
        for channel in list(self.site.channels):
            transport = getattr(channel, "transport", None)  # None once the connection is gone
            if transport is not None:
                transport.loseConnection()
        if stopped is not None:
            await maybe_deferred_to_future(stopped)
        logger.info("Monitoring server on %s stopped", self.url)

    async def engine_stopped(self) -> None:
        await self.stop()
