"""Adaptive concurrency: find how fast each domain can be crawled without hurting it.

Scrapy's AutoThrottle only stretches a delay from latency: it never changes
concurrency, ignores timeouts and connection errors, cannot react to a quick
429, and forgets what it learned when an idle slot is garbage-collected. This
extension replaces it. Per download slot (domain) a
:class:`~matter_crawler.adaptive.law.DomainController` sets both the
slot's concurrency and its delay from what comes back:

- good answers and their latency (``response_downloaded``);
- 429/503-class answers (``ADAPTIVE_TROUBLE_STATUSES``) and their Retry-After,
  which pauses the domain until it has passed;
- timeouts, resets and refused connections: no Scrapy signal carries download
  errors, so they come from the classified-retry middleware's
  ``request_retrying`` / ``request_dead_lettered``, whose ``kind`` argument
  (``timeout`` or ``connection``, from the exception's type) says which;
- the circuit breaker (``circuit_state_changed``): open drops the domain to its
  minimum;
- memory: every ``ADAPTIVE_MEMORY_CHECK_INTERVAL`` seconds the process's
  current resident memory is read from ``/proc/self/statm``; at the memory
  ceiling (``ADAPTIVE_MEMORY_LIMIT_MB``, and never above 80% of Scrapy's
  ``MEMUSAGE_LIMIT_MB`` when ``MEMUSAGE_ENABLED``) every domain's concurrency is
  halved and held, halved again if memory keeps climbing, and free to grow once
  memory is below 90% of the ceiling
  (:mod:`matter_crawler.adaptive.memory`).

Bounds come from the profile (``ADAPTIVE_MIN/MAX_CONCURRENCY``,
``ADAPTIVE_MIN/MAX_DELAY``), capped by ``CONCURRENT_REQUESTS`` and, as under
AutoThrottle, by an explicit ``CONCURRENT_REQUESTS_PER_DOMAIN`` (ceiling) and
``DOWNLOAD_DELAY`` (floor) (:mod:`matter_crawler.adaptive.limits`), and from
``ADAPTIVE_DOMAIN_LIMITS``, a politeness ceiling per domain (matching the domain
and its subdomains). The downloader enforces that ceiling on the slots itself
(:class:`~matter_crawler.core.downloader.CeilingSlot`), with or without this
extension; the controller only knows it as its bounds.

What it learned is kept per slot key, outside the slot: when Scrapy drops a slot
idle for 60 s and later makes a new one (with ``CONCURRENT_REQUESTS_PER_DOMAIN``
and ``DOWNLOAD_DELAY``), the learned values go back on it at its first request
(``request_reached_downloader``). With JOBDIR it is saved with the crawl's state
(:class:`~matter_crawler.core.session.CrawlSession`) and a resumed crawl starts where
the last one left off.

The slot's concurrency really holds thanks to
:class:`~matter_crawler.core.downloader.SlotConcurrencyDownloader`, which the extension
requires (it also lets it send a slot's queue when it raised the slot's concurrency:
``process_slot``).

It is enabled by ``ADAPTIVE_CONCURRENCY_ENABLED`` (on by default) and refuses to
start together with ``AUTOTHROTTLE_ENABLED``: two controllers writing the same
slot's delay would fight. To compare with stock AutoThrottle, turn this off.

Readable by other components: :func:`adaptive_state` (domain -> decisions) and
the stats ``adaptive/<domain>/concurrency``, ``.../delay``, ``.../increases``,
``.../decreases``, ``.../pauses``, ``.../ceiling``, ``.../latency_ms``,
``.../baseline_latency_ms``, ``.../ignored`` and ``.../tolerated`` (trouble
not acted on: from before the last cut, or within the site's background
failure rate), and ``adaptive/memory_pressure`` (times memory pressure
lowered a domain) and ``adaptive/rss_mb`` (last reading).
Per-response work is a few dictionary look-ups and arithmetic; stats are only
written when a decision changes something.
"""

from __future__ import annotations

