"""Signals matter-crawler components send, beside Scrapy's own.

Connect with ``crawler.signals.connect(handler, signal=...)`` like any Scrapy
signal; handlers receive the keyword arguments listed. :func:`send_dead_letter` sends
``request_dead_lettered`` with every argument it documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

#: A request is retried: ``request``, ``failure_class``, ``kind``, ``reason``, ``attempt``,
#: ``delay``, ``retry_after``. ``kind`` says what the failure was: ``response`` (an
#: answer: a status or a content problem), or for a download exception, by its type,
#: ``timeout``, ``connection`` (refused, reset, lost, DNS) or ``other``.
request_retrying = object()

#: A request failed for good and goes to the dead-letter queue: ``request`` (None
#: for an invalid item or a record the database refused), ``url`` (the URL the spider
#: asked for, before any redirect: the letter's key), ``stage``, ``failure_class``,
#: ``reason``, ``attempts``, ``first_failed_at``; from the retry middleware also ``kind``
#: (as for ``request_retrying``); ``recorded=True`` when the sender wrote the letter
#: itself (the batch store, which must know it is written); so receivers must accept
#: ``**kwargs``.
request_dead_lettered = object()

#: A page that may have a dead letter succeeded (a listing page parsed): ``url``.
#: Product pages are resolved from ``batch_stored`` instead, once their product is
#: committed.
dead_letter_resolved = object()

#: An item failed validation: ``item``, ``reasons`` (list of strings).
item_invalid = object()

#: A batch was written to the database (committed): ``products``, ``dcl_records`` (how
#: many of each it stored), ``sightings``, ``new``, ``changed`` (of its products),
#: ``seconds``, and ``urls``, the URLs of the records it stored (a batch written item by
#: item stores fewer than it held: the others are dead letters; a URL with a record
#: refused or rejected is left out, so that its letter stays).
batch_stored = object()

#: A listing page showed stored products (or products whose page is not fetched):
#: ``sightings`` (a list of :class:`~matter_crawler.items.ListingSighting`), ``page``.
#: The store pipeline records them (``last_seen_at``) in its next batch; they are
#: not items, so Scrapy's item counts and feed exports hold products only.
listing_sighted = object()

#: A domain's circuit breaker changed state: ``domain``, ``old``, ``new``, ``reason``.
circuit_state_changed = object()

#: The spider checked a listing page's markup: ``stage``, ``url``, ``not_found`` (what the
#: parser did not find; empty when the page is fine). Product pages are judged by
#: validation instead (``item_scraped`` / ``item_invalid``).
markup_checked = object()


def send_dead_letter(
    crawler: Crawler,
    *,
    request: Request | None,
    url: str,
    stage: str | None,
    failure_class: str,
    reason: str,
    attempts: int,
    first_failed_at: datetime | None = None,
    **extra: Any,
) -> None:
    """Send ``request_dead_lettered`` (``first_failed_at``: now unless given; ``extra``:
    ``kind``, ``recorded``)."""
    crawler.signals.send_catch_log(
        signal=request_dead_lettered,
        request=request,
        url=url,
        stage=stage,
        failure_class=failure_class,
        reason=reason,
        attempts=attempts,
        first_failed_at=first_failed_at or datetime.now(UTC),
        **extra,
    )


def send_invalid_product(
    crawler: Crawler, url: str | None, reason: str, *, stage: str = "detail"
) -> None:
    """Dead-letter a page whose record was refused (validation, a column's size): a
    product page (stage ``detail``), or the URL of a DCL record (stage ``dcl``)."""
    send_dead_letter(
        crawler,
        request=None,
        url=url,
        stage=stage,
        failure_class="invalid",
        reason=reason,
        attempts=1,
    )
