"""The listing walk: read listing pages, extend the plan, hand on the cards.

Page 1's pagination gives the highest page; every page up to it is fetched, and
the page after it must answer 404 or a redirect ("past the end") before the
listing counts as complete. A page count beyond what the evidence makes plausible
is dead-lettered and not trusted: the listing is then walked a few pages ahead of
the highest page known to exist, until a page past the end. A non-last page with
fewer than 12 cards is fetched once more before it is trusted; a listing whose
page 1 shows no card at all stops the crawl (``markup_drift``).

Each readable card becomes a detail request when its page is wanted
(:func:`~matter_crawler.planner.needs_detail`), and a sighting when it is a stored
product or its page is not fetched: the sightings of a page are sent with the
``listing_sighted`` signal (the store pipeline records them; they are not items),
counted in ``sightings/count``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.exceptions import CloseSpider
from scrapy.http import Response
from twisted.python.failure import Failure

from ..items import ListingSighting
from ..parsing import BadCard, OffsiteURL, PageParseError, canonical_product_url, parse_listing
from ..parsing.listing import ListingCard, ListingPage
from ..parsing.markup import listing_not_found
from ..planner import CARDS_PER_PAGE, CrawlPlan, known_before, needs_detail
from ..safe_text import shortened, terminal_safe
from ..signals import listing_sighted, markup_checked

if TYPE_CHECKING:
    from .matter_products import MatterProductsSpider

logger = logging.getLogger(__name__)


class ListingWalk:
    """The list stage of :class:`~matter_crawler.spiders.matter_products.MatterProductsSpider`.

    Requests are built by the spider's request builders, so a subclass that
    overrides one is followed here too.
    """

    def __init__(self, spider: MatterProductsSpider) -> None:
        self.spider = spider

    @property
    def plan(self) -> CrawlPlan:
        return self.spider.current_plan()

    # -- callbacks -------------------------------------------------------------------------

    def parse(self, response: Response) -> Iterator[Any]:
        """A listing page of the walk (the spider's ``parse_listing``)."""
        spider, plan = self.spider, self.plan
        page: int = response.meta["page"]
        recheck = bool(response.meta.get("recheck"))
        if response.status != 200:
            self.past_the_end(page, response.status, recheck=recheck)
            spider.failures.resolved(response)
            return
        stats = spider.crawler.stats
        listing = self.parsed(response)
        if listing is None:
            plan.pages_failed.add(page)
            if plan.mode == "incremental":
                yield from self.continue_incremental(page)
            return
        spider.failures.resolved(response)  # the page parsed: its letter is resolved
        stats.inc_value("matter/list/pages")
        stats.inc_value("matter/list/cards", len(listing.cards))
        self.markup_checked(response, listing)
        # a bad card is still a card: the page is neither past the end nor short for it
        shown = len(listing.cards) + len(listing.bad_cards)

        if not listing.cards and page == 1:
            self.markup_drift("listing page 1 shows no product cards", listing)
        if not shown:
            if listing.last_page is not None and page <= listing.last_page:
                # the page says it is part of the listing: a page the parser cannot read
                spider.failures.unreadable_listing_page(response, listing)
                if plan.mode == "incremental":
                    yield from self.continue_incremental(page)
                return
            self.past_the_end(page, "no cards", recheck=recheck)
            return
        yield from self.extend_plan(listing, page)

        last_page = plan.site_last_page or page
        if shown < CARDS_PER_PAGE and page < last_page and not response.meta.get("refetch"):
            # a short page that is not the last is suspect: trust it only once fetched again
            stats.inc_value("matter/list/short_page_refetched")
            logger.info("Page %d shows %d cards, fetching it again", page, shown)
            yield spider.listing_request(page, refetch=True)
            yield from self.cards(self.readable_cards(listing, page, response), page)
            return
        if shown < CARDS_PER_PAGE and page < last_page:
            stats.inc_value("matter/list/short_page_accepted")
            logger.warning("Page %d shows %d cards again; accepting it", page, shown)

        if page >= plan.first_page:
            yield from self.cards(self.readable_cards(listing, page, response), page)
        plan.pages_done.add(page)
        if plan.mode == "incremental":
            yield from self.continue_incremental(page)

    def failed(self, failure: Failure) -> Iterator[Request]:
        """A listing page that failed for good (the spider's ``listing_failed``)."""
        request = failure.request  # type: ignore[attr-defined]
        page = request.meta["page"]
        plan = self.plan
        plan.pages_failed.add(page)
        logger.warning("Listing page %d failed for good: %s", page, failure.getErrorMessage())
        self.spider.failures.unless_done(failure, "list")
        if plan.mode == "incremental":
            yield from self.continue_incremental(page)

    # -- reading a page --------------------------------------------------------------------

    def parsed(self, response: Response) -> ListingPage | None:
        """The listing page parsed; None when the parser refuses it (then dead-lettered)."""
        try:
            listing = parse_listing(response.body, response.url, response.encoding)
        except PageParseError as error:
            logger.warning("Listing page %s refused: %s", response.meta.get("page"), error.reason)
            self.spider.failures.page_refused(response, "list", error.reason)
            return None
        if listing.ignored_page_numbers:
            self.spider.crawler.stats.inc_value(
                "matter/list/ignored_page_numbers", len(listing.ignored_page_numbers)
            )
            logger.warning(
                "Page %s: ignored page numbers that are not plain numbers: %s",
                response.meta.get("page"),
                terminal_safe(", ".join(listing.ignored_page_numbers)),
            )
        return listing

    def markup_checked(self, response: Response, listing: ListingPage) -> None:
        self.spider.crawler.signals.send_catch_log(
            signal=markup_checked,
            stage="list",
            url=response.url,
            not_found=listing_not_found(listing),
        )

    def markup_drift(self, what: str, listing: ListingPage) -> None:
        """Stop the crawl: the listing no longer matches the parser (nothing is delisted)."""
        self.spider.crawler.stats.set_value("drift/detected", 1)
        logger.error(
            "Markup drift: %s (not found: %s). Closing the crawl (markup_drift): nothing is "
            "delisted and the stored products are left as they are",
            what,
            ", ".join(listing_not_found(listing)),
        )
        raise CloseSpider("markup_drift")

    # -- the plan: how many pages, and which next ---------------------------------------------

    def extend_plan(self, listing: ListingPage, page: int) -> Iterator[Request]:
        """Learn the page count (page 1, or a page showing more pages than planned).

        A count beyond the evidence (``plan.page_bound``) is dead-lettered and not
        trusted: from then on the listing is walked ``WALK_AHEAD`` pages beyond the
        highest page known to exist, until a page past the end.
        """
        spider, plan = self.spider, self.plan
        shown_last_page = listing.last_page or page
        bound = plan.page_bound or spider.listing_max_pages
        if shown_last_page > bound:
            self.implausible_page_count(shown_last_page, bound, page)
            plan.pagination_trusted = False
        if not plan.pagination_trusted:
            if plan.site_last_page is None or page > plan.site_last_page:
                plan.site_last_page = page  # the highest page known to exist
            if plan.mode == "full":
                for number in plan.pages_to_schedule():
                    plan.mark_scheduled(number)
                    yield spider.listing_request(number)
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
        yield from self.recheck_past_end()
        if plan.mode == "full":
            for number in plan.pages_to_schedule():
                plan.mark_scheduled(number)
                yield spider.listing_request(number)
        wanted = plan.last_page_wanted
        probe = plan.site_last_page + 1
        if (wanted is None or probe <= wanted) and plan.mode == "full":
            # the page after the last must be past the end, or the pagination lied
            plan.mark_scheduled(probe)
            yield spider.listing_request(probe)

    def recheck_past_end(self) -> Iterator[Request]:
        """Ask again, once, for pages that answered "past the end" though a page now shows more.

        Either the catalogue grew (the page now has cards), or that claim was rendered
        before the catalogue shrank, or the page answered 404 for a while. A page past
        the end a second time is the end, whatever other pages claim.
        """
        plan = self.plan
        last = plan.site_last_page or 0
        for number in sorted(p for p in plan.pages_past_end if p <= last):
            plan.pages_past_end.discard(number)
            self.spider.crawler.stats.inc_value("matter/list/past_end_rechecked")
            request = self.spider.listing_request(number, refetch=True)
            request.meta["recheck"] = True
            yield request

    def implausible_page_count(self, claimed: int, bound: int, page: int) -> None:
        """Dead-letter a page count no evidence supports (once per run)."""
        plan = self.plan
        self.spider.crawler.stats.inc_value("matter/list/implausible_page_count")
        if not plan.pagination_trusted:
            return
        reason = (
            f"listing page {page}'s pagination claims {claimed:,} pages, but at most "
            f"{bound:,} are plausible ({plan.page_bound_evidence or 'no evidence'}): the claim is "
            "not trusted; the listing is walked page by page until a page past the end"
        )
        logger.warning("%s", reason)
        self.spider.failures.implausible_page_count(self.spider.listing_url(claimed), reason)

    def past_the_end(self, page: int, why: int | str, *, recheck: bool = False) -> None:
        plan = self.plan
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

    def continue_incremental(self, page: int) -> Iterator[Request]:
        plan = self.plan
        if plan.walk_finished:
            logger.info("Incremental walk stops after page %d: the rest is known", page)
            return
        next_page = page + 1
        wanted = plan.incremental_last_page()
        if wanted is not None and next_page > wanted:
            plan.walk_finished = True
            return
        plan.mark_scheduled(next_page)
        yield self.spider.listing_request(next_page)

    # -- cards -------------------------------------------------------------------------------

    def readable_cards(
        self, listing: ListingPage, page: int, response: Response
    ) -> list[ListingCard | None]:
        """The page's cards in page order, each under its canonical URL.

        A card that cannot be read (a bad link, an off-site or over-long one) is
        dead-lettered here and stands as None: it breaks an incremental run's known
        streak. The same product linked twice on the page is kept once.
        """
        spider = self.spider
        stats, failures = spider.crawler.stats, spider.failures
        readable: list[ListingCard | None] = []
        seen: set[str] = set()
        in_order = sorted((*listing.cards, *listing.bad_cards), key=lambda card: card.position)
        for shown in in_order:
            if isinstance(shown, BadCard):
                failures.bad_card(response, page, shown)
                readable.append(None)
                continue
            try:
                url = canonical_product_url(shown.url, spider.base_url)
            except OffsiteURL:
                failures.offsite_card(shown, page, response)
                readable.append(None)
                continue
            except ValueError as error:
                reason = f"link {shortened(shown.url)} is not a product page of the site: {error}"
                failures.bad_card(response, page, BadCard(shown.position, None, reason))
                readable.append(None)
                continue
            if spider.max_url_length is not None and len(url) > spider.max_url_length:
                reason = f"link of {len(url):,} characters, longer than a product URL may be"
                failures.bad_card(response, page, BadCard(shown.position, None, reason))
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

    def cards(self, cards: list[ListingCard | None], page: int) -> Iterator[Request]:
        """Detail requests for a page's cards (:meth:`readable_cards`); its sightings sent."""
        spider, plan = self.spider, self.plan
        stats = spider.crawler.stats
        run_id = spider.session.run_id
        known_flags: list[bool] = []
        sightings: list[ListingSighting] = []
        for card in cards:
            if card is None:  # dead-lettered as it was read
                known_flags.append(False)
                continue
            known = spider.known.get(card.url)
            known_flags.append(known_before(known, run_id))
            if card.url in spider.seen_urls:
                continue  # shown twice (the listing moved, a page read again): handled once
            spider.seen_urls[card.url] = None
            wanted = needs_detail(card, known, refresh_all=plan.refresh_all, run_id=run_id)
            # a page this run fetches again anyway (REFRESH_MAX_AGE_DAYS) is not asked twice
            fetch = (
                wanted
                and card.url not in spider.refreshing
                and (spider.max_products is None or plan.details_scheduled < spider.max_products)
            )
            if fetch:
                plan.details_scheduled += 1
                stats.inc_value("matter/detail/scheduled")
                yield spider.detail_request(card, page)
            else:
                stats.inc_value("matter/detail/skipped_known")
            if not fetch or known is not None:
                # A stored product the listing shows is seen now, whether or not its page
                # is fetched again: if that fetch fails for good, or the run is stopped
                # before it is stored, a complete listing must not count it as delisted.
                sightings.append(
                    ListingSighting(
                        url=card.url,
                        manufacturer=card.manufacturer,
                        model=card.model,
                        certificate_id=card.certificate_id,
                        page=page,
                    )
                )
        if sightings:
            stats.inc_value("sightings/count", len(sightings))
            spider.crawler.signals.send_catch_log(
                signal=listing_sighted, sightings=sightings, page=page
            )
        if plan.mode == "incremental":
            plan.observe_incremental_page(known_flags)
