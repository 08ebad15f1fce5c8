"""The crawl's Prometheus metrics, in a registry of its own.

A per-crawl :class:`~prometheus_client.CollectorRegistry` (never the global
default), so two crawlers in one process export separate numbers. Every metric
carries ``spider`` and ``job`` (scrapyd's ``_job``, else ``local-<pid>``).

Counters and histograms are updated from signals, O(1) each: a label child is
looked up once per (domain, stage, ...) combination and cached. Gauges are not
updated at all: :class:`CrawlStateCollector` reads them from the engine, the
breakers, the adaptive controller and the progress aggregator when Prometheus
scrapes. The adaptive controller's state comes through a callable its caller
passes (the exporter extension passes the controller's ``adaptive_state``): this
package imports no extension, so the extensions can import it.

Counters with a closed set of label values (retries and dead letters by stage
and failure class) start at zero for every combination as soon as the domain is
first requested, so a dashboard shows "none yet" rather than "no data".

No ``*_created`` series: :class:`CrawlRegistry` drops them from this registry's
output only. prometheus-client 0.26 has no per-registry switch, and its
``disable_created_metrics()`` is process-global: it would change the output of
every other registry in the Scrapy process (the default one, another crawler's,
a user's exporter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from time import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..adaptive.memory import resident_memory_bytes
from ..middlewares.breaker import CircuitState
from ..middlewares.classify import FailureClass
from .bottleneck import VERDICTS
from .crawlstate import (
    breaker_states,
    domain_slots,
    requests_in_flight,
    scheduler_depth,
)

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from .progress import ProgressAggregator

PREFIX = "matter_crawler"
STAGES = ("list", "detail")
#: Failure classes of the classified retry, plus those the spider and validation use.
FAILURE_CLASSES = (*(member.value for member in FailureClass), "invalid", "offsite", "ignored")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OTHER_STAGE = "other"
#: Domain -> the adaptive controller's decisions for it ({} without the controller).
AdaptiveState = Callable[[], Mapping[str, Mapping[str, Any]]]
#: Metric types whose client-side children export a ``_created`` sample.
_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


class CrawlRegistry(CollectorRegistry):
    """A registry whose output has no ``*_created`` series (for this registry alone).

    Prometheus 2.x stores ``_created`` as one more gauge per counter and histogram
    child, doubling the series for nothing a dashboard uses. Every reader of the
    registry (``/metrics`` in both formats, the Pushgateway push) goes through
    :meth:`collect`, so dropping the samples here covers them all.
    """

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            if metric.type in _WITH_CREATED:
                created = metric.name + "_created"
                metric.samples = [sample for sample in metric.samples if sample.name != created]
            yield metric


class CrawlMetrics:
    """Counters and histograms of one crawl, and the label children it updates."""

    def __init__(self, spider: str, job: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CrawlRegistry()
        self.labels = {"spider": spider, "job": job}
        base = ("spider", "job")
        reg = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests sent to the download handler (after the downloader middlewares).",
            (*base, "domain", "stage"),
            registry=reg,
        )
        self.responses = Counter(
            f"{PREFIX}_responses",
            "HTTP responses received, before any middleware handles them.",
            (*base, "domain", "stage", "status"),
            registry=reg,
        )
        self.download_latency = Histogram(
            f"{PREFIX}_download_latency_seconds",
            "Time from sending a request to receiving its response headers.",
            (*base, "domain", "stage"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.items_stored = Counter(
            f"{PREFIX}_items_stored",
            "Items written to the database (kind: product or sighting).",
            (*base, "kind"),
            registry=reg,
        )
        self.products_new = Counter(
            f"{PREFIX}_products_new", "Products stored for the first time.", base, registry=reg
        )
        self.products_changed = Counter(
            f"{PREFIX}_products_changed",
            "Stored products whose fields changed.",
            base,
            registry=reg,
        )
        self.items_invalid = Counter(
            f"{PREFIX}_items_invalid", "Items that failed validation.", base, registry=reg
        )
        self.retries = Counter(
            f"{PREFIX}_retries",
            "Requests retried, by failure class.",
            (*base, "domain", "stage", "failure_class"),
            registry=reg,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Requests and items that failed for good (the dead-letter queue).",
            (*base, "domain", "stage", "failure_class"),
            registry=reg,
        )
        self.circuit_changes = Counter(
            f"{PREFIX}_circuit_state_changes",
            "Circuit-breaker transitions, by the state entered.",
            (*base, "domain", "state"),
            registry=reg,
        )
        self.batch_write = Histogram(
            f"{PREFIX}_batch_write_seconds",
            "Time to write one batch of items to the database.",
            base,
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self._request_children: dict[tuple[str, str], Counter] = {}
        self._domains: set[str] = set()
        self._response_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._stored = {
            kind: self.items_stored.labels(spider, job, kind) for kind in ("product", "sighting")
        }
        self._new = self.products_new.labels(spider, job)
        self._changed = self.products_changed.labels(spider, job)
        self._invalid = self.items_invalid.labels(spider, job)
        self._batch = self.batch_write.labels(spider, job)

    def _first_seen(self, domain: str) -> None:
        """Zero the domain's retry and dead-letter counters (once per domain)."""
        self._domains.add(domain)
        base = self.labels.values()
        for stage in STAGES:
            for failure_class in FAILURE_CLASSES:
                self.retries.labels(*base, domain, stage, failure_class)
                self.dead_letters.labels(*base, domain, stage, failure_class)

    # -- updates (one per signal) ------------------------------------------------------

    def request_sent(self, domain: str, stage: str) -> None:
        child = self._request_children.get((domain, stage))
        if child is None:
            if domain not in self._domains:
                self._first_seen(domain)
            child = self._request_children[domain, stage] = self.requests.labels(
                *self.labels.values(), domain, stage
            )
        child.inc()

    def response_received(
        self, domain: str, stage: str, status: int, latency: float | None
    ) -> None:
        children = self._response_children.get((domain, stage, status))
        if children is None:
            base = self.labels.values()
            children = self._response_children[domain, stage, status] = (
                self.responses.labels(*base, domain, stage, str(status)),
                self.download_latency.labels(*base, domain, stage),
            )
        children[0].inc()
        if latency is not None:
            children[1].observe(latency)

    def batch_stored(
        self, products: int, sightings: int, new: int, changed: int, seconds: float
    ) -> None:
        self._stored["product"].inc(products)
        self._stored["sighting"].inc(sightings)
        self._new.inc(new)
        self._changed.inc(changed)
        self._batch.observe(seconds)

    def item_invalid(self) -> None:
        self._invalid.inc()

    def retried(self, domain: str, stage: str, failure_class: str) -> None:
        self.retries.labels(*self.labels.values(), domain, stage, failure_class).inc()

    def dead_lettered(self, domain: str, stage: str, failure_class: str) -> None:
        self.dead_letters.labels(*self.labels.values(), domain, stage, failure_class).inc()

    def circuit_changed(self, domain: str, state: str) -> None:
        self.circuit_changes.labels(*self.labels.values(), domain, state).inc()


