"""Per-domain circuit breaking: stop hammering a site that is down, probe it, resume.

One breaker per download slot (the domain). It opens after
``CIRCUIT_FAILURE_THRESHOLD`` consecutive failures, or when more than
``CIRCUIT_FAILURE_RATIO`` of the last ``CIRCUIT_WINDOW`` outcomes failed. Open,
it holds every request to the domain for ``CIRCUIT_COOLDOWN`` seconds (doubling
on each re-open up to ``CIRCUIT_COOLDOWN_MAX``), then turns half-open and lets
at most ``CIRCUIT_HALF_OPEN_PROBES`` probe requests through; after
``CIRCUIT_CLOSE_AFTER`` successful probes it closes, after a failed one it opens
again.

What counts as a failure (:data:`COUNTED_FAILURES`) is a class that says the
server, or the way to it, is in trouble: ``transient``, ``server``, ``throttled``.
The rest do not count toward opening:

- ``permanent`` answers (404...) show the server is up: they count as successes.
- ``config`` errors and ``IgnoreRequest`` are of our own making: not counted.
- ``content`` failures count as successes: a 200 page without the expected
  markup is that page's problem, not the site's, which answered. (The breaker
  could not tell anyway: it sees the raw 200 before the classified retry, nearer
  the engine, judges its content.)
- Exceptions of requests rendered by the browser (``meta["playwright"]``) are
  not counted: a browser that fails to launch, or any Playwright error, is most
  likely trouble on our side and must not open the breaker on a healthy site.
  The HTTP status a rendered page got (a 503) is the site's and counts as usual.

Held requests are neither failed nor dropped: ``process_request`` hands back a
copy carrying ``meta["not_before"]`` (when the breaker will next let requests
through), which :class:`~matter_crawler.core.scheduler.DelayedRequestScheduler` keeps
until then, outside the downloader, without taking a concurrency slot, and in
JOBDIR across a pause. A request admitted while the breaker was closed may still be
waiting in its download slot (behind the slot's concurrency or delay) when it opens:
the breaker is asked again as the slot sends it (a send gate of
:class:`~matter_crawler.core.downloader.SlotConcurrencyDownloader`), and one it holds
then fails with :class:`CircuitHeld`, which ``process_exception`` turns into the same
held copy, so an open breaker lets no request out but its probes.

Its order number (610) puts it nearest the download
handler of the middlewares that change responses, after redirects and the
classified retry: it sees every raw outcome (a redirect too, which would
otherwise become a new request and leave a probe unaccounted for).

Readable by other components: :func:`circuit_states` (domain -> state), the
``circuit_state_changed`` signal, a log line per transition (with its reason),
and the stats ``circuit/<domain>/state`` (the current state: ``closed``,
``open`` or ``half_open``), ``circuit/<domain>/held_requests``, and one counter
per transition, ``circuit/<domain>/<old>_to_<new>``: ``closed_to_open`` (opened
by failures), ``open_to_half_open`` (cool-down over, probing),
``half_open_to_open`` (a probe failed), ``half_open_to_closed`` (enough probes
succeeded).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from time import time
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached

from ..core.scheduler import NOT_BEFORE
from ..core.session import CrawlSession
from ..signals import circuit_state_changed
from .classify import FailureClass, classify_exception, classify_status

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

PROBE = "circuit_probe"

#: The failure classes that count toward opening (see the module docstring for why not the rest).
COUNTED_FAILURES = frozenset({FailureClass.TRANSIENT, FailureClass.SERVER, FailureClass.THROTTLED})


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 10
    failure_ratio: float = 0.8
    window: int = 50
    cooldown: float = 10.0
    cooldown_max: float = 120.0
    half_open_probes: int = 1
    close_after: int = 2


@dataclass
class Breaker:
    """The state machine of one domain's breaker (times are epoch seconds)."""

    policy: BreakerPolicy
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    outcomes: deque[bool] = field(default_factory=deque)  # True = failure
    opened_at: float = 0.0
    cooldown: float = 0.0
    probes_in_flight: int = 0
    probe_successes: int = 0

    def __post_init__(self) -> None:
        self.outcomes = deque(self.outcomes, maxlen=self.policy.window)
        self.cooldown = self.cooldown or self.policy.cooldown

    def reopens_at(self) -> float:
        return self.opened_at + self.cooldown

    def admit(self, now: float) -> tuple[bool, str | None]:
        """Whether a request may go now, and a transition reason if the state changed."""
        change = None
        if self.state is CircuitState.OPEN and now >= self.reopens_at():
            self.state = CircuitState.HALF_OPEN
            self.probes_in_flight = self.probe_successes = 0
            change = f"cool-down of {self.cooldown:.0f}s over, probing"
        if self.state is CircuitState.CLOSED:
            return True, change
        if (
            self.state is CircuitState.HALF_OPEN
            and self.probes_in_flight < self.policy.half_open_probes
        ):
            self.probes_in_flight += 1
            return True, change
        return False, change

    def record(self, failed: bool, *, probe: bool, now: float) -> str | None:
        """Count an outcome; returns a transition reason if the state changed."""
        if probe and self.probes_in_flight:
            self.probes_in_flight -= 1
        self.outcomes.append(failed)
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        if self.state is CircuitState.HALF_OPEN:
            if failed:
                self._open(now, self.cooldown * 2)
                return "a probe failed"
            self.probe_successes += 1
            if self.probe_successes >= self.policy.close_after:
                self.state = CircuitState.CLOSED
                self.outcomes.clear()
                self.consecutive_failures = 0
                self.cooldown = self.policy.cooldown
                return f"{self.probe_successes} probes succeeded"
            return None
        if self.state is CircuitState.CLOSED and failed:
            if self.consecutive_failures >= self.policy.failure_threshold:
                self._open(now, self.policy.cooldown)
                return f"{self.consecutive_failures} failures in a row"
            window = self.outcomes
            if len(window) == window.maxlen:
                share = sum(window) / len(window)
                if share > self.policy.failure_ratio:
                    self._open(now, self.policy.cooldown)
                    return f"{share:.0%} of the last {len(window)} requests failed"
        return None

    def _open(self, now: float, cooldown: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.cooldown = min(cooldown, self.policy.cooldown_max)
        self.probes_in_flight = self.probe_successes = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "opened_at": self.opened_at,
            "cooldown": self.cooldown,
            "outcomes": list(self.outcomes),
            "consecutive_failures": self.consecutive_failures,
        }

    @classmethod
    def from_state(cls, policy: BreakerPolicy, saved: dict[str, Any]) -> Breaker:
        breaker = cls(
            policy,
            state=CircuitState(saved["state"]),
            consecutive_failures=saved.get("consecutive_failures", 0),
            outcomes=deque(saved.get("outcomes", ())),
            opened_at=saved.get("opened_at", 0.0),
            cooldown=saved.get("cooldown", 0.0),
        )
        if breaker.state is CircuitState.HALF_OPEN:
            breaker.state = CircuitState.OPEN  # probes in flight died with the old process
            breaker.opened_at = 0.0  # ... so probe again at once
        return breaker


