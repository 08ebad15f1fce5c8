"""Classified retry: a downloader middleware that replaces Scrapy's RetryMiddleware.

Every failure is classified (:mod:`.classify`: transient, server, throttled,
permanent, content, config) and handled by that class's policy from
``RETRY_POLICIES``: how many attempts, and an exponential backoff with full
jitter (a delay drawn uniformly from ``[0, min(cap, base * 2**(n-1))]`` before
retry *n*). A ``Retry-After`` header (delta-seconds or HTTP-date) raises the
delay to what the server asked, up to ``RETRY_AFTER_MAX`` seconds. A request
that exhausts its class's attempts, or ``RETRY_MAX_TOTAL_ATTEMPTS`` across
classes, or fails permanently, is sent to the dead-letter queue
(``request_dead_lettered``) and its errback receives
:class:`~matter_crawler.exceptions.DeadLettered`.

Successful (2xx) responses pass ``RETRY_CONTENT_CHECK`` (a callable
``(request, response) -> ContentProblem | None``); a problem is a ``content``
failure. A page only JavaScript fills in (``problem.needs_javascript``) is first
re-issued once through the browser (:func:`matter_crawler.rendering.request_meta.render_or_explain`:
``meta["playwright"]``, no backoff, stats ``render/...``); without a browser, or
when the rendered page is still empty, it is an ordinary content failure whose
dead letter says why.

Per request, as with the stock middleware: ``meta["dont_retry"]`` turns retries
off, ``meta["max_retry_times"]`` caps the retries of every class, and
``meta["retry_policies"]`` overrides policies by class (``{"server":
{"attempts": 2}}``). Statuses a request lists in ``handle_httpstatus_list`` (or
``handle_httpstatus_all``) are passed to its callback untouched.

Design: waiting without blocking and without a slot
-----------------------------------------------------
A retry is not awaited here. ``process_response`` / ``process_exception`` return
a copy of the request with ``meta["not_before"]`` set to the time it may go
again; the engine schedules it and :class:`~matter_crawler.core.scheduler.DelayedRequestScheduler`
holds it in a heap until then. The alternatives were worse: sleeping inside
the middleware (``await asyncio.sleep``) keeps the request among the
downloader's active requests, so a burst of 429s with Retry-After: 60 would
fill ``CONCURRENT_REQUESTS`` with sleepers and stall the crawl, and a JOBDIR
pause would lose the sleeping requests; a ``callLater`` that calls
``engine.crawl()`` later keeps the request only in memory and loses it on
pause. With the time in meta, a waiting request is an ordinary queued request:
it survives a pause in JOBDIR's disk queue with its not-before time, and it
costs no concurrency while it waits.

Stats: ``retry/count``, ``retry/class/<class>``, ``retry/reason/<reason>``,
``retry/gave_up/<class>``, ``retry/retry_after_honoured``, ``retry/retry_after_invalid`` (a
header that is neither delay-seconds nor an HTTP-date: ignored). And Scrapy's stock keys,
named as ``get_retry_request`` names them, so dashboards made for the stock middleware
keep working: ``retry/count``, ``retry/reason_count/<reason>`` (``<reason>`` as stock: the
status line, e.g. ``503 Service Unavailable``, or the exception's dotted class name, e.g.
``twisted.internet.error.TimeoutError``; for a content problem its label, e.g. ``empty
shell``) and ``retry/max_reached`` (a request of a class that is retried gave up because
its attempts ran out; a class that is never retried, ``permanent`` or ``config``, is not
counted, as stock does not count a status it does not retry).

Replaced stock settings: ``RETRY_TIMES``, ``RETRY_HTTP_CODES``, ``RETRY_EXCEPTIONS`` and
``RETRY_GIVE_UP_LOG_LEVEL`` do nothing here; one given explicitly (any priority above
Scrapy's default) gets a warning at start naming the setting to use instead
(:data:`REPLACED_STOCK_SETTINGS`). ``RETRY_ENABLED`` and ``RETRY_PRIORITY_ADJUST`` work as
with the stock middleware.

Signals: ``request_retrying`` and ``request_dead_lettered`` (:mod:`matter_crawler.signals`)
carry the failure class and its ``kind``: ``response`` for an answer (a status or a
content problem), and for a download exception, by its type, ``timeout`` (no answer in
time, including a TCP connect timeout), ``connection`` (refused, reset, lost, DNS, data
loss) or ``other`` (an exception that says nothing about the way to the server).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import time
from typing import TYPE_CHECKING, Any, Self

from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Request, Response
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.misc import build_from_crawler, load_object
from scrapy.utils.python import global_object_name
from scrapy.utils.response import response_status_message

from ..core.scheduler import NOT_BEFORE
from ..exceptions import DeadLettered
from ..rendering.request_meta import render_or_explain
from ..request_url import requested_url
from ..signals import request_retrying, send_dead_letter
from .classify import (
    RESPONSE_KIND,
    FailureClass,
    classify_exception,
    classify_status,
    exception_kind,
)

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

#: Scrapy's RetryMiddleware settings this middleware does not read, and what to use instead.
REPLACED_STOCK_SETTINGS = {
    "RETRY_TIMES": "RETRY_POLICIES (attempts per failure class, e.g. "
    '{"server": {"attempts": 3}}) and RETRY_MAX_TOTAL_ATTEMPTS',
    "RETRY_HTTP_CODES": "RETRY_POLICIES: statuses are classified "
    "(matter_crawler.middlewares.classify), and each class has its attempts and backoff",
    "RETRY_EXCEPTIONS": "RETRY_POLICIES: exceptions are classified "
    "(matter_crawler.middlewares.classify), and each class has its attempts and backoff",
    "RETRY_GIVE_UP_LOG_LEVEL": "the dead letters: a request that gives up is dead-lettered "
    "and logged as a warning by DeadLetterStore",
}


def warn_replaced_stock_settings(settings: BaseSettings) -> list[str]:
    """Warn about each stock retry setting given explicitly (above Scrapy's default priority).

    The classified retry replaces Scrapy's RetryMiddleware, so these would be
    silently ignored. Returns the names warned about.
    """
    default = SETTINGS_PRIORITIES["default"]
    warned = []
    for name, instead in REPLACED_STOCK_SETTINGS.items():
        priority = settings.getpriority(name)
        if priority is None or priority <= default:
            continue
        warned.append(name)
        logger.warning(
            "%s=%r is ignored: ClassifiedRetryMiddleware replaces Scrapy's RetryMiddleware; use %s",
            name,
            settings.get(name),
            instead,
        )
    return warned


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failure class is retried. ``attempts`` counts the first try."""

    attempts: int
    base: float = 1.0
    cap: float = 60.0

    def ceiling(self, retry_number: int) -> float:
        """The backoff's upper bound before retry ``retry_number`` (1-based)."""
        return min(self.cap, self.base * 2 ** (retry_number - 1))

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in ``[0, ceiling]``, so retries of many requests spread out."""
        return rng.uniform(0.0, self.ceiling(retry_number))


DEFAULT_POLICIES: dict[str, RetryPolicy] = {
    FailureClass.TRANSIENT: RetryPolicy(attempts=5, base=1.0, cap=30.0),
    FailureClass.SERVER: RetryPolicy(attempts=5, base=2.0, cap=60.0),
    FailureClass.THROTTLED: RetryPolicy(attempts=8, base=5.0, cap=120.0),
    FailureClass.CONTENT: RetryPolicy(attempts=3, base=1.0, cap=10.0),
    FailureClass.PERMANENT: RetryPolicy(attempts=1),
    FailureClass.CONFIG: RetryPolicy(attempts=1),
}


def build_policies(overrides: dict[str, dict[str, Any]] | None) -> dict[str, RetryPolicy]:
    """The default policies with ``RETRY_POLICIES`` overrides merged in, checked."""
    policies = dict(DEFAULT_POLICIES)
    for name, values in (overrides or {}).items():
        try:
            failure_class = FailureClass(name)
        except ValueError:
            known = ", ".join(c.value for c in FailureClass)
            raise ValueError(f"RETRY_POLICIES: unknown failure class {name!r} ({known})") from None
        unknown = set(values) - {"attempts", "base", "cap"}
        if unknown:
            raise ValueError(f"RETRY_POLICIES[{name!r}]: unknown keys {sorted(unknown)}")
        policy = replace(policies[failure_class], **values)
        if policy.attempts < 1 or policy.base < 0 or policy.cap < 0:
            raise ValueError(f"RETRY_POLICIES[{name!r}]: attempts >= 1, base and cap >= 0")
        policies[failure_class] = policy
    return policies


#: RFC 9110 delay-seconds: ASCII digits only (``str.isdigit`` also accepts "²" and "٣").
_DELAY_SECONDS = re.compile(r"[0-9]+")
#: RFC 9110 HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms (ASCII).
_HTTP_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
    r"|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, [0-9]{2}-[A-Z][a-z]{2}-[0-9]{2} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
    r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 0-9][0-9] "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}"
)


def parse_retry_after(value: bytes | str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value, read as RFC 9110 says: delay-seconds
    (ASCII digits) or an HTTP-date (a date already past is 0). None when the header is
    absent or is neither (``²``, ``1.5``, ``-1``, ``soon``...): the caller then backs off
    as for any failure of the class."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if _DELAY_SECONDS.fullmatch(text):
        # thousands of digits are still a number: float() saturates, the caller caps it
        return float(text) if len(text) < 300 else float("inf")
    if not _HTTP_DATE.fullmatch(text):
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class ClassifiedRetryMiddleware:
    def __init__(
        self,
        crawler: Crawler,
        policies: dict[str, RetryPolicy],
        *,
        retry_after_max: float,
        max_total_attempts: int,
        priority_adjust: int,
        content_check: Callable[[Request, Response], Any] | None,
        rng: random.Random,
    ) -> None:
        self.crawler = crawler
        self.policies = policies
        self.retry_after_max = retry_after_max
        self.max_total_attempts = max_total_attempts
        self.priority_adjust = priority_adjust
        self.content_check = content_check
        self.rng = rng

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("RETRY_ENABLED"):
            raise NotConfigured
        warn_replaced_stock_settings(settings)
        check_path = settings.get("RETRY_CONTENT_CHECK")
        check = load_object(check_path) if check_path else None
        if isinstance(check, type):  # a class reads its own settings: built with from_crawler
            check = build_from_crawler(check, crawler)
        seed = settings.get("RETRY_JITTER_SEED")
        return cls(
            crawler,
            build_policies(settings.getdict("RETRY_POLICIES")),
            retry_after_max=settings.getfloat("RETRY_AFTER_MAX"),
            max_total_attempts=settings.getint("RETRY_MAX_TOTAL_ATTEMPTS"),
            priority_adjust=settings.getint("RETRY_PRIORITY_ADJUST"),
            content_check=check,
            rng=random.Random(seed),
        )

    # -- downloader middleware API ------------------------------------------------

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry"):
            return response
        failure_class = classify_status(response)
        if failure_class is None:
            problem = self.content_check(request, response) if self.content_check else None
            if problem is None:
                return response
            reason = problem.reason
            if problem.needs_javascript:
                rendered = render_or_explain(self.crawler, request, reason)
                if isinstance(rendered, Request):
                    return rendered
                reason = rendered
            return self.retry_or_give_up(
                request,
                FailureClass.CONTENT,
                reason,
                kind=RESPONSE_KIND,
                stock_reason=problem.reason.split(":", 1)[0],
            )
        if self._handled_by_callback(request, response.status):
            return response
        reason = f"HTTP {response.status}"
        if response.status in (404, 410) and request.meta.get("stage") == "detail":
            reason += ": the product left the catalogue"
        header = response.headers.get(b"Retry-After")
        retry_after = parse_retry_after(header, time())
        if header and retry_after is None:
            # not RFC 9110's delay-seconds nor an HTTP-date: ignored, the class's backoff applies
            self.crawler.stats.inc_value("retry/retry_after_invalid")
            logger.info(
                "Ignoring Retry-After %s from %s: not delay-seconds nor an HTTP-date",
                repr(header),
                request.url,
            )
        return self.retry_or_give_up(
            request,
            failure_class,
            reason,
            kind=RESPONSE_KIND,
            stock_reason=response_status_message(response.status),
            retry_after=retry_after,
        )

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if isinstance(exception, IgnoreRequest) or request.meta.get("dont_retry"):
            return None
        reason = f"{type(exception).__name__}: {exception}".rstrip(": ")
        return self.retry_or_give_up(
            request,
            classify_exception(exception),
            reason,
            kind=exception_kind(exception),
            stock_reason=global_object_name(type(exception)),
        )

    # -- the policy ------------------------------------------------------------------

    def policy_for(self, request: Request, failure_class: FailureClass) -> RetryPolicy:
        policy = self.policies[failure_class]
        override = (request.meta.get("retry_policies") or {}).get(failure_class.value)
        if override:
            policy = replace(policy, **override)
        max_retry_times = request.meta.get("max_retry_times")
        if max_retry_times is not None and policy.attempts > 1:
            policy = replace(policy, attempts=min(policy.attempts, int(max_retry_times) + 1))
        return policy

    def retry_or_give_up(
        self,
        request: Request,
        failure_class: FailureClass,
        reason: str,
        *,
        kind: str,
        stock_reason: str,
        retry_after: float | None = None,
    ) -> Request:
        """A delayed retry of ``request``, or raise DeadLettered once its attempts are spent.

        ``stock_reason`` names the failure in the stock ``retry/reason_count/`` stat.
        """
        meta = request.meta
        failures: dict[str, int] = dict(meta.get("retry_failures") or {})
        failures[failure_class.value] = failures.get(failure_class.value, 0) + 1
        total = sum(failures.values())
        now = time()
        first_failed_at = meta.get("first_failed_at", now)
        policy = self.policy_for(request, failure_class)
        stats = self.crawler.stats
        reason_key = reason.split(":", 1)[0].replace(" ", "_")

        if failures[failure_class.value] < policy.attempts and total < self.max_total_attempts:
            delay = policy.backoff(failures[failure_class.value], self.rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry_after_max))
                stats.inc_value("retry/retry_after_honoured")
            retry = request.replace(
                dont_filter=True, priority=request.priority + self.priority_adjust
            )
            retry.meta.update(
                {
                    "retry_failures": failures,
                    "retry_times": total,  # the stock middleware's key, read by other tools
                    "first_failed_at": first_failed_at,
                    "last_failure": f"{failure_class.value}: {reason}",
                    NOT_BEFORE: now + delay,
                }
            )
            stats.inc_value("retry/count")  # ours and stock's
            stats.inc_value(f"retry/reason_count/{stock_reason}")  # stock's
            stats.inc_value(f"retry/class/{failure_class.value}")
            stats.inc_value(f"retry/reason/{reason_key}")
            logger.debug(
                "Retrying %s in %.2fs (%s, failure %d of %d): %s",
                request.url,
                delay,
                failure_class.value,
                failures[failure_class.value],
                policy.attempts,
                reason,
            )
            self.crawler.signals.send_catch_log(
                signal=request_retrying,
                request=request,
                failure_class=failure_class.value,
                kind=kind,
                reason=reason,
                attempt=total,
                delay=delay,
                retry_after=retry_after,
            )
            return retry

        stats.inc_value(f"retry/gave_up/{failure_class.value}")
        if self.policies[failure_class].attempts > 1 or total >= self.max_total_attempts:
            stats.inc_value("retry/max_reached")  # stock's: a retried class ran out of attempts
        if policy.attempts > 1:
            reason = f"{reason} (after {total} attempts)"
        send_dead_letter(
            self.crawler,
            request=request,
            # the URL the spider asked for: a replay asks for it again and stores the same row
            url=requested_url(request),
            stage=meta.get("stage"),
            failure_class=failure_class.value,
            kind=kind,
            reason=reason,
            attempts=total,
            first_failed_at=datetime.fromtimestamp(first_failed_at, UTC),
        )
        raise DeadLettered(failure_class.value, reason)

    @staticmethod
    def _handled_by_callback(request: Request, status: int) -> bool:
        meta = request.meta
        return bool(meta.get("handle_httpstatus_all")) or status in meta.get(
            "handle_httpstatus_list", ()
        )
