"""The crawl's one local HTTP server: ``/metrics``, ``/status``, ``/events`` and ``/``.

Twisted Web on the crawl's own reactor (no thread, nothing to install), bound
to ``MONITORING_HOST`` (127.0.0.1 by default) on the first free port of
``MONITORING_PORT``: one port (``9410``), a range (``9410-9430``: parallel
scrapyd jobs each take the next free one) or ``0`` (any free port). The chosen
address is logged. A crawl whose whole range is taken runs without a server
and says so. ``MONITORING_SERVER_ENABLED = False``: no server at all.

Extensions put their resources on the shared server
(:meth:`MonitoringServer.from_crawler`) and call :meth:`~MonitoringServer.start`
when the spider opens; the server stops when the engine stops, after every
``spider_closed`` handler has run (the live page gets the crawl's last event):
the port is freed, open connections, event streams included, are closed.

The parts, one module each: the plain resources and the security headers
(:mod:`.resources`), the event stream (:mod:`.stream`), the connection limits
(:mod:`.connections`) and the Host-header check against DNS rebinding
(:mod:`.hosts`).

``PROMETHEUS_HOST`` and ``PROMETHEUS_PORT``, the old names of ``MONITORING_HOST``
and ``MONITORING_PORT``, are still read, with a deprecation warning, for one release
(:func:`renamed_setting`).
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import CannotListenError
from twisted.web.resource import Resource

from .. import settings as project_defaults
from .connections import MonitoringSite, ServerLimits
from .hosts import allowed_host_names, host_name

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

#: Seconds a closing connection may take to deliver what it was sent before it is aborted.
CLOSE_GRACE_SECONDS = 5.0
#: Renamed settings, new name -> old name: the old one is read, with a warning, for one release.
RENAMED_SETTINGS = {"MONITORING_HOST": "PROMETHEUS_HOST", "MONITORING_PORT": "PROMETHEUS_PORT"}

_per_crawler: weakref.WeakKeyDictionary[Crawler, MonitoringServer] = weakref.WeakKeyDictionary()


def renamed_setting(settings: BaseSettings, name: str) -> Any:
    """The value of setting ``name``, or of its deprecated old name when that one is meant.

    The old name is used when it was given at a higher priority than the new one (``-s
    PROMETHEUS_PORT=0`` over the project's ``MONITORING_PORT``), or at the same priority
    while the new one still has the project's default. An explicitly given new name wins.
    Either way a given old name warns (:class:`~scrapy.exceptions.ScrapyDeprecationWarning`).
    """
    old = RENAMED_SETTINGS[name]
    old_priority = settings.getpriority(old)
    if old_priority is None:
        return settings.get(name)
    new_priority = settings.getpriority(name)
    new_given = new_priority is not None and (
        new_priority > old_priority
        or (
            new_priority == old_priority
            and settings.get(name) != getattr(project_defaults, name, None)
        )
    )
    used = name if new_given else old
    warnings.warn(
        f"The {old} setting is deprecated: use {name} (it configures the whole monitoring "
        f"server, not only Prometheus); using {used}={settings.get(used)!r}",
        ScrapyDeprecationWarning,
        stacklevel=2,
    )
    return settings.get(used)


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
            f"MONITORING_PORT must be a port (9410), a range (9410-9430) or 0, not {spec!r}"
        ) from None
    if not (0 <= first <= last <= 65535) or (first == 0 and last != 0):
        raise ValueError(f"MONITORING_PORT {spec!r} is not a valid port or range")
    return list(range(first, last + 1))


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
        self.site = MonitoringSite(self.root, allowed_host_names(host, allowed_hosts), limits)
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
                host=renamed_setting(settings, "MONITORING_HOST"),
                ports=parse_ports(renamed_setting(settings, "MONITORING_PORT")),
                limits=ServerLimits.from_settings(settings),
                enabled=settings.getbool("MONITORING_SERVER_ENABLED"),
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
