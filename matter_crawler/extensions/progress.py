"""Live progress of a crawl: snapshots with an ETA, task events, a live page, terminal output.

Wires the :class:`~matter_crawler.monitoring.progress.ProgressAggregator`
(a snapshot every ``PROGRESS_INTERVAL`` seconds, with the bottleneck verdict) and an
:class:`~matter_crawler.monitoring.events.EventHub` (with ``PROGRESS_TASK_EVENTS``, an
event when a request reaches the downloader and one when its task ends, from the
:class:`~matter_crawler.monitoring.tasks.TaskTracker` and, for pages whose callback ran,
:class:`~matter_crawler.extensions.task_events.TaskEventsMiddleware`; stage events from
the snapshots; a batch event per committed batch) to their outputs:

- the crawl's HTTP server (:mod:`matter_crawler.monitoring.server`): ``/status``
  (the latest snapshot as JSON), ``/events`` (Server-Sent Events) and ``/``
  (the live page: progress bar, ETA, per-stage counts, breakers, where the crawl is
  held back, tasks in flight, finished tasks),
  ``/links`` (what the page links: ``/feed.atom`` and ``/report.html``, the files at
  ``FEED_ATOM_PATH`` and ``REPORT_HTML_PATH`` as the last crawl wrote them, when those
  settings are set: :mod:`matter_crawler.monitoring.written_files`);
- ``PROGRESS_EVENTS_FILE``: the same events as JSON lines (``%(name)s``,
  ``%(job)s`` and ``%(time)s`` in the path are replaced);
- the log: a progress line every ``PROGRESS_LOG_INTERVAL`` seconds;
- a progress bar on stderr when it is a terminal (``PROGRESS_BAR``: auto, true, false).

Per request the handlers do O(1) work: a dict entry for the task in flight, a tuple
into the ring of recent tasks, and JSON only while an events file or a browser listens.
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
from scrapy.http.request import NO_CALLBACK
from twisted.python.failure import Failure

from ..adaptive.extension import adaptive_state
from ..adaptive.memory import memory_ceiling_mb
from ..monitoring.events import EventHub
from ..monitoring.progress import ProgressAggregator, Snapshot, job_label
from ..monitoring.resources import JsonResource, PackageFileResource
from ..monitoring.server import MonitoringServer
from ..monitoring.stream import EventsResource
from ..monitoring.tasks import TASK_ID, TaskTracker
from ..monitoring.terminal import ProgressBar, progress_line
from ..monitoring.written_files import serve_written_files
from ..signals import batch_stored, request_dead_lettered, request_retrying

logger = logging.getLogger(__name__)

STATIC_PACKAGE = "matter_crawler.monitoring"
STATIC_FILES = {
    "": ("static/index.html", b"text/html; charset=utf-8"),
    "static/app.js": ("static/app.js", b"text/javascript; charset=utf-8"),
    "static/bottleneck.js": ("static/bottleneck.js", b"text/javascript; charset=utf-8"),
    "static/control.js": ("static/control.js", b"text/javascript; charset=utf-8"),
    "static/style.css": ("static/style.css", b"text/css; charset=utf-8"),
}


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
        task_events: bool = True,
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
        # what the live page links besides itself: the feed and the report, when they are set
        self.links = serve_written_files(self.server, crawler.settings)
        self.server.put("links", JsonResource(lambda: self.links))
        self.aggregator.listeners.append(self.snapshot)
        self.aggregator.adaptive_state = lambda: adaptive_state(crawler)
        self.aggregator.memory_limit_mb = memory_ceiling_mb(crawler.settings)
        self.tasks = TaskTracker.from_crawler(crawler)
        if task_events:
            self.tasks.emit = self.hub.task
            self.hub.in_flight = self.tasks.started_events
        self._stages_started: set[str] = set()
        self._stages_complete: set[str] = set()

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
            task_events=settings.getbool("PROGRESS_TASK_EVENTS"),
        )
        connect = crawler.signals.connect
        connect(monitor.spider_opened, signal=signals.spider_opened)
        connect(monitor.spider_closed, signal=signals.spider_closed)
        connect(monitor.batch_stored, signal=batch_stored)
        if monitor.tasks.enabled:
            connect(monitor.request_reached_downloader, signal=signals.request_reached_downloader)
            connect(monitor.request_dropped, signal=signals.request_dropped)
            connect(monitor.response_received, signal=signals.response_received)
            connect(monitor.item_scraped, signal=signals.item_scraped)
            connect(monitor.item_dropped, signal=signals.item_dropped)
            connect(monitor.item_error, signal=signals.item_error)
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
        self._stage_events(snapshot)
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
        self.tasks.close()  # what is still in flight never will be: cancelled
        final = self.aggregator.finish(reason)
        if self.aggregator.listeners.count(self.snapshot):
            self.aggregator.listeners.remove(self.snapshot)
        self.hub.event("stage", stage="run", state="finished", reason=reason)
        if self.bar is not None:
            self.bar.close()
        if self.log_interval > 0:
            logger.info("Progress: %s", progress_line(final))
        self.hub.close(reason)

    # -- stage and batch events ------------------------------------------------------------

    def _stage_events(self, snapshot: Snapshot) -> None:
        """``stage`` events from the snapshot: started (pages done or the spider's stage),
        complete (nothing remaining of a known total), once each; once a second."""
        current = snapshot["stage"]
        for name, stage in snapshot["stages"].items():
            finished = stage["done"] + stage["failed"]
            if name not in self._stages_started and (finished or name == current):
                self._stages_started.add(name)
                self.hub.event("stage", stage=name, state="started")
            if (
                name in self._stages_started
                and name not in self._stages_complete
                and stage["remaining"] == 0
                and not stage["estimated"]
                and finished
            ):
                self._stages_complete.add(name)
                self.hub.event("stage", stage=name, state="complete", pages=finished)

    def batch_stored(
        self, products: int, sightings: int, seconds: float, dcl_records: int = 0, **_: Any
    ) -> None:
        self.hub.event(
            "batch",
            size=products + dcl_records + sightings,
            products=products,
            sightings=sightings,
            seconds=round(seconds, 4),
        )

    # -- task events (per request: O(1)) -----------------------------------------------------

    def request_reached_downloader(self, request: Request, **_: Any) -> None:
        self.tasks.start(request)

    def request_dropped(self, request: Request, **_: Any) -> None:
        self.tasks.dropped(request)

    def response_received(self, response: Response, request: Request, **_: Any) -> None:
        # a download no callback sees (robots.txt, engine.download()): done on arrival;
        # the others end once their callback ran (TaskEventsMiddleware)
        if request.callback is NO_CALLBACK:
            self.tasks.end(request, "done", response.url, status=response.status)

    def _end(self, request: Request | None, outcome: str, url: str | None, **fields: Any) -> None:
        """End the request's task; a request that never reached the downloader (no task)
        gets an event of its own, without an id."""
        if request is not None and TASK_ID in request.meta:
            self.tasks.end(request, outcome, url, **fields)
        else:
            self.hub.task(outcome, _stage(request), url, **fields)

    def item_scraped(self, item: Any, response: Any, **_: Any) -> None:
        if isinstance(response, Response):
            self.tasks.end(
                response.request,
                "done",
                response.url,
                status=response.status,
                name=getattr(item, "model", None),
                manufacturer=getattr(item, "manufacturer", None),
            )

    def item_dropped(self, item: Any, response: Any, exception: BaseException, **_: Any) -> None:
        if isinstance(response, Response):
            fields = {
                "name": getattr(item, "model", None),
                "manufacturer": getattr(item, "manufacturer", None),
                "reason": str(exception),
            }
            if not self.tasks.end(response.request, "invalid", response.url, **fields):
                # the page's task ended with an earlier item: this item still shows
                self.hub.task("invalid", _stage(response.request), response.url, **fields)

    def item_error(self, item: Any, response: Any, failure: Failure, **_: Any) -> None:
        if isinstance(response, Response):
            self.tasks.end(
                response.request,
                "failed",
                response.url,
                failure_class="item_error",
                reason=failure.getErrorMessage(),
            )

    def spider_error(self, failure: Failure, response: Any, **_: Any) -> None:
        self._end(
            getattr(response, "request", None),
            "failed",
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
        self._end(
            request,
            "retry",
            request.url,
            failure_class=failure_class,
            reason=reason,
            attempt=attempt,
            delay=round(delay, 2),
        )

    def dead_lettered(
        self,
        request: Request | None,
        url: str,
        stage: str | None,
        failure_class: str,
        reason: str,
        attempts: int,
        **_: Any,
    ) -> None:
        if failure_class == "invalid":
            return  # item_dropped reported it, with the product's name
        fields = {"failure_class": failure_class, "reason": reason, "attempts": attempts}
        if request is not None and TASK_ID in request.meta:
            self.tasks.end(request, "failed", url, **fields)
        else:
            self.hub.task("failed", stage, url, **fields)
