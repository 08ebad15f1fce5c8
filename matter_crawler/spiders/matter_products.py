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
before the listing counts as complete. A page count beyond what the evidence
makes plausible (``LISTING_MAX_PAGES``, the previous run, the stored products)
is dead-lettered and not trusted: the listing is then walked a few pages ahead
of the highest page known to exist, until a page past the end. A non-last page
with fewer than 12 cards is fetched once more before it is trusted; a listing
whose page 1 shows no card at all stops the crawl (``markup_drift``). Detail
stage: each product page is parsed (:mod:`matter_crawler.parsing`) into a
``ProductItem``; with ``refresh=changed``, the pages stored longest ago are
fetched too (``REFRESH_MAX_AGE_DAYS``).

The end of a full run (``spider_idle``, see :mod:`matter_crawler.planner`):
page 1 is read again and walked until a page's worth of known cards, so that
products certified during the walk are stored too; then every stored product
the run did not see is looked for, on the listing page its certification date
puts it on when several are expected there, else with a confirmation request
for its own page, and only those proven gone (404, 410, a redirect to the
listing) are delisted, by the store pipeline at close
(:meth:`MatterProductsSpider.delisting`), unless a batch was lost or the markup
drifted. Stats: ``delist/...``, ``refresh/...``.

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
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlparse

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, DontCloseSpider, IgnoreRequest
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
from ..parsing.markup import listing_not_found
from ..parsing.urls import LISTING_PATH, listing_url
from ..planner import (
    CARDS_PER_PAGE,
    GONE_STATUSES,
    MODES,
    REDIRECT_STATUSES,
    REFRESH,
    CrawlPlan,
    choose_mode,
    confirmation_verdict,
    delist_share_exceeded,
    known_before,
    locate_pages,
    needs_detail,
    plausible_page_count,
    refresh_quota,
)
from ..request_url import requested_url
from ..safe_text import shortened, terminal_safe
from ..session import CrawlSession
from ..signals import dead_letter_resolved, markup_checked, request_dead_lettered
from ..storage import Database
from ..storage.dead_letters import pending_letters
from ..storage.products import (
    KnownProduct,
    load_known_products,
    oldest_fetched,
    refresh_counts,
)
from ..storage.runs import previous_run_facts

logger = logging.getLogger(__name__)

#: Detail pages before listing pages keeps the queue of product pages short.
DETAIL_PRIORITY = 10
LIST_PRIORITY = 0
#: Statuses a listing page past the end answers with (redirects are not followed).
PAST_END_STATUSES = (*REDIRECT_STATUSES, *GONE_STATUSES)
#: The failure class of a page or card the parsers refuse.
PARSE_FAILURE = "parse"
#: Longest URL a dead letter is keyed by (the dead_letters.url column's size).
LETTER_URL_MAX = 1024


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