class CrawlStateCollector(Collector):
    """Gauges read at scrape time: engine, breakers, adaptive controller, progress."""

    def __init__(
        self,
        crawler: Crawler,
        progress: ProgressAggregator,
        labels: dict[str, str],
        adaptive_state: AdaptiveState = dict,
    ) -> None:
        self.crawler = crawler
        self.progress = progress
        self.adaptive_state = adaptive_state
        self.names = list(labels)
        self.values = list(labels.values())
        self.started = time()

    def _gauge(
        self, name: str, documentation: str, extra: tuple[str, ...] = ()
    ) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=[*self.names, *extra])

    def describe(self) -> list[Metric]:
        return [family for family in self._families(empty=True)]

    def collect(self) -> Iterator[Metric]:
        yield from self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        values = self.values
        crawler = self.crawler

        start = self._gauge("start_time_seconds", "When the crawl started, in Unix time.")
        in_flight = self._gauge("requests_in_flight", "Requests in the downloader now.")
        queued = self._gauge(
            "scheduler_queued_requests", "Requests waiting in the scheduler's queues."
        )
        delayed = self._gauge(
            "scheduler_delayed_requests",
            "Requests the scheduler holds until their not-before time (retries, breakers).",
        )
        concurrency = self._gauge(
            "domain_concurrency", "The download slot's concurrency limit now.", ("domain",)
        )
        delay = self._gauge(
            "domain_delay_seconds", "The download slot's delay between requests.", ("domain",)
        )
        active = self._gauge(
            "domain_active_requests", "Requests in the domain's download slot.", ("domain",)
        )
        circuit = self._gauge(
            "circuit_state",
            "The domain's circuit breaker: 1 for its current state, 0 for the others.",
            ("domain", "state"),
        )
        progress = self._gauge(
            "progress_ratio",
            "Share of the crawl's pages done (stage total: the whole crawl).",
            ("stage",),
        )
        pages = self._gauge(
            "stage_pages",
            "Pages per stage: done, failed, and remaining (estimated while listing).",
            ("stage", "state"),
        )
        eta = self._gauge("eta_seconds", "Estimated seconds until the crawl finishes.")
        eta_band = self._gauge(
            "eta_uncertainty_seconds", "Half-width of the ETA's uncertainty band."
        )
        memory = self._gauge("memory_resident_bytes", "Resident memory of the crawl process.")
        held_back = self._gauge(
            "bottleneck",
            "Where the crawl is held back: 1 for the current verdict, 0 for the others "
            "(the reason is in /status).",
            ("verdict",),
        )
        adaptive_families = tuple(self._adaptive_families())
        families = (start, in_flight, queued, delayed, concurrency, delay, active, circuit,
                    progress, pages, eta, eta_band, memory, held_back)  # fmt: skip
        if empty:
            yield from families
            yield from adaptive_families
            return

        start.add_metric(values, self.started)
        in_flight.add_metric(values, requests_in_flight(crawler))
        waiting, held = scheduler_depth(crawler)
        queued.add_metric(values, waiting)
        delayed.add_metric(values, held)
        for domain, slot in domain_slots(crawler).items():
            concurrency.add_metric([*values, domain], slot.concurrency)
            delay.add_metric([*values, domain], slot.delay)
            active.add_metric([*values, domain], slot.active)
        for domain, state in breaker_states(crawler).items():
            for candidate in CircuitState:
                circuit.add_metric([*values, domain, candidate.value], float(state == candidate))
        snapshot = self.progress.current()
        if snapshot.get("progress") is not None:
            progress.add_metric([*values, "total"], snapshot["progress"])
        for name, stage in snapshot["stages"].items():
            total = stage["total"]
            if total:
                share = (stage["done"] + stage["failed"]) / total
                progress.add_metric([*values, name], min(1.0, share))
            pages.add_metric([*values, name, "done"], stage["done"])
            pages.add_metric([*values, name, "failed"], stage["failed"])
            if stage["remaining"] is not None:
                pages.add_metric([*values, name, "remaining"], stage["remaining"])
        if snapshot["eta"]["seconds"] is not None:
            eta.add_metric(values, snapshot["eta"]["seconds"])
            eta_band.add_metric(values, snapshot["eta"]["band"] or 0.0)
        memory.add_metric(values, resident_memory_bytes())
        verdict = snapshot.get("bottleneck", {}).get("verdict")
        for candidate in VERDICTS:
            held_back.add_metric([*values, candidate], float(verdict == candidate))
        yield from families
        yield from self._adaptive(*adaptive_families)

    def _adaptive_families(self) -> Iterator[Metric]:
        domain = ("domain",)
        yield self._gauge(
            "adaptive_concurrency",
            "The adaptive controller's concurrency for the domain (the slot gets 0 while paused).",
            domain,
        )
        yield self._gauge(
            "adaptive_concurrency_ceiling",
            "The lowest concurrency known to bring trouble (absent while none is known).",
            domain,
        )
        yield self._gauge(
            "adaptive_concurrency_bound",
            "The controller's concurrency bounds for the domain (bound: min, max).",
            ("domain", "bound"),
        )
        yield self._gauge(
            "adaptive_paused",
            "1 while the domain waits out a Retry-After, else 0.",
            domain,
        )
        yield self._gauge(
            "adaptive_memory_pressure",
            "1 while memory pressure holds the domain's concurrency down, else 0.",
            domain,
        )
        yield self._gauge(
            "adaptive_latency_seconds",
            "The domain's smoothed latency, and its baseline (kind: smoothed, baseline).",
            ("domain", "kind"),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_adaptive_adjustments",
            "The controller's decisions for the domain (direction: increase, decrease).",
            labels=[*self.names, "domain", "direction"],
        )

    def _adaptive(
        self,
        concurrency: GaugeMetricFamily,
        ceiling: GaugeMetricFamily,
        bound: GaugeMetricFamily,
        paused: GaugeMetricFamily,
        memory_pressure: GaugeMetricFamily,
        latency: GaugeMetricFamily,
        adjustments: CounterMetricFamily,
    ) -> Iterator[Metric]:
        values = self.values
        for domain, state in self.adaptive_state().items():
            labels = [*values, domain]
            concurrency.add_metric(labels, state["concurrency"])
            if state["ceiling"] is not None:
                ceiling.add_metric(labels, state["ceiling"])
            bound.add_metric([*labels, "min"], state["min_concurrency"])
            bound.add_metric([*labels, "max"], state["max_concurrency"])
            paused.add_metric(labels, float(state["paused"]))
            memory_pressure.add_metric(labels, float(state["memory_pressure"]))
            for kind, key in (("smoothed", "latency"), ("baseline", "baseline_latency")):
                if state[key] is not None:
                    latency.add_metric([*labels, kind], state[key])
            adjustments.add_metric([*labels, "increase"], state["increases"])
            adjustments.add_metric([*labels, "decrease"], state["decreases"])
        yield from (concurrency, ceiling, bound, paused, memory_pressure, latency, adjustments)