class CircuitHeld(Exception):
    """A request the breaker held as its download slot was about to send it.

    Scrapy's DownloaderStats counts it like any download exception
    (``downloader/exception_type_count/...CircuitHeld``); ``circuit/<domain>/held_requests``
    counts it with the requests held at ``process_request``.
    """

    def __init__(self, domain: str, release: float) -> None:
        wait = max(0.0, release - time())
        super().__init__(f"the circuit for {domain} is open: held for {wait:.1f} s")
        self.domain = domain
        self.release = release


class CircuitBreakerMiddleware:
    def __init__(self, crawler: Crawler, policy: BreakerPolicy) -> None:
        self.crawler = crawler
        self.policy = policy
        self.breakers: dict[str, Breaker] = {}
        self.rng = random.Random()
        session = CrawlSession.from_crawler(crawler)
        for domain, saved in (session.restored_state("circuit_breakers") or {}).items():
            self.breakers[domain] = Breaker.from_state(policy, saved)
        session.register_state("circuit_breakers", self._saved_state)
        crawler.signals.connect(self.engine_started, signal=signals.engine_started)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("CIRCUIT_BREAKER_ENABLED"):
            raise NotConfigured
        policy = BreakerPolicy(
            failure_threshold=settings.getint("CIRCUIT_FAILURE_THRESHOLD"),
            failure_ratio=settings.getfloat("CIRCUIT_FAILURE_RATIO"),
            window=settings.getint("CIRCUIT_WINDOW"),
            cooldown=settings.getfloat("CIRCUIT_COOLDOWN"),
            cooldown_max=settings.getfloat("CIRCUIT_COOLDOWN_MAX"),
            half_open_probes=settings.getint("CIRCUIT_HALF_OPEN_PROBES"),
            close_after=settings.getint("CIRCUIT_CLOSE_AFTER"),
        )
        return cls(crawler, policy)

    def engine_started(self) -> None:
        gates = getattr(self.crawler.engine.downloader, "send_gates", None)
        if gates is not None:  # our downloader (the project's default)
            gates.append(self.send_gate)

    # -- downloader middleware API ---------------------------------------------------

    def process_request(self, request: Request) -> Request | None:
        domain = self._domain(request)
        release = self._admit(request, domain)
        return None if release is None else self._held(request, domain, release)

    def process_response(self, request: Request, response: Response) -> Response:
        self._record(request, classify_status(response) in COUNTED_FAILURES)
        return response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if isinstance(exception, CircuitHeld):
            return self._held(request, exception.domain, exception.release)
        failure_class = classify_exception(exception)
        if (
            isinstance(exception, IgnoreRequest)
            or failure_class is FailureClass.CONFIG
            or request.meta.get("playwright")  # the browser failed, maybe not the site
        ):
            # says nothing about the server, but a probe slot must not leak
            if request.meta.pop(PROBE, False):
                breaker = self._breaker(self._domain(request))
                breaker.probes_in_flight = max(0, breaker.probes_in_flight - 1)
            return
        self._record(request, failure_class in COUNTED_FAILURES)

    def send_gate(self, request: Request) -> CircuitHeld | None:
        """The send gate: asked again as the download slot sends the request."""
        if request.meta.get(PROBE):
            return None  # admitted as a probe, counted in probes_in_flight
        domain = self._domain(request)
        breaker = self.breakers.get(domain)
        if breaker is None or breaker.state is CircuitState.CLOSED:
            return None
        release = self._admit(request, domain)
        return None if release is None else CircuitHeld(domain, release)

    def _admit(self, request: Request, domain: str) -> float | None:
        """None if the request may go now (a probe when half-open), else when to try again."""
        breaker = self._breaker(domain)
        now = time()
        allowed, change = breaker.admit(now)
        if change:
            self._changed(domain, CircuitState.OPEN, breaker.state, change)
        if allowed:
            if breaker.state is CircuitState.HALF_OPEN:
                request.meta[PROBE] = True
            return None
        if breaker.state is CircuitState.OPEN:
            return breaker.reopens_at()
        return now + max(1.0, breaker.policy.cooldown / 4)

    def _held(self, request: Request, domain: str, release: float) -> Request:
        """Held, not failed: back to the scheduler until the breaker lets requests through."""
        held = request.replace(dont_filter=True)
        held.meta[NOT_BEFORE] = release + self.rng.uniform(0, 0.5)
        held.meta.pop(PROBE, None)
        self.crawler.stats.inc_value(f"circuit/{domain}/held_requests")
        return held

    # -- state -------------------------------------------------------------------------

    def states(self) -> dict[str, CircuitState]:
        return {domain: breaker.state for domain, breaker in self.breakers.items()}

    def _record(self, request: Request, failed: bool) -> None:
        domain = self._domain(request)
        breaker = self._breaker(domain)
        old = breaker.state
        change = breaker.record(failed, probe=bool(request.meta.pop(PROBE, False)), now=time())
        if change:
            self._changed(domain, old, breaker.state, change)

    def _changed(self, domain: str, old: CircuitState, new: CircuitState, reason: str) -> None:
        stats = self.crawler.stats
        stats.inc_value(f"circuit/{domain}/{old.value}_to_{new.value}")
        stats.set_value(f"circuit/{domain}/state", new.value)
        level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
        logger.log(level, "Circuit for %s: %s -> %s (%s)", domain, old.value, new.value, reason)
        self.crawler.signals.send_catch_log(
            signal=circuit_state_changed, domain=domain, old=old.value, new=new.value, reason=reason
        )

    def _breaker(self, domain: str) -> Breaker:
        breaker = self.breakers.get(domain)
        if breaker is None:
            breaker = self.breakers[domain] = Breaker(self.policy)
        return breaker

    def _domain(self, request: Request) -> str:
        """The download slot's key: the hostname unless the request names a slot."""
        try:
            return self.crawler.engine.downloader.get_slot_key(request)
        except RuntimeError:  # no engine (a middleware used on its own)
            return urlparse_cached(request).hostname or ""

    def _saved_state(self) -> dict[str, Any]:
        return {domain: breaker.to_state() for domain, breaker in self.breakers.items()}


def circuit_states(crawler: Crawler) -> dict[str, CircuitState]:
    """Every domain's breaker state in a running crawl ({} without the middleware)."""
    try:
        middlewares = crawler.engine.downloader.middleware.middlewares
    except RuntimeError:  # the crawl has not started
        return {}
    for middleware in middlewares:
        if isinstance(middleware, CircuitBreakerMiddleware):
            return middleware.states()
    return {}
