"""A Downloader whose per-slot concurrency holds, under a per-domain politeness ceiling.

Scrapy 2.14 to 2.19 let one domain reach ``CONCURRENT_REQUESTS`` open requests
whatever ``CONCURRENT_REQUESTS_PER_DOMAIN`` says when ``DOWNLOAD_DELAY`` is 0
(scrapy#6982): ``Downloader._process_queue`` pops the slot queue in a loop
while ``free_transfer_slots()`` > 0, but a popped request only enters
``slot.transferring`` once its scheduled coroutine starts running, so the
loop never sees the slot fill up. Counting the request as transferring at the
moment it is popped restores the limit; ``_download`` adds it again (a set, so
a no-op) and removes it when the transfer ends, as before.

The politeness ceiling ``ADAPTIVE_DOMAIN_LIMITS`` (``{"csa-iot.org":
{"max_concurrency": 3, "min_delay": 1.0}}``: the domain and its subdomains) is
enforced here, so it holds whatever sets the slots' concurrency and delay: the
adaptive-concurrency extension, stock AutoThrottle (whose only floor is the
global ``DOWNLOAD_DELAY``: it lowers a slot's delay toward latency / target
concurrency), ``DOWNLOAD_SLOTS`` or the profile's fixed values. A slot under a
ceiling is a :class:`CeilingSlot`: its ``concurrency`` and ``delay`` are clamped
to the ceiling whenever they are set, and its jittered delay is floored, so it
never has more requests out, nor sends them closer together, than the ceiling
allows.

Send gates (:data:`SendGate`, ``send_gates``) are asked about each request as its slot
sends it: a downloader middleware's ``process_request`` runs when the request enters the
slot's queue, which may be long before it leaves (behind the slot's concurrency and
delay), and the circuit breaker must be able to hold what its domain's queue holds when
it opens.

Enable with ``DOWNLOADER = "matter_crawler.core.downloader.SlotConcurrencyDownloader"``
(the project's default).
``tests/crawl/test_crawl.py::test_per_domain_concurrency_holds_at_the_server`` checks the
limit from the simulated site's side (its highest number of requests open at once);
``tests/crawl/test_adaptive.py`` checks the ceiling the same way, with
fixed settings and with AutoThrottle.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.core.downloader import Downloader, Slot
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import _schedule_coro
from scrapy.utils.httpobj import urlparse_cached
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

#: Asked about each request popped from its slot's queue, just before it is sent: an
#: exception returned fails the request instead (as if its download had raised it), so
#: a downloader middleware's ``process_exception`` can hand back what to do with it.
SendGate = Callable[[Request], Exception | None]


def domain_ceiling(limits: dict[str, dict[str, Any]], host: str) -> dict[str, Any] | None:
    """The ``ADAPTIVE_DOMAIN_LIMITS`` entry for a host: the host or a parent domain."""
    host = host.lower().rstrip(".")
    while host:
        if host in limits:
            return limits[host]
        _, _, host = host.partition(".")
    return None


# Scrapy's Slot is a slotted dataclass: its fields are member descriptors, which the
# properties of CeilingSlot wrap.
_SLOT_CONCURRENCY = Slot.__dict__["concurrency"]
_SLOT_DELAY = Slot.__dict__["delay"]


class CeilingSlot(Slot):
    """A download slot that never goes faster than its domain's politeness ceiling.

    Its ``concurrency`` and ``delay`` are clamped when written, so whoever sets them
    (AutoThrottle computes its next delay from the current one) and whoever reads
    them (the monitoring) sees the values in force; the delay's jitter is floored too.
    """

    __slots__ = ("max_concurrency", "min_delay")

    def __init__(
        self,
        concurrency: int,
        delay: float,
        jitter: float,
        *,
        max_concurrency: int | None,
        min_delay: float,
    ) -> None:
        self.max_concurrency = max_concurrency  # None: the ceiling sets only a delay
        self.min_delay = min_delay
        super().__init__(concurrency, delay, jitter)

    @property  # type: ignore[override]
    def concurrency(self) -> int:
        return _SLOT_CONCURRENCY.__get__(self)

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if self.max_concurrency is not None:
            value = min(value, self.max_concurrency)
        _SLOT_CONCURRENCY.__set__(self, value)

    @property  # type: ignore[override]
    def delay(self) -> float:
        return _SLOT_DELAY.__get__(self)

    @delay.setter
    def delay(self, value: float) -> None:
        _SLOT_DELAY.__set__(self, max(value, self.min_delay))

    def download_delay(self) -> float:
        # the floor after the jitter: "1 s apart" means at least 1 s between two requests
        return max(super().download_delay(), self.min_delay)


class SlotConcurrencyDownloader(Downloader):
    """Scrapy's Downloader with the slot's transfer count taken when a request is popped,
    and slots of domains under a politeness ceiling made :class:`CeilingSlot`."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        #: see :data:`SendGate`; the circuit breaker adds one (a request admitted while
        #: the breaker was closed may still wait in its slot when the breaker opens)
        self.send_gates: list[SendGate] = []
        self.domain_limits = {
            name.lower(): value
            for name, value in self.settings.getdict("ADAPTIVE_DOMAIN_LIMITS").items()
        }

    def ceiling_for(self, key: str, request: Request) -> dict[str, Any] | None:
        """The politeness ceiling of a slot: by its key (the host name, unless
        ``download_slot`` or ``CONCURRENT_REQUESTS_PER_IP`` made it something
        else), else by the host name of its first request."""
        if not self.domain_limits:
            return None
        return domain_ceiling(self.domain_limits, key) or domain_ceiling(
            self.domain_limits, urlparse_cached(request).hostname or ""
        )

    def _get_slot(self, request: Request) -> tuple[str, Slot]:  # type: ignore[override]
        key = self.get_slot_key(request)
        if key in self.slots:
            return key, self.slots[key]
        key, slot = super()._get_slot(request)  # Scrapy's own defaults and DOWNLOAD_SLOTS
        ceiling = self.ceiling_for(key, request)
        if ceiling:
            top = ceiling.get("max_concurrency")
            slot = self.slots[key] = CeilingSlot(
                slot.concurrency,
                slot.delay,
                slot.jitter,
                max_concurrency=None if top is None else max(1, int(top)),
                min_delay=float(ceiling.get("min_delay") or 0.0),
            )
        return key, slot

    def process_slot(self, slot: Slot) -> None:
        """Send what the slot's queue holds, as far as its concurrency and delay allow now.

        Scrapy looks at a slot's queue only when a request enters or leaves the slot; a
        component that raised a slot's concurrency or ended a pause (the adaptive
        controller) calls this to use the room at once. The one public door to Scrapy's
        private ``_process_queue`` (overridden below), so no other component calls it.
        """
        self._process_queue(slot)

    def _process_queue(self, slot: Slot) -> None:
        if slot.latercall:
            return  # a delayed call will process the queue
        now = monotonic()
        delay = slot.download_delay()
        if delay:
            penalty = delay - now + slot.lastseen
            if penalty > 0:
                slot.latercall = call_later(penalty, self._latercall, slot)
                return

        while slot.queue and slot.free_transfer_slots() > 0:
            request, queue_dfd = slot.queue.popleft()
            refusal = self._refusal(request)
            if refusal is not None:
                queue_dfd.errback(Failure(refusal))  # awaited in _enqueue_request()
                continue
            slot.lastseen = now
            slot.transferring.add(request)  # the fix: count it before its coroutine runs
            _schedule_coro(self._wait_for_download(slot, request, queue_dfd))
            if delay:
                # one request per delay period: the latercall set above paces the rest
                self._process_queue(slot)
                break

    def _refusal(self, request: Request) -> Exception | None:
        for gate in self.send_gates:
            refusal = gate(request)
            if refusal is not None:
                return refusal
        return None
