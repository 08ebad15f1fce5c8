"""Live progress of a crawl: snapshots with an ETA, task events, a live page, terminal output.

Wires the :class:`~matter_crawler.monitoring.progress.ProgressAggregator`
(a snapshot every ``PROGRESS_INTERVAL`` seconds) and an
:class:`~matter_crawler.monitoring.events.EventHub` (an event for every request
that finishes, fails or is retried) to their outputs:

- the crawl's HTTP server (:mod:`matter_crawler.monitoring.server`): ``/status``
  (the latest snapshot as JSON), ``/events`` (Server-Sent Events) and ``/``
  (the live page: progress bar, ETA, per-stage counts, breakers, finished tasks),
  ``/links`` (what the page links: ``feed.atom``, the file at ``FEED_ATOM_PATH`` as the
  last crawl wrote it, served at ``/feed.atom``, when that setting is set);
- ``PROGRESS_EVENTS_FILE``: the same events as JSON lines (``%(name)s``,
  ``%(job)s`` and ``%(time)s`` in the path are replaced);
- the log: a progress line every ``PROGRESS_LOG_INTERVAL`` seconds;
- a progress bar on stderr when it is a terminal (``PROGRESS_BAR``: auto, true, false).

Per request the handlers do O(1) work: a tuple into the ring of recent tasks,
and JSON only while an events file or a browser listens.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Request, Response
from twisted.python.failure import Failure

from ..monitoring.events import EventHub
from ..monitoring.progress import ProgressAggregator, Snapshot, job_label
from ..monitoring.resources import FileResource, JsonResource, PackageFileResource
from ..monitoring.server import MonitoringServer
from ..monitoring.stream import EventsResource
from ..monitoring.terminal import ProgressBar, progress_line
from ..signals import request_dead_lettered, request_retrying

logger = logging.getLogger(__name__)

STATIC_PACKAGE = "matter_crawler.monitoring"
STATIC_FILES = {
    "": ("static/index.html", b"text/html; charset=utf-8"),
    "static/app.js": ("static/app.js", b"text/javascript; charset=utf-8"),
    "static/control.js": ("static/control.js", b"text/javascript; charset=utf-8"),
    "static/style.css": ("static/style.css", b"text/css; charset=utf-8"),
}

FEED_CONTENT_TYPE = b"application/atom+xml; charset=utf-8"


def _stage(request: Request | None) -> str | None:
    return request.meta.get("stage") if request is not None else None


class ProgressMonitor:
    def __init__(
        self,
        crawler: Crawler,
        *,
        log_interval: float,
        bar: ProgressBar | None,
        events_path: str | None,
        recent_tasks: int,
        feed_path: str | None = None,
    ) -> None:
        self.crawler = crawler
        self.aggregator = ProgressAggregator.from_crawler(crawler)
        self.hub = EventHub(recent=recent_tasks)
        self.server = MonitoringServer.from_crawler(crawler)
        self.log_interval = log_interval
        self.bar = bar
        self.events_path = events_path
        self._last_log = monotonic()
        for path, (name, content_type) in STATIC_FILES.items():
            self.server.put(path, PackageFileResource(STATIC_PACKAGE, name, content_type))
        self.server.put("status", JsonResource(self.aggregator.current))
        self.server.put("events", EventsResource(self.hub, self.server.limits))
        # what the live page links besides itself: the Atom feed when FEED_ATOM_PATH is set
        self.links: dict[str, str] = {}
        if feed_path:
            self.links["feed"] = "feed.atom"
            self.server.put("feed.atom", FileResource(Path(feed_path), FEED_CONTENT_TYPE))
        self.server.put("links", JsonResource(lambda: self.links))
        self.aggregator.listeners.append(self.snapshot)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("PROGRESS_ENABLED"):
            raise NotConfigured
        bar_setting = settings.get("PROGRESS_BAR")
        monitor = cls(
            crawler,
            log_interval=settings.getfloat("PROGRESS_LOG_INTERVAL"),
            bar=ProgressBar() if ProgressBar.wanted(bar_setting) else None,
            events_path=settings.get("PROGRESS_EVENTS_FILE") or None,
            recent_tasks=settings.getint("PROGRESS_RECENT_TASKS"),
            feed_path=settings.get("FEED_ATOM_PATH") or None,
        )
        connect = crawler.signals.connect
        connect(monitor.spider_opened, signal=signals.spider_opened)
        connect(monitor.spider_closed, signal=signals.spider_closed)
        connect(monitor.response_received, signal=signals.response_received)
        connect(monitor.item_scraped, signal=signals.item_scraped)
        connect(monitor.item_dropped, signal=signals.item_dropped)
        connect(monitor.spider_error, signal=signals.spider_error)
        connect(monitor.retrying, signal=request_retrying)
        connect(monitor.dead_lettered, signal=request_dead_lettered)
        return monitor

    # -- life cycle ------------------------------------------------------------------------

    def spider_opened(self) -> None:
        if self.events_path:
            self.hub.open_file(self._events_file(self.events_path))
        self.aggregator.start()
        self.server.start()

    def _events_file(self, template: str) -> Path:
        spider = self.crawler.spider
        values = {
            "name": getattr(spider, "name", "spider"),
            "job": job_label(spider),
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S"),
        }
        return Path(template % values if "%(" in template else template)

    def snapshot(self, snapshot: Snapshot) -> None:
        """Every snapshot: to the hub (file, live page), the bar; the log line when due."""
        self.hub.snapshot(snapshot)
        if snapshot["finished"]:
            return
        if self.bar is not None:
            self.bar.draw(snapshot)
        now = monotonic()
        if self.log_interval > 0 and now - self._last_log >= self.log_interval:
            self._last_log = now
            logger.info("Progress: %s", progress_line(snapshot))

    def spider_closed(self, reason: str) -> None:
        final = self.aggregator.finish(reason)
        if self.aggregator.listeners.count(self.snapshot):
            self.aggregator.listeners.remove(self.snapshot)
        if self.bar is not None:
            self.bar.close()
        if self.log_interval > 0:
            logger.info("Progress: %s", progress_line(final))
        self.hub.close(reason)

    # -- task events (per request: O(1)) -----------------------------------------------------

    def response_received(self, response: Response, request: Request, **_: Any) -> None:
        stage = request.meta.get("stage")
        if stage == "detail":
            return  # reported with the product's name when its item is scraped or dropped
        self.hub.task(
            "done", stage, response.url, status=response.status, page=request.meta.get("page")
        )

    def item_scraped(self, item: Any, response: Any, **_: Any) -> None:
        if isinstance(response, Response) and response.meta.get("stage") == "detail":
            self.hub.task(
                "done",
                "detail",
                response.url,
                status=response.status,
                name=getattr(item, "model", None),
                manufacturer=getattr(item, "manufacturer", None),
            )

    def item_dropped(self, item: Any, response: Any, exception: BaseException, **_: Any) -> None:
        if isinstance(response, Response) and response.meta.get("stage") == "detail":
            self.hub.task(
                "invalid",
                "detail",
                response.url,
                name=getattr(item, "model", None),
                manufacturer=getattr(item, "manufacturer", None),
                reason=str(exception),
            )

    def spider_error(self, failure: Failure, response: Any, **_: Any) -> None:
        request = getattr(response, "request", None)
        self.hub.task(
            "failed",
            _stage(request),
            getattr(response, "url", None),
            failure_class="spider_error",
            reason=failure.getErrorMessage(),
        )

    def retrying(
        self,
        request: Request,
        failure_class: str,
        reason: str,
        attempt: int,
        delay: float,
        **_: Any,
    ) -> None:
        self.hub.task(
            "retry",
            _stage(request),
            request.url,
            failure_class=failure_class,
            reason=reason,
            attempt=attempt,
            delay=round(delay, 2),
        )

    def dead_lettered(
        self, url: str, stage: str | None, failure_class: str, reason: str, attempts: int, **_: Any
    ) -> None:
        if failure_class == "invalid":
            return  # item_dropped reported it, with the product's name
        self.hub.task(
            "failed", stage, url, failure_class=failure_class, reason=reason, attempts=attempts
        )
