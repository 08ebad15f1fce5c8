"""The ``matter_products`` spider: listing pages, then product pages, into the database.

``scrapy crawl matter_products`` crawls https://csa-iot.org (setting
``CSA_BASE_URL`` points it elsewhere, e.g. at the simulated site). Arguments
(``-a name=value``):

- ``mode``: ``auto`` (default: ``full`` on an empty database, then
  ``incremental``), ``full`` or ``incremental``; see :mod:`matter_crawler.planner`.
- ``refresh``: ``changed`` (default: detail pages of new products and of cards
  that changed) or ``all`` (every detail page).
- ``start_page`` / ``end_page``: a range of listing pages; ``max_pages``: at most
  that many listing pages; ``max_products``: at most that many detail pages.
- ``replay_dead_letters=1``: fetch only the pending dead letters again.

List stage: page 1's pagination gives the highest page; every page up to it is
fetched, and the page after it must answer 404 or a redirect ("past the end")
before the listing counts as complete. A non-last page with fewer than 12
cards is fetched once more before it is trusted. Detail stage: each product
page is parsed (:mod:`matter_crawler.parsing`) into a ``ProductItem``.

Hostile pages: a page the parsers refuse (:class:`~matter_crawler.parsing.PageParseError`,
e.g. markup nested past libxml2's limit) is dead-lettered with the parser's reason
(failure class ``parse``); a refused listing page also counts as failed in the plan, so
the listing is never taken as complete. A card that cannot be read costs that card
only: it is dead-lettered (class ``parse``; its product URL if it has one, else the
listing page's URL with ``#card-N``) and its page counts as failed in the plan too (a
product the page did not show readably cannot be proven gone). Product URLs are
canonical (:func:`~matter_crawler.parsing.canonical_product_url`): the detail request,
the ``known`` key, the stored row and the dead letters use the same string.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from twisted.python.failure import Failure

from ..exceptions import DeadLettered
from ..items import ListingSighting, ProductItem
from ..parsing import (
    BadCard,
    OffsiteURL,
    PageParseError,
    build_product,
    canonical_product_url,
    page_number_from_url,
    parse_detail,
    parse_listing,
)
from ..parsing.listing import ListingCard, ListingPage
from ..planner import (
    CARDS_PER_PAGE,
    MODES,
    REFRESH,
    CrawlPlan,
    choose_mode,
    known_before,
    needs_detail,
)
from ..request_url import requested_url
from ..safe_text import shortened, terminal_safe
from ..session import CrawlSession
from ..signals import dead_letter_resolved, request_dead_lettered
from ..storage import Database
from ..storage.dead_letters import pending_letters
from ..storage.products import KnownProduct, load_known_products

logger = logging.getLogger(__name__)

LISTING_PATH = "/csa-iot_products/"
#: Detail pages before listing pages keeps the queue of product pages short.
DETAIL_PRIORITY = 10
LIST_PRIORITY = 0
#: Statuses a listing page past the end answers with (redirects are not followed).
PAST_END_STATUSES = (301, 302, 303, 307, 308, 404, 410)
#: The failure class of a page or card the parsers refuse.
PARSE_FAILURE = "parse"


def _positive_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"spider argument {name} must be a whole number, not {value!r}") from None
    if number < 1:
        raise ValueError(f"spider argument {name} must be at least 1, not {number}")
    return number


#: Longest URL a dead letter is keyed by (the dead_letters.url column's size).
LETTER_URL_MAX = 1024


def _card_position_url(response: Response, position: int) -> str:
    """The key of a card with no usable link: its listing page's URL and its position."""
    request = response.request
    page_url = request.meta.get("redirect_urls", [request.url])[0] if request else response.url
    return f"{page_url.partition('#')[0]}#card-{position}"


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"} if value is not None else False


