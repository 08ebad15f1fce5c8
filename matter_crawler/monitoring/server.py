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

Bounded, whatever local clients do (:class:`ServerLimits`): at most
``MONITORING_MAX_CONNECTIONS`` connections (more are closed at once, so file
descriptors stay for downloads and the database); a connection with no request
for ``MONITORING_IDLE_TIMEOUT`` seconds is closed; at most
``MONITORING_MAX_CLIENTS`` event streams (more get ``503`` with
``Retry-After``). An event stream is written only while its client reads
(the stream is a push producer of its connection): while the client does not,
events wait in the stream's own queue, and a client whose queue passes
``MONITORING_CLIENT_BUFFER`` bytes, or that has not taken anything for
``MONITORING_IDLE_TIMEOUT`` seconds, is dropped. A browser's ``EventSource``
reconnects by itself and starts again from the latest snapshot.

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from scrapy import signals
from scrapy.utils.asyncio import CallLaterResult, call_later, create_looping_call
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IPushProducer
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from .events import EventHub

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

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

#: Seconds a closing connection may take to deliver what it was sent before it is aborted.
CLOSE_GRACE_SECONDS = 5.0
#: Names of this machine every server answers to (with its own port).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

_per_crawler: weakref.WeakKeyDictionary[Crawler, MonitoringServer] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What local clients may hold of the crawl's resources; 0 in any field: no limit."""

    max_connections: int  # open connections (file descriptors)
    max_clients: int  # /events streams
    client_buffer: int  # bytes queued for one stream whose client does not read
    idle_timeout: float  # seconds without a request, or with a stream not read

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ServerLimits:
        return cls(
            max_connections=settings.getint("MONITORING_MAX_CONNECTIONS"),
            max_clients=settings.getint("MONITORING_MAX_CLIENTS"),
            client_buffer=settings.getint("MONITORING_CLIENT_BUFFER"),
            idle_timeout=settings.getfloat("MONITORING_IDLE_TIMEOUT"),
        )


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


@implementer(IPushProducer)
class EventStream:
    """One ``/events`` client: written while its connection takes data, queued (bounded) if not.

    Registered as the request's streaming producer, so Twisted pauses it when
    the connection's send buffer fills (the client is not reading) and resumes
    it when the buffer drains. While paused, events wait here; past
    ``limits.client_buffer`` bytes, or after ``limits.idle_timeout`` seconds
    without the client taking anything, the client is dropped: its connection
    is aborted and whatever was waiting is freed.
    """

    def __init__(
        self, request: Request, limits: ServerLimits, gone: Callable[[EventStream], None]
    ) -> None:
        self.request = request
        self.limits = limits
        self.gone = gone
        self.paused = False
        self.closed = False
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self._stall_timer: CallLaterResult | None = None

    def send(self, kind: str, data: str) -> None:
        """An event (the hub's subscriber callback)."""
        self.write(f"event: {kind}\ndata: {data}\n\n".encode("ascii"))

    def write(self, chunk: bytes) -> None:
        if self.closed:
            return
        if not self.paused:
            self.request.write(chunk)  # may pause us, synchronously
            return
        self.queue.append(chunk)
        self.queued += len(chunk)
        if self.limits.client_buffer and self.queued > self.limits.client_buffer:
            self.drop(f"more than {self.limits.client_buffer} bytes of events unread")

    # -- IPushProducer: called by the connection ----------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        if self._stall_timer is None and self.limits.idle_timeout:
            self._stall_timer = call_later(
                self.limits.idle_timeout,
                self.drop,
                f"nothing read for {self.limits.idle_timeout:g} s",
            )

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancel_timer()
        while self.queue and not self.paused and not self.closed:
            chunk = self.queue.popleft()
            self.queued -= len(chunk)
            self.request.write(chunk)

    def stopProducing(self) -> None:
        self._release()

    # -- ending ---------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Abort a client that does not keep up; its queue is freed at once."""
        if self.closed:
            return
        logger.info("Dropping an /events client (%s): %s", self.peer(), reason)
        self._release()
        transport = self.request.channel.transport if self.request.channel else None
        if transport is not None:
            transport.abortConnection()

    def finish(self) -> None:
        """End the stream at shutdown (a client that is not reading is aborted, not waited for)."""
        if self.closed:
            return
        stalled = self.paused or bool(self.queue)
        self._release()
        if stalled:
            transport = self.request.channel.transport if self.request.channel else None
            if transport is not None:
                transport.abortConnection()
        elif not self.request.finished and not getattr(self.request, "_disconnected", False):
            self.request.unregisterProducer()
            self.request.finish()

    def peer(self) -> str:
        address = self.request.getClientAddress()
        return f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"

    def _release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self.queue.clear()
        self.queued = 0
        self.gone(self)

    def _cancel_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None


