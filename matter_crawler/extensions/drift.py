"""Markup drift: stop the crawl when the site's markup no longer matches the parsers.

A redesign of the catalogue makes every page fail to parse, or parse to a
product without its certificate id: storing that would fill the database with
garbage and, worse, let a full run conclude that the catalogue is empty. This
extension keeps a verdict per page read: a listing page with cards, or a product
page whose item passed validation, is fine; a listing page without cards, a
product item that failed validation, or a page the content check refused for
want of the catalogue's markup, is not. Once ``DRIFT_MIN_PAGES`` pages have a
verdict and more than ``DRIFT_MAX_SHARE`` of them failed, it logs which
selectors and labels stopped matching (:mod:`matter_crawler.parsing.markup`),
sets ``drift/detected`` and closes the spider with reason ``markup_drift``.
Nothing is delisted then (the spider's delisting checks ``drift/detected``) and
the run record says ``failed`` / ``markup_drift``. A listing whose page 1
shows no cards stops the crawl at once (the spider checks it).

``DRIFT_MAX_SHARE = 1`` turns the check off.

Stats: ``drift/pages_checked``, ``drift/pages_failed``, ``drift/detected``,
``drift/not_found`` (what was not found, with the number of pages).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_from_coro

from ..items import ProductItem
from ..parsing.markup import content_not_found, invalid_item_not_found
from ..signals import item_invalid, markup_checked, request_dead_lettered

logger = logging.getLogger(__name__)

REASON = "markup_drift"


def describe_not_found(counts: Counter[str], limit: int = 8) -> str:
    """``"label 'Certificate ID' (30 pages), p.entry-company (30 pages)"``."""
    if not counts:
        return "nothing named"
    shown = [
        f"{what} ({pages} page{'s' if pages != 1 else ''})"
        for what, pages in counts.most_common(limit)
    ]
    more = len(counts) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


class MarkupDriftMonitor:
    def __init__(self, crawler: Crawler, max_share: float, min_pages: int) -> None:
        self.crawler = crawler
        self.max_share = max_share
        self.min_pages = max(1, min_pages)
        self.checked = 0
        self.failed = 0
        self.not_found: Counter[str] = Counter()
        self.tripped = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        monitor = cls(
            crawler, settings.getfloat("DRIFT_MAX_SHARE"), settings.getint("DRIFT_MIN_PAGES")
        )
        crawler.signals.connect(monitor.markup_checked, signal=markup_checked)
        crawler.signals.connect(monitor.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(monitor.item_invalid, signal=item_invalid)
        crawler.signals.connect(monitor.dead_lettered, signal=request_dead_lettered)
        return monitor

    # -- verdicts ----------------------------------------------------------------------

    def markup_checked(self, not_found: list[str], **_: Any) -> None:
        self.verdict(not not_found, not_found)

    def item_scraped(self, item: Any, **_: Any) -> None:
        if isinstance(item, ProductItem):
            self.verdict(True)

    def item_invalid(self, item: Any, reasons: list[str], **_: Any) -> None:
        if not isinstance(item, ProductItem):  # a DCL record: no page markup to judge
            return
        unknown = list(getattr(item, "extra_fields", None) or ())
        self.verdict(False, invalid_item_not_found(reasons, unknown))

    def dead_lettered(self, stage: str | None, failure_class: str, reason: str, **_: Any) -> None:
        if failure_class != "content" or stage not in ("list", "detail"):
            return
        # the retry middleware adds " (after N attempts)"; the reason is what comes before
        not_found = content_not_found(stage, reason.split(" (after ", 1)[0])
        if not_found is not None:
            self.verdict(False, not_found)

    def verdict(self, ok: bool, not_found: list[str] | tuple[str, ...] = ()) -> None:
        """One page's verdict; closes the crawl once the failed share passes the limit."""
        stats = self.crawler.stats
        self.checked += 1
        stats.inc_value("drift/pages_checked")
        if not ok:
            self.failed += 1
            stats.inc_value("drift/pages_failed")
            self.not_found.update(set(not_found))
        if (
            not self.tripped
            and self.checked >= self.min_pages
            and self.failed > self.max_share * self.checked
        ):
            self.trip()

    def trip(self) -> None:
        self.tripped = True
        stats = self.crawler.stats
        stats.set_value("drift/detected", 1)
        stats.set_value("drift/not_found", dict(self.not_found.most_common()))
        logger.error(
            "Markup drift: %d of the %d pages read (%.0f%%) failed validation or the content "
            "check, more than DRIFT_MAX_SHARE (%.0f%%). Not found: %s. Closing the crawl "
            "(%s): nothing is delisted and the stored products are left as they are",
            self.failed,
            self.checked,
            100 * self.failed / self.checked,
            100 * self.max_share,
            describe_not_found(self.not_found),
            REASON,
        )
        if self.crawler.crawling:
            deferred_from_coro(self.crawler.engine.close_spider_async(reason=REASON))
