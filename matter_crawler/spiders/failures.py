"""The spider's dead letters, and the listing pages they leave failed in the plan.

Every page or card the spider cannot use becomes a dead letter
(``request_dead_lettered``): a page the parsers refuse (failure class ``parse``), a
card that cannot be read (``parse``; keyed by its product URL if it has one, else by
the listing page's URL with ``#card-N``), a card linking off-site (``offsite``), a
listing page inside the listing that shows no card (``content``), a failure the
retry middleware did not dead-letter (robots.txt, too many redirects...), a
redirect to a URL the crawl already requested. A listing page with a letter counts
as failed in the plan, so the listing is never taken as complete.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from twisted.python.failure import Failure

from ..exceptions import DeadLettered
from ..parsing import BadCard, page_number_from_url
from ..parsing.listing import ListingCard, ListingPage
from ..parsing.markup import listing_not_found
from ..request_url import requested_url
from ..safe_text import shortened, terminal_safe
from ..signals import dead_letter_resolved, request_dead_lettered, send_dead_letter

if TYPE_CHECKING:
    from .matter_products import MatterProductsSpider

logger = logging.getLogger(__name__)

#: The failure class of a page or card the parsers refuse.
PARSE_FAILURE = "parse"
#: Longest URL a dead letter is keyed by (the dead_letters.url column's size).
LETTER_URL_MAX = 1024


def card_position_url(response: Response, position: int) -> str:
    """The key of a card with no usable link: its listing page's URL and its position."""
    request = response.request
    page_url = requested_url(request) if request is not None else response.url
    return f"{page_url.partition('#')[0]}#card-{position}"


class PageFailures:
    """Dead-letters what the spider cannot use and keeps the plan's failed pages."""

    def __init__(self, spider: MatterProductsSpider) -> None:
        self.spider = spider

    def connect(self) -> None:
        connect = self.spider.crawler.signals.connect
        connect(self.dead_lettered, signal=request_dead_lettered)
        connect(self.request_dropped, signal=signals.request_dropped)

    def _send(
        self,
        request: Request | None,
        url: str,
        stage: str,
        failure_class: str,
        reason: str,
        attempts: int,
    ) -> None:
        send_dead_letter(
            self.spider.crawler,
            request=request,
            url=url,
            stage=stage,
            failure_class=failure_class,
            reason=reason,
            attempts=attempts,
        )

    # -- failures Scrapy reports -------------------------------------------------------------

    def unless_done(self, failure: Failure, stage: str) -> None:
        """Failures the retry middleware did not dead-letter (robots.txt...) go there too."""
        if failure.check(DeadLettered):
            return
        request = failure.request  # type: ignore[attr-defined]
        # IgnoreRequest: robots.txt, too many redirects... asking again changes nothing
        failure_class = "permanent" if failure.check(IgnoreRequest) else "transient"
        self._send(
            request,
            requested_url(request),
            stage,
            failure_class,
            f"{failure.type.__name__}: {failure.getErrorMessage()}",
            request.meta.get("retry_times", 0) + 1,
        )

    def request_dropped(self, request: Request) -> None:
        """A redirect to a URL already requested is dropped by the dupefilter: account for it."""
        chain = request.meta.get("redirect_urls")
        if not chain or request.meta.get("stage") not in ("list", "detail"):
            return  # duplicates of our own requests are expected (cards seen twice)
        loop = request.url in chain
        reason = (
            "redirect loop: " + " -> ".join([*chain, request.url])
            if loop
            else f"redirects to {request.url}, which this crawl already requested"
        )
        attempts = request.meta.get("retry_times", 0) + 1
        self._send(request, chain[0], request.meta["stage"], "permanent", reason, attempts)

    def dead_lettered(
        self,
        stage: str,
        url: str,
        failure_class: str | None = None,
        request: Request | None = None,
        **_: Any,
    ) -> None:
        """Any component's letter for a listing page: that page failed in the plan."""
        plan = self.spider.plan
        if stage != "list" or plan is None:
            return
        if failure_class == "invalid" or (request is not None and request.meta.get("rewalk")):
            return  # a page count not believed, a page read again: the walk has no hole
        plan.pages_failed.add(page_number_from_url(url) or 1)

    def resolved(self, response: Response) -> None:
        """A page that parsed: a letter it has is resolved, in any run."""
        url = requested_url(response.request)
        self.spider.crawler.signals.send_catch_log(signal=dead_letter_resolved, url=url)

    # -- what the spider could not read ----------------------------------------------------

    def page_refused(self, response: Response, stage: str, reason: str) -> None:
        """Dead-letter a page the parsers refuse (``PageParseError``: the reason)."""
        self.spider.crawler.stats.inc_value(f"matter/{stage}/refused")
        request = response.request
        url = requested_url(request) if request is not None else response.url
        if stage == "detail":
            url = self.spider.canonical_url(url) or url
        attempts = response.meta.get("retry_times", 0) + 1
        stage = response.meta.get("stage", stage)
        self._send(request, url, stage, PARSE_FAILURE, reason, attempts)

    def unreadable_listing_page(self, response: Response, listing: ListingPage) -> None:
        """A page inside the listing that shows no card: failed, so no run delists by it."""
        page: int = response.meta["page"]
        self.spider.crawler.stats.inc_value("matter/list/unreadable_pages")
        reason = (
            f"listing page {page} of {listing.last_page} shows no product cards "
            f"(not found: {', '.join(listing_not_found(listing))})"
        )
        attempts = response.meta.get("retry_times", 0) + 1
        self._send(response.request, response.url, "list", "content", reason, attempts)

    def implausible_page_count(self, url: str, reason: str) -> None:
        """A page count no evidence supports (``url``: the claimed last page)."""
        self._send(None, url, "list", "invalid", reason, 1)

    def offsite_card(self, card: ListingCard, page: int, response: Response) -> None:
        self.spider.crawler.stats.inc_value("matter/list/offsite_cards")
        url = card.url
        if len(url) > LETTER_URL_MAX:  # too long to key a letter: named by where it was seen
            url = card_position_url(response, card.position)
        reason = f"listing page {page} links the product off-site ({shortened(card.url)})"
        self._send(None, url, "detail", "offsite", reason, 0)

    def bad_card(self, response: Response, page: int, bad: BadCard) -> None:
        """Dead-letter a card that cannot be read; its page no longer proves the listing whole."""
        spider = self.spider
        spider.current_plan().pages_failed.add(page)
        spider.crawler.stats.inc_value("matter/list/bad_cards")
        url = bad.url if bad.url is not None else card_position_url(response, bad.position)
        stage = "list" if bad.url is None else "detail"
        if bad.url is not None:
            url = spider.canonical_url(bad.url) or url
            if len(url) > LETTER_URL_MAX:
                url, stage = card_position_url(response, bad.position), "list"
        reason = f"card {bad.position} of listing page {page}: {bad.reason}"
        logger.warning("Bad card: %s", terminal_safe(reason))
        self._send(None, url, stage, PARSE_FAILURE, reason, 1)