class MatterProductsSpider(Spider):
    name = "matter_products"

    def __init__(
        self,
        mode: str = "auto",
        refresh: str = "changed",
        start_page: Any = None,
        end_page: Any = None,
        max_pages: Any = None,
        max_products: Any = None,
        replay_dead_letters: Any = None,
        **kwargs: Any,
    ) -> None:
        # **kwargs: scrapyd passes _job, and Scrapy its own keyword arguments
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"spider argument mode must be one of {', '.join(MODES)}, not {mode!r}"
            )
        if refresh not in REFRESH:
            raise ValueError(
                f"spider argument refresh must be one of {', '.join(REFRESH)}, not {refresh!r}"
            )
        self.mode_requested = mode
        self.refresh_all = refresh == "all"
        self.start_page = _positive_int("start_page", start_page) or 1
        self.end_page = _positive_int("end_page", end_page)
        self.max_pages = _positive_int("max_pages", max_pages)
        self.max_products = _positive_int("max_products", max_products)
        if self.end_page is not None and self.end_page < self.start_page:
            raise ValueError(
                f"spider argument end_page ({self.end_page}) "
                f"is before start_page ({self.start_page})"
            )
        self.replay_dead_letters = _flag(replay_dead_letters)
        self.plan: CrawlPlan | None = None
        self.known: dict[str, KnownProduct] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> MatterProductsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.base_url = settings.get("CSA_BASE_URL", "https://csa-iot.org").rstrip("/")
        spider.listing_query = settings.get("CSA_LISTING_QUERY", "").lstrip("?")
        spider.site_host = urlparse(spider.base_url).hostname or ""
        spider.allowed_domains = [spider.site_host]
        # a link longer than a stored URL may be is not a product link (None: no bound)
        spider.max_url_length = settings.getwithbase("VALIDATION_MAX_LENGTHS").get("url")
        spider.database = Database.from_crawler(crawler)
        spider.session = CrawlSession.from_crawler(crawler)
        spider.session.register_state("spider", spider._saved_state)
        spider.session.register_state("spider_run", spider._saved_run)
        crawler.signals.connect(spider._dead_lettered, signal=request_dead_lettered)
        crawler.signals.connect(spider._request_dropped, signal=signals.request_dropped)
        return spider

    # -- URLs -----------------------------------------------------------------

    def listing_url(self, page: int) -> str:
        path = LISTING_PATH if page == 1 else f"{LISTING_PATH}page/{page}/"
        query = f"?{self.listing_query}" if self.listing_query else ""
        return f"{self.base_url}{path}{query}"

    def listing_request(self, page: int, *, refetch: bool = False) -> Request:
        meta: dict[str, Any] = {"stage": "list", "page": page}
        if refetch:
            meta["refetch"] = True
        if page > 1:
            # a page past the end answers 404 or redirects: the callback decides
            meta["dont_redirect"] = True
            meta["handle_httpstatus_list"] = list(PAST_END_STATUSES)
        return Request(
            self.listing_url(page),
            callback=self.parse_listing,
            errback=self.listing_failed,
            priority=LIST_PRIORITY,
            dont_filter=refetch,
            meta=meta,
        )

    def detail_request(self, card: ListingCard, page: int) -> Request:
        """The request for a card's product page (``card.url`` is canonical by now)."""
        return Request(
            card.url,
            callback=self.parse_detail,
            errback=self.detail_failed,
            priority=DETAIL_PRIORITY,
            meta={"stage": "detail", "listing_page": page},
        )

    # -- start ------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        self.known = await self.database.run(load_known_products)
        saved = self.session.restored_state("spider", queue_bound=True)
        # what this run set out to do survives even a hard kill (the same run goes on)
        run = self.session.restored_state("spider_run") or {}
        if saved:
            self.plan = CrawlPlan.from_state(saved["plan"])
            logger.info(
                "Resuming a %s crawl: %d listing pages done, %d scheduled",
                self.plan.mode,
                len(self.plan.pages_done),
                len(self.plan.pages_scheduled),
            )
            if self.plan.mode == "replay":
                return  # the letters not yet replayed are in the job's queue
        elif self.replay_dead_letters or run.get("mode") == "replay":
            self.plan = CrawlPlan(mode="replay", limited=True)
        else:
            # after a hard kill, the run keeps its mode: "auto" would now see a
            # partly filled database and walk it incrementally, missing the rest
            mode = run.get("mode") or choose_mode(self.mode_requested, len(self.known))
            self.refresh_all = run.get("refresh_all", self.refresh_all)
            last_wanted = self.end_page
            if self.max_pages is not None:
                by_count = self.start_page + self.max_pages - 1
                last_wanted = by_count if last_wanted is None else min(last_wanted, by_count)
            self.plan = CrawlPlan(
                mode=mode,
                refresh_all=self.refresh_all,
                first_page=self.start_page,
                last_page_wanted=last_wanted,
                limited=last_wanted is not None or self.start_page > 1 or bool(self.max_products),
            )
            logger.info(
                "Planning a %s crawl of %s (%d products known, refresh=%s)",
                mode,
                self.base_url,
                len(self.known),
                "all" if self.refresh_all else "changed",
            )

        self.session.save_state()  # a hard kill from here on still knows the run's mode
        if self.plan.mode == "replay":
            for letter in await self.database.run(pending_letters):
                yield self._replay_request(letter)
            return
        self.plan.pages_scheduled.add(1)
        yield self.listing_request(1)

    def _replay_request(self, letter: dict[str, Any]) -> Request:
        stage = letter["stage"]
        meta = {"replay": True}
        if stage == "list":
            request = self.listing_request(page_number_from_url(letter["url"]) or 1)
            return request.replace(dont_filter=True, meta={**request.meta, **meta})
        return Request(
            self.canonical_url(letter["url"]) or letter["url"],
            callback=self.parse_detail,
            errback=self.detail_failed,
            priority=DETAIL_PRIORITY,
            dont_filter=True,
            meta={"stage": stage or "detail", **meta},
        )

    def canonical_url(self, url: str) -> str | None:
        """The canonical form of a product URL on this site; None if it is not one."""
        try:
            return canonical_product_url(url, self.base_url)
        except ValueError:
            return None

    # -- list stage -----------------------------------------------------------------

    def parse_listing(self, response: Response) -> Iterator[Any]:
        plan = self._plan()
        page: int = response.meta["page"]
        if response.status != 200:
            self._past_the_end(page, response.status)
            self._resolved(response)
            return
        stats = self.crawler.stats
        try:
            listing = parse_listing(response.body, response.url, response.encoding)
        except PageParseError as error:
            plan.pages_failed.add(page)
            logger.warning("Listing page %d refused: %s", page, error.reason)
            self._page_refused(response, "list", error.reason)
            if plan.mode == "incremental":
                yield from self._continue_incremental(page)
            return
        self._resolved(response)  # the page parsed: a letter it has is resolved, in any run
        stats.inc_value("matter/list/pages")
        stats.inc_value("matter/list/cards", len(listing.cards))
        if listing.ignored_page_numbers:
            stats.inc_value("matter/list/ignored_page_numbers", len(listing.ignored_page_numbers))
            logger.warning(
                "Page %d: ignored page numbers that are not plain numbers: %s",
                page,
                terminal_safe(", ".join(listing.ignored_page_numbers)),
            )
        # a bad card is still a card: the page is neither past the end nor short for it
        shown = len(listing.cards) + len(listing.bad_cards)

        if not shown and page > 1:
            self._past_the_end(page, "no cards")
            return
        yield from self._extend_plan(listing.last_page or page, page)

        last_page = plan.site_last_page or page
        if shown < CARDS_PER_PAGE and page < last_page and not response.meta.get("refetch"):
            # a short page that is not the last is suspect: trust it only once fetched again
            stats.inc_value("matter/list/short_page_refetched")
            logger.info("Page %d shows %d cards, fetching it again", page, shown)
            yield self.listing_request(page, refetch=True)
            yield from self._cards(listing, page, response)
            return
        if shown < CARDS_PER_PAGE and page < last_page:
            stats.inc_value("matter/list/short_page_accepted")
            logger.warning("Page %d shows %d cards again; accepting it", page, shown)

        in_range = page >= plan.first_page
        if in_range:
            yield from self._cards(listing, page, response)
        plan.pages_done.add(page)
        if plan.mode == "incremental":
            yield from self._continue_incremental(page)

    def _extend_plan(self, shown_last_page: int, page: int) -> Iterator[Request]:
        """Learn the page count (page 1, or a page showing more pages than planned)."""
        plan = self._plan()
        if plan.site_last_page is not None and shown_last_page <= plan.site_last_page:
            return
        previous = plan.site_last_page
        plan.site_last_page = max(shown_last_page, page)
        logger.info(
            "The listing has %d pages%s",
            plan.site_last_page,
            "" if previous is None else f" (was {previous})",
        )
        if plan.mode == "full":
            for number in plan.pages_to_schedule():
                plan.pages_scheduled.add(number)
                yield self.listing_request(number)
        wanted = plan.last_page_wanted
        probe = plan.site_last_page + 1
        if (wanted is None or probe <= wanted) and plan.mode == "full":
            # the page after the last must be past the end, or the pagination lied
            plan.pages_scheduled.add(probe)
            yield self.listing_request(probe)

    def _past_the_end(self, page: int, why: int | str) -> None:
        plan = self._plan()
        plan.end_confirmed = True
        plan.pages_scheduled.discard(page)
        if plan.site_last_page is None or page <= plan.site_last_page:
            # the catalogue shrank while we crawled
            plan.site_last_page = page - 1
        logger.info("Page %d is past the end (%s): the listing has %d pages", page, why, page - 1)
        if plan.mode == "incremental":
            plan.walk_finished = True

    def _continue_incremental(self, page: int) -> Iterator[Request]:
        plan = self._plan()
        if plan.walk_finished:
            logger.info("Incremental walk stops after page %d: the rest is known", page)
            return
        next_page = page + 1
        wanted = plan.target_last_page()
        if wanted is not None and next_page > wanted:
            plan.walk_finished = True
            return
        plan.pages_scheduled.add(next_page)
        yield self.listing_request(next_page)

    def _cards(self, listing: ListingPage, page: int, response: Response) -> Iterator[Any]:
        plan = self._plan()
        stats = self.crawler.stats
        run_id = self.session.run_id
        known_flags: list[bool] = []
        seen: set[str] = set()
        # in page order: a card that cannot be read breaks an incremental run's known streak
        in_order = sorted((*listing.cards, *listing.bad_cards), key=lambda card: card.position)
        for shown in in_order:
            if isinstance(shown, BadCard):
                self._bad_card(response, page, shown)
                known_flags.append(False)
                continue
            try:
                url = canonical_product_url(shown.url, self.base_url)
            except OffsiteURL:
                self._dead_letter_offsite(shown, page, response)
                known_flags.append(False)
                continue
            except ValueError as error:
                reason = f"link {shortened(shown.url)} is not a product page of the site: {error}"
                self._bad_card(response, page, BadCard(shown.position, None, reason))
                known_flags.append(False)
                continue
            if self.max_url_length is not None and len(url) > self.max_url_length:
                reason = f"link of {len(url):,} characters, longer than a product URL may be"
                self._bad_card(response, page, BadCard(shown.position, None, reason))
                known_flags.append(False)
                continue
            if url in seen:  # the same product linked twice on one page (URL variants)
                stats.inc_value("matter/list/duplicate_cards")
                continue
            seen.add(url)
            card = shown
            if url != shown.url:
                stats.inc_value("matter/list/urls_canonicalised")
                card = replace(shown, url=url)
            known = self.known.get(card.url)
            known_flags.append(known_before(known, run_id))
            wanted = needs_detail(card, known, refresh_all=plan.refresh_all, run_id=run_id)
            fetch = wanted and (
                self.max_products is None or plan.details_scheduled < self.max_products
            )
            if fetch:
                plan.details_scheduled += 1
                stats.inc_value("matter/detail/scheduled")
                yield self.detail_request(card, page)
            else:
                stats.inc_value("matter/detail/skipped_known")
            if not fetch or known is not None:
                # A stored product the listing shows is seen now, whether or not its page
                # is fetched again: if that fetch fails for good, or the run is stopped
                # before it is stored, a complete listing must not count it as delisted.
                yield ListingSighting(
                    url=card.url,
                    manufacturer=card.manufacturer,
                    model=card.model,
                    certificate_id=card.certificate_id,
                    page=page,
                )
        if plan.mode == "incremental":
            plan.observe_incremental_page(known_flags)

    def _dead_letter_offsite(self, card: ListingCard, page: int, response: Response) -> None:
        self.crawler.stats.inc_value("matter/list/offsite_cards")
        url = card.url
        if len(url) > LETTER_URL_MAX:  # too long to key a letter: named by where it was seen
            url = _card_position_url(response, card.position)
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=None,
            url=url,
            stage="detail",
            failure_class="offsite",
            reason=f"listing page {page} links the product off-site ({shortened(card.url)})",
            attempts=0,
            first_failed_at=datetime.now(UTC),
        )

    def _bad_card(self, response: Response, page: int, bad: BadCard) -> None:
        """Dead-letter a card that cannot be read; its page no longer proves the listing whole."""
        self._plan().pages_failed.add(page)
        self.crawler.stats.inc_value("matter/list/bad_cards")
        url = bad.url if bad.url is not None else _card_position_url(response, bad.position)
        stage = "list" if bad.url is None else "detail"
        if bad.url is not None:
            url = self.canonical_url(bad.url) or url
            if len(url) > LETTER_URL_MAX:
                url, stage = _card_position_url(response, bad.position), "list"
        reason = f"card {bad.position} of listing page {page}: {bad.reason}"
        logger.warning("Bad card: %s", terminal_safe(reason))
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=None,
            url=url,
            stage=stage,
            failure_class=PARSE_FAILURE,
            reason=reason,
            attempts=1,
            first_failed_at=datetime.now(UTC),
        )

    def _page_refused(self, response: Response, stage: str, reason: str) -> None:
        """Dead-letter a page the parsers refuse (:class:`PageParseError`)."""
        self.crawler.stats.inc_value(f"matter/{stage}/refused")
        request = response.request
        url = self._card_url(request) if request is not None else response.url
        if stage == "detail":
            url = self.canonical_url(url) or url
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=request,
            url=url,
            stage=response.meta.get("stage", stage),
            failure_class=PARSE_FAILURE,
            reason=reason,
            attempts=response.meta.get("retry_times", 0) + 1,
            first_failed_at=datetime.now(UTC),
        )

    def listing_failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        page = request.meta["page"]
        plan = self._plan()
        plan.pages_failed.add(page)
        logger.warning("Listing page %d failed for good: %s", page, failure.getErrorMessage())
        self._dead_letter_unless_done(failure, "list")
        if plan.mode == "incremental":
            yield from self._continue_incremental(page)

    # -- detail stage ---------------------------------------------------------------

    def parse_detail(self, response: Response) -> Iterator[ProductItem]:
        requested = self._card_url(response.request)
        try:
            page = parse_detail(response.body, response.url, response.encoding)
        except PageParseError as error:
            self.crawler.stats.inc_value("matter/detail/failed")
            logger.warning("Product page %s refused: %s", requested, error.reason)
            self._page_refused(response, "detail", error.reason)
            return
        # the key of the product: the URL asked for (not a redirect's), in canonical form
        url = self.canonical_url(requested) or requested
        self.crawler.stats.inc_value("matter/detail/pages")
        # its dead letter, if any, is resolved once the batch holding it is committed
        yield build_product(page, url)

    def detail_failed(self, failure: Failure) -> None:
        self.crawler.stats.inc_value("matter/detail/failed")
        self._dead_letter_unless_done(failure, "detail")

    def page_failed(self, request: Request, *, counted: bool = False) -> Iterator[Request]:
        """A page whose callback or errback raised (the middleware dead-lettered it).

        Called by :class:`~matter_crawler.middlewares.callback_errors.CallbackErrorMiddleware`.
        The page counts as failed: a listing page makes a full run's listing
        incomplete, and an incremental walk goes on with the next page.
        ``counted``: the errback already counted the failure.
        """
        stage = request.meta.get("stage")
        if stage == "detail" and not counted:
            self.crawler.stats.inc_value("matter/detail/failed")
        if stage != "list" or self.plan is None:
            return
        page = request.meta["page"]
        self.plan.pages_failed.add(page)
        if self.plan.mode == "incremental":
            yield from self._continue_incremental(page)

    # -- dead letters -----------------------------------------------------------------

    def _dead_letter_unless_done(self, failure: Failure, stage: str) -> None:
        """Failures the retry middleware did not dead-letter (robots.txt...) go there too."""
        if failure.check(DeadLettered):
            return
        request = failure.request  # type: ignore[attr-defined]
        # IgnoreRequest: robots.txt, too many redirects... asking again changes nothing
        failure_class = "permanent" if failure.check(IgnoreRequest) else "transient"
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=request,
            url=self._card_url(request),
            stage=stage,
            failure_class=failure_class,
            reason=f"{failure.type.__name__}: {failure.getErrorMessage()}",
            attempts=request.meta.get("retry_times", 0) + 1,
            first_failed_at=datetime.now(UTC),
        )

    def _request_dropped(self, request: Request) -> None:
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
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=request,
            url=chain[0],
            stage=request.meta["stage"],
            failure_class="permanent",
            reason=reason,
            attempts=request.meta.get("retry_times", 0) + 1,
            first_failed_at=datetime.now(UTC),
        )

    @staticmethod
    def _card_url(request: Request) -> str:
        """The URL the crawl asked for (before any redirect): the product's key."""
        return requested_url(request)

    def _dead_lettered(self, stage: str, url: str, **_: Any) -> None:
        if stage == "list" and self.plan is not None:
            self.plan.pages_failed.add(page_number_from_url(url) or 1)

    def _resolved(self, response: Response) -> None:
        url = self._card_url(response.request)
        self.crawler.signals.send_catch_log(signal=dead_letter_resolved, url=url)

    # -- state ----------------------------------------------------------------------

    def _plan(self) -> CrawlPlan:
        assert self.plan is not None, "start() sets the plan"
        return self.plan

    def _saved_state(self) -> dict[str, Any] | None:
        return {"plan": self.plan.to_state()} if self.plan is not None else None

    def _saved_run(self) -> dict[str, Any] | None:
        if self.plan is None:
            return None
        return {"mode": self.plan.mode, "refresh_all": self.plan.refresh_all}

    def listing_complete(self) -> bool:
        """Whether this run saw the whole listing (products it did not see are delisted)."""
        return self.plan is not None and self.plan.listing_complete()

    def progress(self) -> dict[str, Any]:
        """Counts for progress reporting: listing pages and product pages, planned and done."""
        plan = self.plan
        stats = self.crawler.stats
        detail_done = stats.get_value("matter/detail/pages", 0)
        detail_failed = stats.get_value("matter/detail/failed", 0)
        if plan is None:
            return {"stage": "planning", "list_total": None, "list_done": 0, "list_failed": 0,
                    "detail_total": 0, "detail_done": 0, "detail_failed": 0}  # fmt: skip
        list_total = plan.target_last_page()
        if plan.mode == "incremental" and not plan.walk_finished:
            list_total = max(len(plan.pages_scheduled), len(plan.pages_done))
        return {
            "stage": self.stage(),
            "mode": plan.mode,
            "list_total": list_total,
            "list_done": len(plan.pages_done),
            "list_failed": len(plan.pages_failed),
            # product pages known to be wanted so far; grows while listing pages are read
            "detail_total": plan.details_scheduled,
            "detail_done": detail_done,
            "detail_failed": detail_failed,
        }

    def stage(self) -> str:
        """The stage the crawl is in: planning, list, detail or done."""
        plan = self.plan
        if plan is None:
            return "planning"
        if plan.mode == "replay":
            return "detail"
        if plan.site_last_page is None:
            return "planning"
        return "detail" if plan.list_stage_finished() else "list"