def _card_position_url(response: Response, position: int) -> str:
    """The key of a card with no usable link: its listing page's URL and its position."""
    request = response.request
    page_url = requested_url(request) if request is not None else response.url
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
        # product URLs listing cards showed in this process (a stored product seen
        # by an earlier process of the run has last_seen_run_id = the run)
        self.seen_urls: set[str] = set()
        self._refreshing: set[str] = set()  # refresh requests of this process
        # product pages this process read (True: the product; False: 404/410)
        self._page_answers: dict[str, bool] = {}

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
        spider.delist_max_share = settings.getfloat("DELIST_MAX_SHARE")
        spider.listing_max_pages = settings.getint("LISTING_MAX_PAGES")
        spider.refresh_max_age_days = settings.getfloat("REFRESH_MAX_AGE_DAYS")
        spider.database = Database.from_crawler(crawler)
        spider.session = CrawlSession.from_crawler(crawler)
        spider.session.register_state("spider", spider._saved_state)
        spider.session.register_state("spider_run", spider._saved_run)
        crawler.signals.connect(spider._dead_lettered, signal=request_dead_lettered)
        crawler.signals.connect(spider._request_dropped, signal=signals.request_dropped)
        crawler.signals.connect(spider._spider_idle, signal=signals.spider_idle)
        return spider

    # -- URLs -----------------------------------------------------------------

    def listing_url(self, page: int) -> str:
        return listing_url(self.base_url, page, self.listing_query)

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

    def refresh_request(self, url: str) -> Request:
        """A stored product's page, fetched again because it is among the oldest."""
        return Request(
            url,
            callback=self.parse_refresh,
            errback=self.detail_failed,
            priority=DETAIL_PRIORITY,
            meta={"stage": "detail", "refresh": True, "handle_httpstatus_list": [*GONE_STATUSES]},
        )

    def rewalk_request(self, page: int) -> Request:
        """A listing page read again at the end of a full run (see the module docstring)."""
        request = self.listing_request(page)
        return request.replace(
            callback=self.parse_rewalk,
            errback=self.rewalk_failed,
            dont_filter=True,
            meta={**request.meta, "rewalk": True},
        )

    def confirm_request(self, url: str) -> Request:
        """The page of a stored product the listing did not show: is it gone?"""
        return Request(
            url,
            callback=self.parse_confirmation,
            errback=self.confirmation_failed,
            priority=DETAIL_PRIORITY,
            dont_filter=True,
            meta={
                # a product page: the content check and the retries of one apply
                "stage": "detail",
                "delist_confirm": True,
                "dont_redirect": True,
                "handle_httpstatus_list": [*REDIRECT_STATUSES, *GONE_STATUSES],
            },
        )

    # -- start ------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        saved = self.session.restored_state("spider", queue_bound=True)
        if saved:
            # at once, before any wait: a resumed job's queue is served meanwhile
            self.plan = CrawlPlan.from_state(saved["plan"])
        self.known = await self.database.run(load_known_products)
        # what this run set out to do survives even a hard kill (the same run goes on)
        run = self.session.restored_state("spider_run") or {}
        previous_started: datetime | None = None
        if saved:
            plan = self._plan()
            logger.info(
                "Resuming a %s crawl: %d listing pages done, %d scheduled",
                plan.mode,
                len(plan.pages_done),
                len(plan.pages_scheduled),
            )
            if plan.mode == "replay":
                return  # the letters not yet replayed are in the job's queue
        elif self.replay_dead_letters or run.get("mode") == "replay":
            self.plan = CrawlPlan(mode="replay", limited=True)
        else:
            previous_started, previous_pages = await self.database.run(
                previous_run_facts, self.session.run_id
            )
            self.plan = self._new_plan(run, previous_pages)
        plan = self._plan()

        self.session.save_state()  # a hard kill from here on still knows the run's mode
        if plan.mode == "replay":
            for letter in await self.database.run(pending_letters):
                yield self._replay_request(letter)
            return
        # a resumed plan's refresh requests are in the job's queue already
        refresh = [] if saved else await self._plan_refresh(previous_started)
        plan.mark_scheduled(1)
        yield self.listing_request(1)
        for url in refresh:
            yield self.refresh_request(url)

    def _new_plan(self, run: dict[str, Any], previous_pages: int | None) -> CrawlPlan:
        # after a hard kill, the run keeps its mode: "auto" would now see a
        # partly filled database and walk it incrementally, missing the rest
        mode = run.get("mode") or choose_mode(self.mode_requested, len(self.known))
        self.refresh_all = run.get("refresh_all", self.refresh_all)
        last_wanted = self.end_page
        if self.max_pages is not None:
            by_count = self.start_page + self.max_pages - 1
            last_wanted = by_count if last_wanted is None else min(last_wanted, by_count)
        # evidence of the page count: products stored before this run (not by it before
        # a hard kill: a first run's partial rows say nothing of the catalogue's size)
        run_id = self.session.run_id
        stored = sum(
            1
            for known in self.known.values()
            if not known.delisted and (run_id is None or known.first_seen_run_id != run_id)
        )
        logger.info(
            "Planning a %s crawl of %s (%d products known, refresh=%s)",
            mode,
            self.base_url,
            len(self.known),
            "all" if self.refresh_all else "changed",
        )
        return CrawlPlan(
            mode=mode,
            refresh_all=self.refresh_all,
            first_page=self.start_page,
            last_page_wanted=last_wanted,
            limited=last_wanted is not None or self.start_page > 1 or bool(self.max_products),
            page_bound=plausible_page_count(previous_pages, stored, self.listing_max_pages),
            page_ceiling=self.listing_max_pages,
            page_bound_evidence=(
                f"previous run: {previous_pages or 'none'} pages; {stored:,} stored products; "
                f"LISTING_MAX_PAGES {self.listing_max_pages:,}"
            ),
        )

    async def _plan_refresh(self, previous_started: datetime | None) -> list[str]:
        """The product pages stored longest ago, fetched again (``REFRESH_MAX_AGE_DAYS``)."""
        plan = self._plan()
        period = self.refresh_max_age_days
        if plan.refresh_all or plan.limited or period <= 0 or not self.known:
            return []
        now = datetime.now(UTC)
        days = None
        if previous_started is not None:
            days = max(0.0, (now - previous_started).total_seconds() / 86400)
        # pages older than this pass the age limit before a next run at the same pace
        older_than = now - timedelta(days=max(0.0, period - (days or 0.0)))
        stored, due = await self.database.run(refresh_counts, older_than)
        quota = refresh_quota(stored, due, days, period)
        urls = await self.database.run(oldest_fetched, quota, self.session.run_id) if quota else []
        stats = self.crawler.stats
        stats.set_value("refresh/quota", quota)
        stats.set_value("refresh/due", due)
        plan.refresh_scheduled = len(urls)
        self._refreshing.update(urls)
        if urls:
            logger.info(
                "Fetching again the %d product pages stored longest ago (%d of %d stored pages "
                "are due; every page is read at least once in %g days)",
                len(urls),
                due,
                stored,
                period,
            )
        return urls

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
        recheck = bool(response.meta.get("recheck"))
        if response.status != 200:
            self._past_the_end(page, response.status, recheck=recheck)
            self._resolved(response)
            return
        stats = self.crawler.stats
        listing = self._parsed_listing(response)
        if listing is None:
            plan.pages_failed.add(page)
            if plan.mode == "incremental":
                yield from self._continue_incremental(page)
            return
        self._resolved(response)  # the page parsed: a letter it has is resolved, in any run
        stats.inc_value("matter/list/pages")
        stats.inc_value("matter/list/cards", len(listing.cards))
        self._markup_checked(response, listing)
        # a bad card is still a card: the page is neither past the end nor short for it
        shown = len(listing.cards) + len(listing.bad_cards)

        if not listing.cards and page == 1:
            self._markup_drift("listing page 1 shows no product cards", listing)
        if not shown:
            if listing.last_page is not None and page <= listing.last_page:
                # the page says it is part of the listing: a page the parser cannot read
                self._unreadable_listing_page(response, listing)
                if plan.mode == "incremental":
                    yield from self._continue_incremental(page)
                return
            self._past_the_end(page, "no cards", recheck=recheck)
            return
        yield from self._extend_plan(listing, page)

        last_page = plan.site_last_page or page
        if shown < CARDS_PER_PAGE and page < last_page and not response.meta.get("refetch"):
            # a short page that is not the last is suspect: trust it only once fetched again
            stats.inc_value("matter/list/short_page_refetched")
            logger.info("Page %d shows %d cards, fetching it again", page, shown)
            yield self.listing_request(page, refetch=True)
            yield from self._cards(self._readable_cards(listing, page, response), page)
            return
        if shown < CARDS_PER_PAGE and page < last_page:
            stats.inc_value("matter/list/short_page_accepted")
            logger.warning("Page %d shows %d cards again; accepting it", page, shown)

        in_range = page >= plan.first_page
        if in_range:
            yield from self._cards(self._readable_cards(listing, page, response), page)
        plan.pages_done.add(page)
        if plan.mode == "incremental":
            yield from self._continue_incremental(page)

    def _parsed_listing(self, response: Response) -> ListingPage | None:
        """The listing page parsed; None when the parser refuses it (then dead-lettered)."""
        try:
            listing = parse_listing(response.body, response.url, response.encoding)
        except PageParseError as error:
            logger.warning("Listing page %s refused: %s", response.meta.get("page"), error.reason)
            self._page_refused(response, "list", error.reason)
            return None
        if listing.ignored_page_numbers:
            self.crawler.stats.inc_value(
                "matter/list/ignored_page_numbers", len(listing.ignored_page_numbers)
            )
            logger.warning(
                "Page %s: ignored page numbers that are not plain numbers: %s",
                response.meta.get("page"),
                terminal_safe(", ".join(listing.ignored_page_numbers)),
            )
        return listing

    def _markup_checked(self, response: Response, listing: ListingPage) -> None:
        self.crawler.signals.send_catch_log(
            signal=markup_checked,
            stage="list",
            url=response.url,
            not_found=listing_not_found(listing),
        )

    def _markup_drift(self, what: str, listing: ListingPage) -> None:
        """Stop the crawl: the listing no longer matches the parser (nothing is delisted)."""
        self.crawler.stats.set_value("drift/detected", 1)
        logger.error(
            "Markup drift: %s (not found: %s). Closing the crawl (markup_drift): nothing is "
            "delisted and the stored products are left as they are",
            what,
            ", ".join(listing_not_found(listing)),
        )
        raise CloseSpider("markup_drift")

    def _unreadable_listing_page(self, response: Response, listing: ListingPage) -> None:
        """A page inside the listing that shows no card: failed, so no run delists by it."""
        page: int = response.meta["page"]
        self.crawler.stats.inc_value("matter/list/unreadable_pages")
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=response.request,
            url=response.url,
            stage="list",
            failure_class="content",
            reason=(
                f"listing page {page} of {listing.last_page} shows no product cards "
                f"(not found: {', '.join(listing_not_found(listing))})"
            ),
            attempts=response.meta.get("retry_times", 0) + 1,
            first_failed_at=datetime.now(UTC),
        )

    def _extend_plan(self, listing: ListingPage, page: int) -> Iterator[Request]:
        """Learn the page count (page 1, or a page showing more pages than planned).

        A count beyond the evidence (``plan.page_bound``) is dead-lettered and not
        trusted: from then on the listing is walked ``WALK_AHEAD`` pages beyond the
        highest page known to exist, until a page past the end.
        """
        plan = self._plan()
        shown_last_page = listing.last_page or page
        bound = plan.page_bound or self.listing_max_pages
        if shown_last_page > bound:
            self._implausible_page_count(shown_last_page, bound, page)
            plan.pagination_trusted = False
        if not plan.pagination_trusted:
            if plan.site_last_page is None or page > plan.site_last_page:
                plan.site_last_page = page  # the highest page known to exist
            if plan.mode == "full":
                for number in plan.pages_to_schedule():
                    plan.mark_scheduled(number)
                    yield self.listing_request(number)
            return
        if plan.end_rechecked is not None:
            shown_last_page = min(shown_last_page, max(page, plan.end_rechecked - 1))
        if plan.site_last_page is not None and shown_last_page <= plan.site_last_page:
            return
        previous = plan.site_last_page
        plan.site_last_page = max(shown_last_page, page)
        logger.info(
            "The listing has %d pages%s",
            plan.site_last_page,
            "" if previous is None else f" (was {previous})",
        )
        yield from self._recheck_past_end()
        if plan.mode == "full":
            for number in plan.pages_to_schedule():
                plan.mark_scheduled(number)
                yield self.listing_request(number)
        wanted = plan.last_page_wanted
        probe = plan.site_last_page + 1
        if (wanted is None or probe <= wanted) and plan.mode == "full":
            # the page after the last must be past the end, or the pagination lied
            plan.mark_scheduled(probe)
            yield self.listing_request(probe)

    def _recheck_past_end(self) -> Iterator[Request]:
        """Ask again, once, for pages that answered "past the end" though a page now shows more.

        Either the catalogue grew (the page now has cards), or that claim was rendered
        before the catalogue shrank, or the page answered 404 for a while. A page past
        the end a second time is the end, whatever other pages claim.
        """
        plan = self._plan()
        last = plan.site_last_page or 0
        for number in sorted(p for p in plan.pages_past_end if p <= last):
            plan.pages_past_end.discard(number)
            self.crawler.stats.inc_value("matter/list/past_end_rechecked")
            request = self.listing_request(number, refetch=True)
            request.meta["recheck"] = True
            yield request

    def _implausible_page_count(self, claimed: int, bound: int, page: int) -> None:
        """Dead-letter a page count no evidence supports (once per run)."""
        plan = self._plan()
        self.crawler.stats.inc_value("matter/list/implausible_page_count")
        if not plan.pagination_trusted:
            return
        reason = (
            f"listing page {page}'s pagination claims {claimed:,} pages, but at most "
            f"{bound:,} are plausible ({plan.page_bound_evidence or 'no evidence'}): the claim is "
            "not trusted; the listing is walked page by page until a page past the end"
        )
        logger.warning("%s", reason)
        self.crawler.signals.send_catch_log(
            signal=request_dead_lettered,
            request=None,
            url=self.listing_url(claimed),
            stage="list",
            failure_class="invalid",
            reason=reason,
            attempts=1,
            first_failed_at=datetime.now(UTC),
        )

    def _past_the_end(self, page: int, why: int | str, *, recheck: bool = False) -> None:
        plan = self._plan()
        plan.end_confirmed = True
        plan.pages_scheduled.discard(page)
        plan.pages_past_end.add(page)
        if recheck and (plan.end_rechecked is None or page < plan.end_rechecked):
            plan.end_rechecked = page
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
        wanted = plan.incremental_last_page()
        if wanted is not None and next_page > wanted:
            plan.walk_finished = True
            return
        plan.mark_scheduled(next_page)
        yield self.listing_request(next_page)

    def _readable_cards(
        self, listing: ListingPage, page: int, response: Response
    ) -> list[ListingCard | None]:
        """The page's cards in page order, each under its canonical URL.

        A card that cannot be read (a bad link, an off-site or over-long one) is
        dead-lettered here and stands as None: it breaks an incremental run's known
        streak. The same product linked twice on the page is kept once.
        """
        stats = self.crawler.stats
        readable: list[ListingCard | None] = []
        seen: set[str] = set()
        in_order = sorted((*listing.cards, *listing.bad_cards), key=lambda card: card.position)
        for shown in in_order:
            if isinstance(shown, BadCard):
                self._bad_card(response, page, shown)
                readable.append(None)
                continue
            try:
                url = canonical_product_url(shown.url, self.base_url)
            except OffsiteURL:
                self._dead_letter_offsite(shown, page, response)
                readable.append(None)
                continue
            except ValueError as error:
                reason = f"link {shortened(shown.url)} is not a product page of the site: {error}"
                self._bad_card(response, page, BadCard(shown.position, None, reason))
                readable.append(None)
                continue
            if self.max_url_length is not None and len(url) > self.max_url_length:
                reason = f"link of {len(url):,} characters, longer than a product URL may be"
                self._bad_card(response, page, BadCard(shown.position, None, reason))
                readable.append(None)
                continue
            if url in seen:  # the same product linked twice on one page (URL variants)
                stats.inc_value("matter/list/duplicate_cards")
                continue
            seen.add(url)
            if url != shown.url:
                stats.inc_value("matter/list/urls_canonicalised")
            readable.append(replace(shown, url=url) if url != shown.url else shown)
        return readable

    def _cards(self, cards: list[ListingCard | None], page: int) -> Iterator[Any]:
        """Detail requests and sightings for a page's cards (:meth:`_readable_cards`)."""
        plan = self._plan()
        stats = self.crawler.stats
        run_id = self.session.run_id
        known_flags: list[bool] = []
        for card in cards:
            if card is None:  # dead-lettered as it was read
                known_flags.append(False)
                continue
            known = self.known.get(card.url)
            known_flags.append(known_before(known, run_id))
            if card.url in self.seen_urls:
                continue  # shown twice (the listing moved, a page read again): handled once
            self.seen_urls.add(card.url)
            wanted = needs_detail(card, known, refresh_all=plan.refresh_all, run_id=run_id)
            # a page this run fetches again anyway (REFRESH_MAX_AGE_DAYS) is not asked twice
            fetch = (
                wanted
                and card.url not in self._refreshing
                and (self.max_products is None or plan.details_scheduled < self.max_products)
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
        yield from self._detail_items(response)

    def _detail_items(self, response: Response) -> Iterator[ProductItem]:
        item = self._product(response)
        if item is not None:
            self.crawler.stats.inc_value("matter/detail/pages")
            yield item

    def _product(self, response: Response) -> ProductItem | None:
        """The product a page shows; None when the parser refuses the page (dead-lettered)."""
        requested = self._card_url(response.request)
        try:
            page = parse_detail(response.body, response.url, response.encoding)
        except PageParseError as error:
            self.crawler.stats.inc_value("matter/detail/failed")
            logger.warning("Product page %s refused: %s", requested, error.reason)
            self._page_refused(response, "detail", error.reason)
            return None
        # the key of the product: the URL asked for (not a redirect's), in canonical form
        url = self.canonical_url(requested) or requested
        self._page_answers[url] = True
        # its dead letter, if any, is resolved once the batch holding it is committed
        return build_product(page, url)

    def parse_refresh(self, response: Response) -> Iterator[ProductItem]:
        """A page fetched again for its age; a product gone meanwhile is left to a full run."""
        stats = self.crawler.stats
        stats.inc_value("refresh/pages")
        if response.status in GONE_STATUSES:
            url = self._card_url(response.request)
            self._page_answers[url] = False
            stats.inc_value("refresh/gone")
            logger.info(
                "%s answers %d: the product left the catalogue (a full run delists it)",
                url,
                response.status,
            )
            return
        # not through parse_detail: a subclass may make that callback async
        yield from self._detail_items(response)

    # -- the end of a full run: page 1 again, then proof for each product not seen -----------

    def _spider_idle(self) -> None:
        """Out of work: a full run re-reads page 1, then confirms, before it may close."""
        requests = self._finishing_requests()
        if requests:
            engine = self.crawler.engine
            assert engine is not None
            for request in requests:
                engine.crawl(request)
            raise DontCloseSpider

    def _finishing_requests(self) -> list[Request]:
        """The next phase's requests (an empty list: the run may end)."""
        plan = self.plan
        if plan is None or not plan.finishes_with_a_rewalk():
            return []
        if self.crawler.stats.get_value("drift/detected"):
            return []
        if plan.finish_phase == "listing":
            if not plan.list_stage_finished():
                return []
            plan.finish_phase = "rewalk"
            plan.rewalk_scheduled += 1
            self.crawler.stats.inc_value("delist/rewalk_pages_scheduled")
            logger.info("The listing walk is over: reading page 1 again for products listed since")
            return [self.rewalk_request(1)]
        if plan.finish_phase == "rewalk":
            plan.finish_phase = "locate"
            requests = self._start_locating()
            if requests:
                return requests
        if plan.finish_phase == "locate":
            plan.finish_phase = "confirm"
            requests = self._confirmation_requests()
            if requests:
                return requests
        if plan.finish_phase == "confirm":
            plan.finish_phase = "done"
            self._log_delisting_summary()
        return []

    def parse_rewalk(self, response: Response) -> Iterator[Any]:
        """Page 1 and onwards again, until a page's worth of known cards."""
        plan = self._plan()
        stats = self.crawler.stats
        page: int = response.meta["page"]
        plan.rewalk_done += 1
        stats.inc_value("delist/rewalk_pages")
        if response.status != 200:
            plan.rewalk_finished = True
            return
        listing = self._parsed_listing(response)
        if listing is None:
            plan.rewalk_finished = True
            return
        self._markup_checked(response, listing)
        if not listing.cards:
            if page == 1:
                self._markup_drift("listing page 1 shows no product cards", listing)
            if not listing.bad_cards:
                plan.rewalk_finished = True
                return
        cards = self._readable_cards(listing, page, response)
        flags = [card is not None and self._known_to_rewalk(card.url) for card in cards]
        stats.inc_value("delist/rewalk_new_cards", flags.count(False))
        yield from self._cards(cards, page)
        plan.observe_rewalk_page(flags)
        ceiling = plan.page_ceiling or self.listing_max_pages
        if not plan.rewalk_finished and page < ceiling:
            plan.rewalk_scheduled += 1
            stats.inc_value("delist/rewalk_pages_scheduled")
            yield self.rewalk_request(page + 1)
        else:
            plan.rewalk_finished = True

    def _known_to_rewalk(self, url: str) -> bool:
        """Stored before, or seen by this run: the re-walk stops after a page of these."""
        known = self.known.get(url)
        return url in self.seen_urls or (known is not None and not known.delisted)

    def rewalk_failed(self, failure: Failure) -> None:
        plan = self._plan()
        plan.rewalk_done += 1
        plan.rewalk_finished = True
        self.crawler.stats.inc_value("delist/rewalk_failed")
        logger.warning("Reading the listing again failed: %s", failure.getErrorMessage())
        # its new products are neither stored nor known: the page is a dead letter
        self._dead_letter_unless_done(failure, "list")

    def _delist_candidates(self) -> list[str]:
        """Stored products (listed before this run) the run did not see on any listing page."""
        run_id = self.session.run_id
        return sorted(
            url
            for url, known in self.known.items()
            if not known.delisted
            and url not in self.seen_urls
            and (run_id is None or known.last_seen_run_id != run_id)
        )

    def _start_locating(self) -> list[Request]:
        """The candidates, the share gate, then the listing pages where several should be."""
        plan = self._plan()
        stats = self.crawler.stats
        if not plan.listing_complete():
            plan.delist_outcome = "listing_incomplete"
            logger.warning("The listing was not seen whole: no product is delisted this run")
            return []
        candidates = self._delist_candidates()
        run_id = self.session.run_id
        stored = sum(
            1
            for known in self.known.values()
            if not known.delisted and (run_id is None or known.first_seen_run_id != run_id)
        )
        plan.delist_candidate_count = len(candidates)
        stats.set_value("delist/candidates", len(candidates))
        if delist_share_exceeded(len(candidates), stored, self.delist_max_share):
            plan.delist_outcome = "too_many_candidates"
            stats.set_value("delist/refused", 1)
            logger.error(
                "%d of the %d stored products (%.1f%%) were not on the listing, more than "
                "DELIST_MAX_SHARE (%.1f%%): a listing hiding that much is broken, not shrinking. "
                "Nothing is delisted this run",
                len(candidates),
                stored,
                100 * len(candidates) / max(stored, 1),
                100 * self.delist_max_share,
            )
            return []
        plan.delist_outcome = "delisted"  # unless a batch is lost or the markup drifts
        plan.delist_unseen = candidates
        if not candidates:
            return []
        logger.info(
            "%d stored products were not on the listing: looking for each one before delisting it",
            len(candidates),
        )
        seen_dates = [self._certified(url) for url in self.seen_urls]
        pages = locate_pages({url: self._certified(url) for url in candidates}, seen_dates)
        if pages:
            logger.info(
                "Reading listing pages %s again, where %d of them should be",
                ", ".join(map(str, pages)),
                sum(len(urls) for urls in pages.values()),
            )
        plan.locate_scheduled = len(pages)
        stats.inc_value("delist/locate_pages_scheduled", len(pages))
        plan.locate_pages = sorted(pages)
        return [self.locate_request(page, urls) for page, urls in pages.items()]

    def _certified(self, url: str) -> date | None:
        known = self.known.get(url)
        return None if known is None else known.certification_date

    def locate_request(self, page: int, urls: list[str], *, second: bool = False) -> Request:
        """A listing page where products the walk missed should be (the end of a full run)."""
        request = self.listing_request(page)
        return request.replace(
            callback=self.parse_locate,
            errback=self.locate_failed,
            dont_filter=True,
            meta={**request.meta, "rewalk": True, "locate": urls, "second": second},
        )

    def parse_locate(self, response: Response) -> Iterator[Any]:
        """Candidates this page shows are still listed; those certified before its first
        card or after its last are on the page before or after it, read once more."""
        plan = self._plan()
        plan.locate_done += 1
        self.crawler.stats.inc_value("delist/locate_pages")
        if response.status != 200:
            return
        listing = self._parsed_listing(response)
        if listing is None:
            return
        self._markup_checked(response, listing)
        page: int = response.meta["page"]
        cards = [card for card in self._readable_cards(listing, page, response) if card]
        unseen = set(plan.delist_unseen) - set(plan.delist_found)
        found = [card.url for card in cards if card.url in unseen]
        plan.delist_found += found
        self.crawler.stats.inc_value("delist/located", len(found))
        yield from self._cards(list(cards), page)
        shown = [day for card in cards if (day := self._certified(card.url))]
        if response.meta.get("second") or not shown:
            return
        # missed products sit where pages meet: an estimate one place off is a page off
        missing = [url for url in response.meta.get("locate", ()) if url not in found]
        before = [url for url in missing if (self._certified(url) or min(shown)) > max(shown)]
        after = [url for url in missing if (self._certified(url) or max(shown)) < min(shown)]
        for neighbour, urls in ((page - 1, before), (page + 1, after)):
            if len(urls) >= 2 and neighbour >= 1 and neighbour not in plan.locate_pages:
                plan.locate_pages.append(neighbour)
                plan.locate_scheduled += 1
                yield self.locate_request(neighbour, urls, second=True)

    def locate_failed(self, failure: Failure) -> None:
        self._plan().locate_done += 1
        self.crawler.stats.inc_value("delist/locate_failed")
        logger.info("A listing page read to find products failed: %s", failure.getErrorMessage())

    def _confirmation_requests(self) -> list[Request]:
        """A request for the page of each candidate the listing still did not show."""
        plan = self._plan()
        stats = self.crawler.stats
        if plan.delist_outcome != "delisted":
            return []
        found = set(plan.delist_found)  # still listed: counted in delist_record
        if found:
            stats.inc_value("delist/still_listed", len(found))
        requests = []
        for url in plan.delist_unseen:
            if url in found:
                continue
            answer = self._page_answers.get(url)
            if answer is None:
                plan.delist_candidates.append(url)
                requests.append(self.confirm_request(url))
            elif answer:  # fetched this run (refresh): its page shows the product
                plan.delist_listed += 1
                stats.inc_value("delist/still_listed")
            else:  # its refresh answered 404 or 410
                plan.delist_gone.append(url)
                stats.inc_value("delist/confirmed_gone")
        stats.inc_value("delist/confirm_requests", len(requests))
        return requests

    def parse_confirmation(self, response: Response) -> Iterator[ProductItem]:
        """404, 410 or a redirect to the listing: gone. The product's page: still listed."""
        plan = self._plan()
        stats = self.crawler.stats
        url = self._card_url(response.request)
        location = response.headers.get(b"Location")
        target = urljoin(response.url, location.decode("latin-1")) if location else None
        verdict = confirmation_verdict(
            response.status, target, LISTING_PATH, has_product=response.status == 200
        )
        if verdict == "gone":
            plan.delist_gone.append(url)
            stats.inc_value("delist/confirmed_gone")
            return
        if verdict == "listed":
            # the listing hid a product the site still has: store its page like any other
            plan.delist_listed += 1
            stats.inc_value("delist/still_listed")
            self.seen_urls.add(url)
            item = self._product(response)
            if item is not None:
                yield item
            return
        plan.delist_unknown += 1
        stats.inc_value("delist/unconfirmed")
        logger.warning(
            "%s answered %d%s: not proof that the product is gone; it stays listed",
            url,
            response.status,
            f" -> {target}" if target else "",
        )

    def confirmation_failed(self, failure: Failure) -> None:
        plan = self._plan()
        plan.delist_unknown += 1
        self.crawler.stats.inc_value("delist/unconfirmed")
        self._dead_letter_unless_done(failure, "detail")

    def _log_delisting_summary(self) -> None:
        plan = self._plan()
        if plan.delist_outcome != "delisted":
            return
        still_listed = plan.still_listed()
        if still_listed:
            logger.warning(
                "The listing was inconsistent: %d products the walk did not see are still on "
                "the site (the catalogue changed during the walk, or the listing hides them): "
                "%d found on the listing page their date puts them on, %d by their own page",
                still_listed,
                len(plan.delist_found),
                plan.delist_listed,
            )
        logger.info(
            "Of %d products not on the listing: %d gone (delisted at close), %d still listed, "
            "%d unconfirmed (not delisted this run)",
            plan.delist_candidate_count or 0,
            len(plan.delist_gone),
            still_listed,
            plan.delist_unknown,
        )

    def delisting(self) -> list[str]:
        """What the store pipeline delists at close: the products proven gone, if nothing
        makes the run's view doubtful (a lost batch, markup drift)."""
        plan = self.plan
        if plan is None or plan.finish_phase != "done" or plan.delist_outcome != "delisted":
            return []
        stats = self.crawler.stats
        lost = stats.get_value("store/batches_lost", 0)
        if lost:
            plan.delist_outcome = "batches_lost"
            logger.error("%d batches were lost: no product is delisted this run", lost)
            return []
        if stats.get_value("drift/detected"):
            plan.delist_outcome = "markup_drift"
            return []
        return list(plan.delist_gone)

    def delist_record(self, reason: str) -> dict[str, Any]:
        """The run record's delisting columns (see ``crawl_runs.delist_outcome``)."""
        plan = self.plan
        if plan is None or not plan.finishes_with_a_rewalk():
            return {"delist_outcome": None, "delist_candidates": None, "delist_still_listed": None}
        outcome = plan.delist_outcome
        if reason == "markup_drift" or self.crawler.stats.get_value("drift/detected"):
            outcome = "markup_drift"
        elif plan.finish_phase != "done":
            outcome = "interrupted" if reason != "finished" else "listing_incomplete"
        elif outcome is None:
            outcome = "listing_incomplete"
        counted = plan.delist_candidate_count
        return {
            "delist_outcome": outcome,
            "delist_candidates": counted,
            "delist_still_listed": None if counted is None else plan.still_listed(),
        }

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
        if self.plan.mode == "incremental" and not request.meta.get("rewalk"):
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

    def _dead_lettered(
        self,
        stage: str,
        url: str,
        failure_class: str | None = None,
        request: Request | None = None,
        **_: Any,
    ) -> None:
        if stage != "list" or self.plan is None:
            return
        if failure_class == "invalid" or (request is not None and request.meta.get("rewalk")):
            return  # a page count not believed, a page read again: the walk has no hole
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
        """Whether this run saw the whole listing (its products not seen are then confirmed)."""
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
        counts = {
            "stage": self.stage(),
            "mode": plan.mode,
            "list_total": list_total,
            "list_done": len(plan.pages_done),
            "list_failed": len(plan.pages_failed),
            # product pages known to be wanted so far; grows while listing pages are read
            "detail_total": plan.details_scheduled + plan.refresh_scheduled,
            "detail_done": detail_done,
            "detail_failed": detail_failed,
        }
        if plan.finish_phase != "listing":
            # the end of a full run: listing pages read again, then each candidate's answer
            counts["delist_total"] = (
                plan.rewalk_scheduled + plan.locate_scheduled + len(plan.delist_unseen)
            )
            counts["delist_done"] = (
                plan.rewalk_done
                + plan.locate_done
                + len(plan.delist_found)
                + plan.confirmations_answered()
                - plan.delist_unknown
            )
            counts["delist_failed"] = plan.delist_unknown
        return counts

    def stage(self) -> str:
        """The stage the crawl is in: planning, list, detail or done."""
        plan = self.plan
        if plan is None:
            return "planning"
        if plan.mode == "replay":
            return "detail"
        if plan.finish_phase in ("rewalk", "locate", "confirm"):
            return "delist"
        if plan.site_last_page is None:
            return "planning"
        return "detail" if plan.list_stage_finished() else "list"