class EventsResource(Resource):
    """Server-Sent Events: the hub's snapshots and task events, live, to a few clients."""

    isLeaf = True
    KEEPALIVE_SECONDS = 15.0
    RETRY_AFTER_SECONDS = 10

    def __init__(self, hub: EventHub, limits: ServerLimits) -> None:
        super().__init__()
        self.hub = hub
        self.limits = limits
        self.clients: dict[Request, EventStream] = {}
        self._keepalive: Any = None

    def render_GET(self, request: Request) -> Any:
        if self.limits.max_clients and len(self.clients) >= self.limits.max_clients:
            return self._refuse(request)
        _apply_headers(request, b"text/event-stream; charset=utf-8")
        request.setHeader(b"X-Accel-Buffering", b"no")
        stream = EventStream(request, self.limits, self._gone)
        self.clients[request] = stream
        request.registerProducer(stream, True)
        request.notifyFinish().addBoth(lambda _: stream.stopProducing())
        stream.write(b"retry: 2000\n\n")
        self.hub.subscribe(stream.send)  # sends the latest snapshot and recent tasks first
        if stream.closed:  # dropped already: it could not take even those
            self.hub.unsubscribe(stream.send)
        if self._keepalive is None:
            self._keepalive = create_looping_call(self._ping)
            self._keepalive.start(self.KEEPALIVE_SECONDS, now=False)
        return NOT_DONE_YET

    def _refuse(self, request: Request) -> bytes:
        request.setResponseCode(503, b"Service Unavailable")
        _apply_headers(request, b"text/plain; charset=utf-8")
        request.setHeader(b"Retry-After", str(self.RETRY_AFTER_SECONDS).encode("ascii"))
        # and the connection is closed once answered: a refused client holds no descriptor
        request.setHeader(b"Connection", b"close")
        channel = request.channel
        request.notifyFinish().addBoth(lambda _: channel.loseConnection())
        return (
            f"Too many live clients ({self.limits.max_clients}, MONITORING_MAX_CLIENTS): "
            f"try again in {self.RETRY_AFTER_SECONDS} s.\n"
        ).encode("ascii")

    def _ping(self) -> None:
        for stream in list(self.clients.values()):
            stream.write(b": keep-alive\n\n")

    def _gone(self, stream: EventStream) -> None:
        self.clients.pop(stream.request, None)
        self.hub.unsubscribe(stream.send)

    def close(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        for stream in list(self.clients.values()):
            stream.finish()


class MisdirectedResource(Resource):
    """421 for a request whose Host header names another server (DNS rebinding)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(421, b"Misdirected Request")
        _apply_headers(request, b"text/plain; charset=utf-8")
        return b"This server answers only to its own address (Host header refused).\n"


class _CountedChannel(HTTPChannel):
    """An HTTP connection that its site counts while it is open."""

    site: _QuietSite

    def connectionLost(self, reason: Any) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)


class _QuietSite(Site):
    """A Site that logs no access lines, checks Host headers, counts and caps its connections."""

    protocol = _CountedChannel

    def __init__(
        self, resource: Resource, allowed_names: frozenset[str], limits: ServerLimits
    ) -> None:
        # Twisted's idle timeout: no request for this long closes the connection
        super().__init__(resource, timeout=limits.idle_timeout or None)
        self.channels: set[HTTPChannel] = set()
        self.limits = limits
        self.refused_connections = 0
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
        limit = self.limits.max_connections
        if limit and len(self.channels) >= limit:
            # None makes Twisted close the socket at once: its descriptor is freed
            self.refused_connections += 1
            if self.refused_connections == 1 or self.refused_connections % 1000 == 0:
                logger.warning(
                    "Monitoring server: %d connections open (MONITORING_MAX_CONNECTIONS): "
                    "refusing more (%d refused so far)",
                    limit,
                    self.refused_connections,
                )
            return None
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
        limits: ServerLimits,
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
        self.limits = limits
        self.site = _QuietSite(self.root, allowed_host_names(host, allowed_hosts), limits)
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
                limits=ServerLimits.from_settings(settings),
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
        channels = list(self.site.channels)
        for channel in channels:
            transport = getattr(channel, "transport", None)  # None once the connection is gone
            if transport is not None:
                transport.loseConnection()
        if channels:
            # a client that stopped reading would hold a graceful close open for ever
            call_later(CLOSE_GRACE_SECONDS, self._abort_remaining)
        if stopped is not None:
            await maybe_deferred_to_future(stopped)
        logger.info("Monitoring server on %s stopped", self.url)

    def _abort_remaining(self) -> None:
        for channel in list(self.site.channels):
            transport = getattr(channel, "transport", None)
            if transport is not None:
                transport.abortConnection()

    async def engine_stopped(self) -> None:
        await self.stop()
