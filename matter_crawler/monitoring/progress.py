"""The crawl's progress in memory: per-stage counts, smoothed rates, an ETA, snapshots.

One :class:`ProgressAggregator` per crawl (:meth:`ProgressAggregator.from_crawler`),
shared by the progress and Prometheus extensions. It takes a snapshot every
``PROGRESS_INTERVAL`` seconds: it asks the spider for its counts
(``spider.progress()``, duck-typed: a spider without it is measured by its
responses and queue), reads the stats and the engine, feeds the rates and the
ETA, and hands the snapshot to its listeners. Nothing here runs per request.

Stages of ``matter_products``: ``list`` (listing pages) and ``detail`` (product
pages), and at the end of a full run ``delist`` (listing pages read again and
confirmation requests for the products the listing did not show). While
listing pages are still being read the number of product pages is not known
yet; it is extrapolated from the product pages wanted per listing page so far
(``detail.estimated`` is then true). A spider that counts its own stages returns
them under ``"stages"`` (:func:`spider_stages`; the ``dcl`` spider).

Each snapshot also says where the crawl is held back: the process's CPU (% of one
core, from :func:`os.times`), the reactor thread's CPU demand (running or waiting
for a CPU, from ``/proc/self/schedstat``), bytes received per second (Scrapy's
``downloader/response_bytes``), the database writer's busy share (the batch
store's ``store/batch_seconds_total``), each over the last
:data:`RESOURCE_WINDOW` seconds, the queues per stage, and the verdict of
:func:`~matter_crawler.monitoring.bottleneck.bottleneck`.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import monotonic, time
from typing import TYPE_CHECKING, Any

from scrapy.utils.asyncio import create_looping_call

from ..adaptive.memory import resident_memory_bytes
from .bottleneck import bottleneck, domain_views
from .crawlstate import (
    breaker_states,
    domain_slots,
    engine_paused,
    requests_in_flight,
    scheduler_depth,
    stage_queues,
)
from .eta import EtaEstimator, SmoothedRate
from .usage import WindowedRate, process_cpu_seconds, reactor_thread_demand_seconds

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

Snapshot = dict[str, Any]

_per_crawler: weakref.WeakKeyDictionary[Crawler, ProgressAggregator] = weakref.WeakKeyDictionary()

#: Seconds over which CPU, bytes/s and the writer's busy share are measured.
RESOURCE_WINDOW = 5.0
#: Domain -> the adaptive controller's decisions ({} without the controller).
AdaptiveState = Callable[[], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class StageProgress:
    """Pages of one stage: the expected total (maybe extrapolated), done and failed."""

    total: float | None
    done: int
    failed: int
    extrapolated: float = 0.0  # the part of ``total`` that is a guess

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> float | None:
        return None if self.total is None else max(0.0, self.total - self.finished)


def matter_stages(counts: dict[str, Any]) -> dict[str, StageProgress]:
    """The ``list`` and ``detail`` stages from ``MatterProductsSpider.progress()``."""
    list_total = counts.get("list_total")
    list_done = int(counts.get("list_done") or 0)
    list_failed = int(counts.get("list_failed") or 0)
    detail_known = int(counts.get("detail_total") or 0)
    detail_done = int(counts.get("detail_done") or 0)
    detail_failed = int(counts.get("detail_failed") or 0)
    extrapolated = 0.0
    if list_total is not None:
        list_total = max(int(list_total), list_done + list_failed)
        pages_left = list_total - list_done - list_failed
        if pages_left > 0 and list_done > 0 and counts.get("stage") != "detail":
            extrapolated = detail_known / list_done * pages_left
    detail_total = None if list_total is None else detail_known + extrapolated
    if detail_total is not None:
        detail_total = max(detail_total, detail_done + detail_failed)
    stages = {
        "list": StageProgress(list_total, list_done, list_failed),
        "detail": StageProgress(detail_total, detail_done, detail_failed, extrapolated),
    }
    if "delist_total" in counts:  # the end of a full run: page 1 again, confirmations
        delist_done = int(counts.get("delist_done") or 0)
        delist_failed = int(counts.get("delist_failed") or 0)
        delist_total = max(int(counts["delist_total"] or 0), delist_done + delist_failed)
        stages["delist"] = StageProgress(delist_total, delist_done, delist_failed)
    return stages


def spider_stages(stages: dict[str, dict[str, Any]]) -> dict[str, StageProgress]:
    """Stages a spider counts itself (``progress()`` returning ``{"stages": {name: {"total",
    "done", "failed", "extrapolated"}}}``, e.g. the ``dcl`` spider), in its order."""
    progress = {}
    for name, counts in stages.items():
        done, failed = int(counts.get("done") or 0), int(counts.get("failed") or 0)
        total = counts.get("total")
        if total is not None:
            total = max(float(total), done + failed)
        progress[name] = StageProgress(
            total, done, failed, float(counts.get("extrapolated") or 0.0)
        )
    return progress


def generic_stages(crawler: Crawler) -> dict[str, StageProgress]:
    """Any spider: pages answered so far, and pages queued or in flight still to come."""
    stats = crawler.stats
    done = int(stats.get_value("response_received_count", 0))
    failed = int(stats.get_value("downloader/exception_count", 0))
    queued, delayed = scheduler_depth(crawler)
    pending = queued + delayed + requests_in_flight(crawler)
    return {"pages": StageProgress(done + failed + pending, done, failed)}


class ProgressAggregator:
    """Counts, rates and ETA of one crawl; the latest snapshot for everyone to read."""

    def __init__(self, crawler: Crawler, interval: float, window: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self.eta = EtaEstimator(window, tick=interval)
        self._stage_rates: dict[str, SmoothedRate] = {}
        self._window = window
        self.item_rate = SmoothedRate(window)
        self.latest: Snapshot | None = None
        self.listeners: list[Callable[[Snapshot], None]] = []
        self.finished = False
        self._started: float | None = None
        self._started_epoch: float | None = None
        self._working = False  # the rates start with the first finished page
        self._timer: Any = None
        # the progress extension plugs in the controller and the memory ceiling
        self.adaptive_state: AdaptiveState = dict
        self.memory_limit_mb = 0.0
        self._cpu = WindowedRate(RESOURCE_WINDOW)
        self._demand = WindowedRate(RESOURCE_WINDOW)
        self._bytes = WindowedRate(RESOURCE_WINDOW)
        self._writer = WindowedRate(RESOURCE_WINDOW)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressAggregator:
        """The crawl's aggregator (created on first use)."""
        aggregator = _per_crawler.get(crawler)
        if aggregator is None:
            settings = crawler.settings
            aggregator = cls(
                crawler,
                interval=max(0.1, settings.getfloat("PROGRESS_INTERVAL")),
                window=max(1.0, settings.getfloat("PROGRESS_RATE_WINDOW")),
            )
            _per_crawler[crawler] = aggregator
        return aggregator

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start taking snapshots (idempotent; called by each extension at spider_opened)."""
        if self._timer is not None or self.finished:
            return
        self._started = monotonic()
        self._started_epoch = time()
        self._timer = create_looping_call(self.tick)
        # not now: every extension's spider_opened (which add listeners) runs first
        self._timer.start(self.interval, now=False)

    def finish(self, reason: str) -> Snapshot:
        """Stop the timer and publish the final snapshot (idempotent)."""
        if self.finished and self.latest is not None:
            return self.latest
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None
        self.finished = True
        snapshot = self.take_snapshot(reason=reason)
        self._publish(snapshot)
        return snapshot

    def tick(self) -> None:
        self._publish(self.take_snapshot())

    def _publish(self, snapshot: Snapshot) -> None:
        for listener in list(self.listeners):
            try:
                listener(snapshot)
            except Exception:
                logger.exception("A progress listener failed")

    # -- the snapshot --------------------------------------------------------------------

    def stages(self) -> dict[str, StageProgress]:
        spider = self.crawler.spider
        progress = getattr(spider, "progress", None)
        if callable(progress):
            counts = progress()
            if "stages" in counts:
                return spider_stages(counts["stages"])
            return matter_stages(counts)
        return generic_stages(self.crawler)

    def take_snapshot(self, reason: str | None = None) -> Snapshot:
        """Read everything, update rates and ETA, and return (and keep) a JSON-safe dict."""
        now = monotonic()
        if self._started is None:
            self._started, self._started_epoch = now, time()
        crawler = self.crawler
        spider = crawler.spider
        stats = crawler.stats
        stages = self.stages()
        finished_pages = sum(stage.finished for stage in stages.values())
        if finished_pages and not self._working:
            self._working = True  # before this, time went into planning and robots.txt
        # paused by the live control: the paused span is not slowness, so the rates skip it
        paused = engine_paused(crawler)
        if self._working:
            feed = "hold" if paused else "update"
            getattr(self.eta, feed)(now, finished_pages)
            getattr(self.item_rate, feed)(now, stats.get_value("item_scraped_count", 0))
            for name, stage in stages.items():
                rate = self._stage_rates.get(name)
                if rate is None:
                    rate = self._stage_rates[name] = SmoothedRate(self._window)
                getattr(rate, feed)(now, stage.finished)

        remaining_parts = [stage.remaining for stage in stages.values()]
        known = None not in remaining_parts
        remaining = sum(part for part in remaining_parts if part is not None)
        extrapolated = sum(stage.extrapolated for stage in stages.values())
        done_reason = reason == "finished"
        if done_reason:
            progress_share: float | None = 1.0
            eta_seconds, band = 0.0, 0.0
        elif known:
            total = finished_pages + remaining
            progress_share = finished_pages / total if total else None
            estimate = self.eta.estimate(remaining, extrapolated)
            eta_seconds, band = estimate.seconds, estimate.band
        else:
            progress_share, eta_seconds, band = None, None, None

        queued, delayed = scheduler_depth(crawler)
        in_flight = requests_in_flight(crawler)
        slots = domain_slots(crawler)
        breakers = breaker_states(crawler)
        adaptive = self.adaptive_state()
        rss = resident_memory_bytes()
        cpu = self._cpu.update(now, process_cpu_seconds())
        cpu_percent = None if cpu is None else round(cpu * 100, 1)
        demand_seconds = reactor_thread_demand_seconds()
        demand = None if demand_seconds is None else self._demand.update(now, demand_seconds)
        cpu_demand = None if demand is None else round(demand * 100, 1)
        received = self._bytes.update(now, stats.get_value("downloader/response_bytes", 0))
        writer_busy = self._writer.update(now, stats.get_value("store/batch_seconds_total", 0.0))
        verdict = bottleneck(
            cpu_percent=cpu_percent,
            cpu_demand_percent=cpu_demand,
            writer_busy=writer_busy,
            rss_mb=rss / 2**20,
            memory_limit_mb=self.memory_limit_mb,
            memory_pressure=any(state.get("memory_pressure") for state in adaptive.values()),
            in_flight=in_flight,
            queued=queued,
            delayed=delayed,
            domains=domain_views(slots, adaptive, breakers),
        )
        epoch = time()
        stage_name = getattr(spider, "stage", None)
        counts_stage = stage_name() if callable(stage_name) else "crawl"
        snapshot: Snapshot = {
            "time": epoch,
            "started_at": self._started_epoch,
            "elapsed": now - self._started,
            "spider": getattr(spider, "name", None),
            "job": job_label(spider),
            "stage": "done" if done_reason else counts_stage,
            "mode": getattr(getattr(spider, "plan", None), "mode", None),
            "finished": reason is not None,
            "paused": paused,
            "reason": reason,
            "progress": progress_share,
            "eta": {
                "seconds": eta_seconds,
                "band": band,
                "finish_at": None if eta_seconds is None else epoch + eta_seconds,
            },
            "rates": {
                "pages": self.eta.rate,
                "items": self.item_rate.rate,
            },
            "stages": {
                name: {
                    "total": None if stage.total is None else round(stage.total),
                    "done": stage.done,
                    "failed": stage.failed,
                    "remaining": None if stage.remaining is None else round(stage.remaining),
                    "estimated": stage.extrapolated > 0,
                    "rate": self._stage_rates[name].rate if name in self._stage_rates else None,
                }
                for name, stage in stages.items()
            },
            "items": {
                "scraped": stats.get_value("item_scraped_count", 0),
                "stored": sum(
                    stats.get_value(f"store/products_{kind}", 0)
                    for kind in ("new", "changed", "unchanged")
                ),
                "invalid": stats.get_value("validation/invalid", 0),
            },
            "requests": {
                "sent": stats.get_value("downloader/request_count", 0),
                "in_flight": in_flight,
                "queued": queued,
                "delayed": delayed,
                "retries": stats.get_value("retry/count", 0),
                "dead_letters": stats.get_value("dead_letters/count", 0),
            },
            "queues": stage_queues(crawler),
            "breakers": breakers,
            "domains": {
                domain: {
                    "concurrency": slot.concurrency,
                    "delay": slot.delay,
                    "active": slot.active,
                }
                for domain, slot in slots.items()
            },
            "memory_bytes": rss,
            "cpu_percent": cpu_percent,
            "cpu_demand_percent": cpu_demand,
            "bytes_per_second": None if received is None else round(received),
            "writer_busy": None if writer_busy is None else round(writer_busy, 3),
            "bottleneck": verdict.as_dict(),
        }
        self.latest = snapshot
        return snapshot

    def current(self) -> Snapshot:
        """The latest snapshot (taken now if there is none yet)."""
        return self.latest if self.latest is not None else self.take_snapshot()


def job_label(spider: Any) -> str:
    """scrapyd's job id (the ``_job`` spider argument), else ``local-<pid>``."""
    job = getattr(spider, "_job", None)
    if job:
        return str(job)
    return f"local-{os.getpid()}"
