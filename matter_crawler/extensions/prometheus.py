"""Prometheus metrics of a crawl: ``/metrics``, service discovery, a push at close.

Metrics (see :mod:`matter_crawler.monitoring.metrics`) live in a registry of
this crawl's own and are served at ``/metrics`` by the crawl's HTTP server
(``MONITORING_HOST``, ``MONITORING_PORT``: one port, a range such as
``9410-9430``, or 0; see :mod:`matter_crawler.monitoring.server`). With
``PROMETHEUS_SD_FILE`` the crawl adds itself to that Prometheus file-based
service-discovery file when it opens and removes itself when it closes, so
Prometheus finds every running job without a change to its configuration (see
``deploy/prometheus.yml``). With
``PROMETHEUS_PUSHGATEWAY_URL`` (or ``$MATTER_PUSHGATEWAY_URL``) the final values
are pushed there at close, for jobs too short to be scraped (basic auth: see
:mod:`matter_crawler.monitoring.push`). The latest stored cross-check's numbers
(:mod:`matter_crawler.monitoring.crosscheck`) are read from the crawl's database
when the spider opens and exported with the crawl's.

Counters are fed by signals, O(1) per request; gauges are read at scrape time.
``PROMETHEUS_ENABLED = False`` turns all of it off.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached

from ..adaptive.extension import adaptive_state
from ..dcl.checks import latest_check
from ..monitoring.crosscheck import CrosscheckCollector
from ..monitoring.discovery import ServiceDiscoveryEntry
from ..monitoring.hosts import WILDCARD_HOSTS, host_name
from ..monitoring.metrics import OTHER_STAGE, CrawlMetrics, CrawlStateCollector
from ..monitoring.progress import ProgressAggregator, job_label
from ..monitoring.push import Pushgateway, push_metrics, pushgateway_from
from ..monitoring.resources import MetricsResource
from ..monitoring.server import MonitoringServer
from ..signals import (
    batch_stored,
    circuit_state_changed,
    item_invalid,
    request_dead_lettered,
    request_retrying,
)
from ..storage import Database

logger = logging.getLogger(__name__)


def _domain(request: Request | None, url: str | None = None) -> str:
    """The request's download slot (Scrapy's per-domain key), else the URL's host name."""
    if request is not None:
        return request.meta.get("download_slot") or urlparse_cached(request).hostname or ""
    return (urlsplit(url).hostname or "") if url else ""


class PrometheusExporter:
    def __init__(
        self, crawler: Crawler, sd_file: str | None, pushgateway: Pushgateway | None
    ) -> None:
        self.crawler = crawler
        spider = crawler.spider
        self.labels = {"spider": getattr(spider, "name", "spider"), "job": job_label(spider)}
        self.metrics = CrawlMetrics(**self.labels)
        self.registry = self.metrics.registry
        self.aggregator = ProgressAggregator.from_crawler(crawler)
        self.registry.register(
            CrawlStateCollector(
                crawler, self.aggregator, self.labels, lambda: adaptive_state(crawler)
            )
        )
        self.crosscheck = CrosscheckCollector(self.labels)
        self.registry.register(self.crosscheck)
        self.server = MonitoringServer.from_crawler(crawler)
        self.server.put("metrics", MetricsResource(self.registry))
        self.sd_file = Path(sd_file) if sd_file else None
        self.sd_entry: ServiceDiscoveryEntry | None = None
        self.pushgateway = pushgateway

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("PROMETHEUS_ENABLED"):
            raise NotConfigured
        exporter = cls(
            crawler,
            sd_file=settings.get("PROMETHEUS_SD_FILE") or None,
            pushgateway=pushgateway_from(settings.get("PROMETHEUS_PUSHGATEWAY_URL")),
        )
        connect = crawler.signals.connect
        connect(exporter.spider_opened, signal=signals.spider_opened)
        connect(exporter.spider_closed, signal=signals.spider_closed)
        connect(exporter.request_reached_downloader, signal=signals.request_reached_downloader)
        connect(exporter.response_downloaded, signal=signals.response_downloaded)
        connect(exporter.batch_stored, signal=batch_stored)
        connect(exporter.item_invalid, signal=item_invalid)
        connect(exporter.retrying, signal=request_retrying)
        connect(exporter.dead_lettered, signal=request_dead_lettered)
        connect(exporter.circuit_changed, signal=circuit_state_changed)
        return exporter

    # -- life cycle ------------------------------------------------------------------------

    async def spider_opened(self) -> None:
        self.aggregator.start()
        self.server.start()
        await self.read_crosscheck()
        port = self.server.port
        if self.sd_file is None:
            return
        if port is None:
            logger.warning("No monitoring server: not registering in %s", self.sd_file)
            return
        host = self.server.host
        if host in WILDCARD_HOSTS:
            host = socket.getfqdn()
        address = f"{host_name(host)}:{port}"
        self.sd_entry = ServiceDiscoveryEntry(self.sd_file, address, self.labels)
        try:
            self.sd_entry.add()
        except OSError as error:
            logger.error(
                "Could not register in the Prometheus target file %s: %s", self.sd_file, error
            )
            self.sd_entry = None

    async def read_crosscheck(self) -> None:
        """The latest stored cross-check, for its gauges (none: a database without one)."""
        database = Database.from_crawler(self.crawler)

        def latest(engine: Any) -> dict[str, Any] | None:
            with engine.connect() as conn:
                return latest_check(conn)

        try:
            self.crosscheck.check = await database.run_unguarded(latest)
        except Exception as error:  # the crawl goes on without these gauges
            logger.warning("Could not read the latest cross-check: %s", error)

    async def spider_closed(self, reason: str) -> None:
        self.aggregator.finish(reason)  # gauges show the final progress
        if self.sd_entry is not None:
            self.sd_entry.remove()
        if self.pushgateway:
            await push_metrics(self.pushgateway, self.registry, self.labels)

    # -- counters (per request: O(1)) ---------------------------------------------------------

    def request_reached_downloader(self, request: Request, **_: Any) -> None:
        self.metrics.request_sent(_domain(request), request.meta.get("stage") or OTHER_STAGE)

    def response_downloaded(self, response: Response, request: Request, **_: Any) -> None:
        meta = request.meta
        self.metrics.response_received(
            _domain(request),
            meta.get("stage") or OTHER_STAGE,
            response.status,
            meta.get("download_latency"),
        )

    def batch_stored(
        self, products: int, sightings: int, new: int, changed: int, seconds: float, **_: Any
    ) -> None:
        self.metrics.batch_stored(products, sightings, new, changed, seconds)

    def item_invalid(self, **_: Any) -> None:
        self.metrics.item_invalid()

    def retrying(self, request: Request, failure_class: str, **_: Any) -> None:
        self.metrics.retried(
            _domain(request), request.meta.get("stage") or OTHER_STAGE, failure_class
        )

    def dead_lettered(
        self,
        request: Request | None,
        url: str | None,
        stage: str | None,
        failure_class: str,
        **_: Any,
    ) -> None:
        # request is None for an invalid item or an off-site product link: the URL's host
        self.metrics.dead_lettered(_domain(request, url), stage or OTHER_STAGE, failure_class)

    def circuit_changed(self, domain: str, new: str, **_: Any) -> None:
        self.metrics.circuit_changed(domain, new)
