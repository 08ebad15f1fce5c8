"""The monitoring server's connections: counted, capped, timed out, checked, not logged.

Bounded, whatever local clients do (:class:`ServerLimits`): at most
``MONITORING_MAX_CONNECTIONS`` connections (more are closed at once, so file
descriptors stay for downloads and the database); a connection with no request
for ``MONITORING_IDLE_TIMEOUT`` seconds is closed. The event streams' own limits
(``MONITORING_MAX_CLIENTS``, ``MONITORING_CLIENT_BUFFER``) are applied by
:mod:`matter_crawler.monitoring.stream`. A request whose ``Host`` header names
another server gets 421 (:mod:`matter_crawler.monitoring.hosts`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from .hosts import host_allowed
from .resources import MisdirectedResource

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


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


class CountedChannel(HTTPChannel):
    """An HTTP connection that its site counts while it is open."""

    site: MonitoringSite

    def connectionLost(self, reason: Any) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)


class MonitoringSite(Site):
    """A Site that logs no access lines, checks Host headers, counts and caps its connections."""

    protocol = CountedChannel

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

    def getResourceFor(self, request: Request) -> Resource:
        local = request.getHost()
        if not host_allowed(request.getHeader(b"host"), local.host, local.port, self.allowed_names):
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