import logging
from time import monotonic, time
from typing import TYPE_CHECKING, Any, Self

from scrapy import Request, signals
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.asyncio import call_later, create_looping_call
from scrapy.utils.misc import load_object

from ..core.downloader import SlotConcurrencyDownloader, domain_ceiling
from ..core.session import CrawlSession
from ..middlewares.retry import parse_retry_after
from ..signals import circuit_state_changed, request_dead_lettered, request_retrying
from .law import DomainController
from .limits import Limits, Tuning, limits_from_settings, require, tuning_from_settings
from .memory import MemoryAction, MemoryCeiling, memory_ceiling_mb, resident_memory_mb
from .states import Change, Trouble

if TYPE_CHECKING:
    from scrapy.core.downloader import Slot
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STATE_NAME = "adaptive_concurrency"
#: Request meta key: leave this request's outcome out of the controller's decisions.
DONT_ADJUST = "adaptive_dont_adjust"
#: ``kind`` of a retry-middleware signal -> the trouble it means (other kinds mean none).
FAILURE_TROUBLE = {"timeout": Trouble.TIMEOUT, "connection": Trouble.CONNECTION}


class AdaptiveConcurrency:
    def __init__(
        self,
        crawler: Crawler,
        limits: Limits,
        tuning: Tuning,
        *,
        domain_limits: dict[str, dict[str, Any]],
        trouble_statuses: frozenset[int],
        memory_limit_mb: float,
        memory_check_interval: float,
        debug: bool,
    ) -> None:
        self.crawler = crawler
        self.limits = limits
        self.tuning = tuning
        self.domain_limits = {name.lower(): value for name, value in domain_limits.items()}
        self.trouble_statuses = trouble_statuses
        self.memory_limit_mb = memory_limit_mb
        self.memory_ceiling = MemoryCeiling(memory_limit_mb)
        self.memory_check_interval = memory_check_interval
        self.log_level = logging.INFO if debug else logging.DEBUG
        self.download_timeout = crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        self.controllers: dict[str, DomainController] = {}
        # the downloader, and its own dict of live slots (key -> slot), once the spider is open
        self._downloader: SlotConcurrencyDownloader | None = None
        self._live_slots: dict[str, Slot] = {}
        # the slot object each key's learned values were last put on: a live slot that is
        # not this one is new (first request, or the old one was garbage-collected)
        self._applied_slots: dict[str, Slot] = {}
        self._resumers: dict[str, Any] = {}  # Retry-After pauses: key -> delayed call
        self._memory_timer: Any = None
        session = CrawlSession.from_crawler(crawler)
        now = monotonic()
        for key, saved in (session.restored_state(STATE_NAME) or {}).items():
            self.controllers[key] = DomainController.from_state(
                self.limits_for(key), tuning, saved, now=now
            )
            logger.info(
                "Adaptive concurrency for %s restored: %d at a time, %.2fs apart",
                key,
                self.controllers[key].concurrency,
                self.controllers[key].delay,
            )
        session.register_state(STATE_NAME, self.saved_state)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("ADAPTIVE_CONCURRENCY_ENABLED"):
            raise NotConfigured
        if settings.getbool("AUTOTHROTTLE_ENABLED"):
            raise ValueError(
                "ADAPTIVE_CONCURRENCY_ENABLED and AUTOTHROTTLE_ENABLED are both on: two "
                "controllers would fight over the same download slots. Set "
                "ADAPTIVE_CONCURRENCY_ENABLED=False to crawl with stock AutoThrottle."
            )
        if not issubclass(load_object(settings["DOWNLOADER"]), SlotConcurrencyDownloader):
            # Scrapy's own lets a slot exceed its concurrency (scrapy#6982)
            raise ValueError(
                "ADAPTIVE_CONCURRENCY_ENABLED needs DOWNLOADER = "
                '"matter_crawler.core.downloader.SlotConcurrencyDownloader" (or a subclass)'
            )
        require(settings, "ADAPTIVE_MEMORY_CHECK_INTERVAL", "ADAPTIVE_TROUBLE_STATUSES")
        extension = cls(
            crawler,
            limits_from_settings(settings),
            tuning_from_settings(settings),
            domain_limits=settings.getdict("ADAPTIVE_DOMAIN_LIMITS"),
            trouble_statuses=frozenset(
                int(status) for status in settings.getlist("ADAPTIVE_TROUBLE_STATUSES")
            ),
            memory_limit_mb=memory_ceiling_mb(settings),
            memory_check_interval=settings.getfloat("ADAPTIVE_MEMORY_CHECK_INTERVAL"),
            debug=settings.getbool("ADAPTIVE_DEBUG"),
        )
        connect = crawler.signals.connect
        connect(extension.request_reached_downloader, signal=signals.request_reached_downloader)
        connect(extension.response_downloaded, signal=signals.response_downloaded)
        connect(extension.request_retrying, signal=request_retrying)
        connect(extension.request_dead_lettered, signal=request_dead_lettered)
        connect(extension.circuit_state_changed, signal=circuit_state_changed)
        connect(extension.spider_opened, signal=signals.spider_opened)
        connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    @property
    def memory_pressure(self) -> bool:
        return self.memory_ceiling.pressure

    # -- per domain ----------------------------------------------------------------

    def limits_for(self, key: str) -> Limits:
        ceiling = domain_ceiling(self.domain_limits, key) if self.domain_limits else None
        if not ceiling:
            return self.limits
        return self.limits.narrowed(
            max_concurrency=ceiling.get("max_concurrency"), min_delay=ceiling.get("min_delay")
        )

    def controller(self, key: str) -> DomainController:
        controller = self.controllers.get(key)
        if controller is None:
            controller = DomainController(self.limits_for(key), self.tuning, now=monotonic())
            controller.memory_pressure = self.memory_pressure
            self.controllers[key] = controller
            self._record(key, controller)
        return controller

    def set_bounds(self, limits: Limits, tuning: Tuning) -> None:
        """New bounds for every domain (a profile switched live), each kept in its ceiling."""
        self.limits, self.tuning = limits, tuning
        for key, controller in self.controllers.items():
            bounds = controller.limits = self.limits_for(key)
            controller.tuning, old = tuning, controller.concurrency
            controller.concurrency = min(max(old, bounds.min_concurrency), bounds.max_concurrency)
            controller.delay = min(max(controller.delay, bounds.min_delay), bounds.max_delay)
            slot = self._slot(key)
            self._apply(key, controller, slot)
            if slot is not None and controller.concurrency > old:
                self._downloader.process_slot(slot)
            self._record(key, controller)

    def _slot(self, key: str) -> Slot | None:
        return self._live_slots.get(key)

    def _apply(self, key: str, controller: DomainController, slot: Slot | None) -> None:
        """Put the controller's values on the slot; while paused, wake up when the pause ends."""
        if slot is None:
            return
        now = monotonic()
        slot.concurrency = controller.slot_concurrency(now)
        slot.delay = controller.delay
        self._applied_slots[key] = slot
        if controller.is_paused(now) and key not in self._resumers:
            self._resumers[key] = call_later(controller.paused_until - now, self._resume, key)

    def _resume(self, key: str) -> None:
        self._resumers.pop(key, None)
        controller = self.controllers.get(key)
        slot = self._slot(key)
        if controller is None or slot is None:
            return
        self._apply(key, controller, slot)  # a pause extended meanwhile sets the next wake-up
        if key not in self._resumers:
            logger.log(self.log_level, "Adaptive %s: Retry-After pause over", key)
            self._downloader.process_slot(slot)  # its queue waited on us

    def _decided(self, key: str, controller: DomainController, change: Change | None) -> None:
        if change is None:
            return
        stats = self.crawler.stats
        if change.paused_until is not None:
            stats.inc_value(f"adaptive/{key}/pauses")
            resumer = self._resumers.pop(key, None)
            if resumer is not None:
                resumer.cancel()
        elif change.direction > 0:
            stats.inc_value(f"adaptive/{key}/increases")
        elif change.direction < 0:
            stats.inc_value(f"adaptive/{key}/decreases")
        slot = self._slot(key)
        self._apply(key, controller, slot)
        if slot is not None and change.concurrency > change.old_concurrency:
            self._downloader.process_slot(slot)  # use the room now
        self._record(key, controller)
        logger.log(
            self.log_level,
            "Adaptive %s: concurrency %d -> %d, delay %.2fs -> %.2fs (%s)",
            key,
            change.old_concurrency,
            change.concurrency,
            change.old_delay,
            change.delay,
            change.reason,
        )

    def _record(self, key: str, controller: DomainController) -> None:
        stats = self.crawler.stats
        stats.set_value(f"adaptive/{key}/concurrency", controller.concurrency)
        stats.set_value(f"adaptive/{key}/delay", round(controller.delay, 3))
        stats.set_value(f"adaptive/{key}/ceiling", controller.ceiling)
        stats.set_value(f"adaptive/{key}/ignored", controller.ignored)
        stats.set_value(f"adaptive/{key}/tolerated", controller.tolerated)
        if controller.latency is not None:
            stats.set_value(f"adaptive/{key}/latency_ms", round(controller.latency * 1000, 1))
        if controller.baseline is not None:
            stats.set_value(
                f"adaptive/{key}/baseline_latency_ms", round(controller.baseline * 1000, 1)
            )

    # -- signals ---------------------------------------------------------------------

    def request_reached_downloader(self, request: Request, **_: Any) -> None:
        key = request.meta.get("download_slot")
        if key is None:
            return
        slot = self._slot(key)
        if slot is not None and self._applied_slots.get(key) is not slot:
            # a new slot (first request, or the old one was garbage-collected): put back
            # what was learned instead of CONCURRENT_REQUESTS_PER_DOMAIN and DOWNLOAD_DELAY
            self._apply(key, self.controller(key), slot)

    def response_downloaded(self, response: Response, request: Request, **_: Any) -> None:
        meta = request.meta
        key = meta.get("download_slot")
        controller = self.controllers.get(key) if key is not None else None
        if controller is None or meta.get(DONT_ADJUST):
            return
        now = monotonic()
        latency = meta.get("download_latency")
        sent_at = now - latency if latency is not None else None
        if response.status in self.trouble_statuses:
            retry_after = parse_retry_after(response.headers.get(b"Retry-After"), time())
            if response.status == 429 or retry_after is not None:
                kind = Trouble.THROTTLED
            elif response.status == 408:
                kind = Trouble.TIMEOUT
            else:
                kind = Trouble.OVERLOAD
            change = controller.trouble(now, kind, sent_at=sent_at, retry_after=retry_after)
        elif latency is None or meta.get("playwright"):
            return  # a browser render's time is not the server's latency
        else:
            slot = self._slot(key)
            in_flight = len(slot.transferring) if slot is not None else controller.concurrency
            change = controller.success(now, latency, in_flight, sent_at)
        self._decided(key, controller, change)

    def request_retrying(self, request: Request, kind: str | None = None, **_: Any) -> None:
        self._failed(request, kind)

    def request_dead_lettered(
        self, request: Request | None, kind: str | None = None, **_: Any
    ) -> None:
        self._failed(request, kind)

    def _failed(self, request: Request | None, kind: str | None) -> None:
        # Only the retry middleware sends a kind, from the exception's type. Answers
        # (kind "response") were already seen in response_downloaded; dead letters of
        # other senders (an invalid item, an off-site link, robots.txt) say nothing of load.
        trouble = FAILURE_TROUBLE.get(kind or "")
        if request is None or trouble is None:
            return
        key = request.meta.get("download_slot")
        controller = self.controllers.get(key) if key is not None else None
        if controller is None or request.meta.get(DONT_ADJUST):
            return
        now = monotonic()
        if trouble is Trouble.TIMEOUT:
            # it went out a whole timeout ago: judge the level of then, not of now
            timeout = request.meta.get("download_timeout") or self.download_timeout
            change = controller.trouble(now, trouble, sent_at=now - timeout)
        else:
            change = controller.trouble(now, trouble)
        self._decided(key, controller, change)

    def circuit_state_changed(self, domain: str, new: str, **_: Any) -> None:
        controller = self.controller(domain)
        change = controller.breaker_changed(monotonic(), new)
        if change is not None:
            self._decided(domain, controller, change)
        elif new == "closed":
            self._apply(domain, controller, self._slot(domain))

    def spider_opened(self) -> None:
        self._downloader = self.crawler.engine.downloader
        self._live_slots = self._downloader.slots
        logger.info(
            "Adaptive concurrency: %d-%d requests at a time, %.2f-%.2f s apart per domain",
            self.limits.min_concurrency,
            self.limits.max_concurrency,
            self.limits.min_delay,
            self.limits.max_delay,
        )
        for key, controller in self.controllers.items():  # restored from JOBDIR
            self._record(key, controller)
        if self.memory_limit_mb > 0 and self.memory_check_interval > 0:
            self._memory_timer = create_looping_call(self.check_memory)
            # read at once too: a crawl that starts above its ceiling never grows
            self._memory_timer.start(self.memory_check_interval, now=True)

    def spider_closed(self) -> None:
        if self._memory_timer is not None and self._memory_timer.running:
            self._memory_timer.stop()
        for resumer in self._resumers.values():
            resumer.cancel()
        self._resumers.clear()
        for key, controller in self.controllers.items():
            self._record(key, controller)

    # -- memory --------------------------------------------------------------------

    def check_memory(self) -> None:
        """Every ``ADAPTIVE_MEMORY_CHECK_INTERVAL`` seconds: read memory and act on it."""
        self.memory_reading(resident_memory_mb())

    def memory_reading(self, rss_mb: float) -> None:
        """Act on one resident-memory reading (MB): lower, hold, or release concurrency."""
        self.crawler.stats.set_value("adaptive/rss_mb", round(rss_mb, 1))
        action = self.memory_ceiling.observe(rss_mb)
        if action is None:
            return
        if action is MemoryAction.LOWER:
            logger.warning(
                "Memory at %.0f MB (ceiling %.0f MB): lowering concurrency",
                rss_mb,
                self.memory_limit_mb,
            )
        else:
            logger.info("Memory back to %.0f MB: concurrency may grow again", rss_mb)
        now = monotonic()
        for key, controller in self.controllers.items():
            change = controller.memory(now, self.memory_pressure)
            if change is not None:
                self.crawler.stats.inc_value("adaptive/memory_pressure")
                self._decided(key, controller, change)

    # -- state ---------------------------------------------------------------------

    def saved_state(self) -> dict[str, Any]:
        return {key: controller.to_state() for key, controller in self.controllers.items()}

    def state(self) -> dict[str, dict[str, Any]]:
        now = monotonic()
        return {
            key: {
                "concurrency": controller.concurrency,
                "delay": controller.delay,
                "ceiling": controller.ceiling,
                "latency": controller.latency,
                "baseline_latency": controller.baseline,
                "paused": controller.is_paused(now),
                "breaker_open": controller.breaker_open,
                "memory_pressure": controller.memory_pressure,
                "increases": controller.increases,
                "decreases": controller.decreases,
                "min_concurrency": controller.limits.min_concurrency,
                "max_concurrency": controller.limits.max_concurrency,
                "min_delay": controller.limits.min_delay,
            }
            for key, controller in self.controllers.items()
        }


def adaptive_state(crawler: Crawler) -> dict[str, dict[str, Any]]:
    """Every domain's adaptive decisions in a running crawl ({} without the extension)."""
    try:
        extension = crawler.get_extension(AdaptiveConcurrency)
    except RuntimeError:  # the extension manager does not exist yet
        return {}
    return extension.state() if extension is not None else {}
