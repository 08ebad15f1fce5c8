"""The end of a full run: proof, for each stored product the walk did not see, that it is gone.

Out of work (``spider_idle``), a full run reads page 1 again and walks on until a
page's worth of known cards (``rewalk``), so that products certified during the
walk are stored too. Then every stored product the run did not see is looked for
(``locate``): on the listing page its certification date puts it on when several
are expected there (:func:`~matter_crawler.planner.locate_pages`), else with a
confirmation request for its own page (``confirm``). Only those proven gone (404,
410, a redirect to the listing) are delisted, by the store pipeline at close
(:meth:`DelistingProof.delisting`), unless a batch was lost or the markup drifted.
More than ``DELIST_MAX_SHARE`` of the stored products unseen is a broken listing:
then nothing is delisted. Stats: ``delist/...``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from scrapy import Request
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from twisted.python.failure import Failure

from ..items import ProductItem
from ..planner import CrawlPlan, confirmation_verdict, delist_share_exceeded, locate_pages
from ..request_url import requested_url
from .catalogue import LISTING_PATH
from .planning import stored_before

if TYPE_CHECKING:
    from .matter_products import MatterProductsSpider

logger = logging.getLogger(__name__)


class DelistingProof:
    """The re-walk, the search and the confirmations at the end of a full run."""

    def __init__(self, spider: MatterProductsSpider) -> None:
        self.spider = spider

    @property
    def plan(self) -> CrawlPlan:
        return self.spider.current_plan()

    def spider_idle(self) -> None:
        """Out of work: a full run re-reads page 1, then confirms, before it may close."""
        requests = self.finishing_requests()
        if requests:
            engine = self.spider.crawler.engine
            assert engine is not None
            for request in requests:
                engine.crawl(request)
            raise DontCloseSpider

    def finishing_requests(self) -> list[Request]:
        """The next phase's requests (an empty list: the run may end)."""
        spider = self.spider
        plan = spider.plan
        if plan is None or not plan.finishes_with_a_rewalk():
            return []
        if spider.crawler.stats.get_value("drift/detected"):
            return []
        if plan.finish_phase == "listing":
            if not plan.list_stage_finished():
                return []
            plan.finish_phase = "rewalk"
            plan.rewalk_scheduled += 1
            spider.crawler.stats.inc_value("delist/rewalk_pages_scheduled")
            logger.info("The listing walk is over: reading page 1 again for products listed since")
            return [spider.rewalk_request(1)]
        if plan.finish_phase == "rewalk":
            plan.finish_phase = "locate"
            requests = self.start_locating()
            if requests:
                return requests
        if plan.finish_phase == "locate":
            plan.finish_phase = "confirm"
            requests = self.confirmation_requests()
            if requests:
                return requests
        if plan.finish_phase == "confirm":
            plan.finish_phase = "done"
            self.log_summary()
        return []

    # -- rewalk: page 1 and onwards again ------------------------------------------------------

    def parse_rewalk(self, response: Response) -> Iterator[Any]:
        """Page 1 and onwards again, until a page's worth of known cards."""
        spider, plan, walk = self.spider, self.plan, self.spider.walk
        stats = spider.crawler.stats
        page: int = response.meta["page"]
        plan.rewalk_done += 1
        stats.inc_value("delist/rewalk_pages")
        if response.status != 200:
            plan.rewalk_finished = True
            return
        listing = walk.parsed(response)
        if listing is None:
            plan.rewalk_finished = True
            return
        walk.markup_checked(response, listing)
        if not listing.cards:
            if page == 1:
                walk.markup_drift("listing page 1 shows no product cards", listing)
            if not listing.bad_cards:
                plan.rewalk_finished = True
                return
        cards = walk.readable_cards(listing, page, response)
        flags = [card is not None and self.known_to_rewalk(card.url) for card in cards]
        stats.inc_value("delist/rewalk_new_cards", flags.count(False))
        yield from walk.cards(cards, page)
        plan.observe_rewalk_page(flags)
        ceiling = plan.page_ceiling or spider.listing_max_pages
        if not plan.rewalk_finished and page < ceiling:
            plan.rewalk_scheduled += 1
            stats.inc_value("delist/rewalk_pages_scheduled")
            yield spider.rewalk_request(page + 1)
        else:
            plan.rewalk_finished = True

    def known_to_rewalk(self, url: str) -> bool:
        """Stored before, or seen by this run: the re-walk stops after a page of these."""
        known = self.spider.known.get(url)
        return url in self.spider.seen_urls or (known is not None and not known.delisted)

    def rewalk_failed(self, failure: Failure) -> None:
        plan = self.plan
        plan.rewalk_done += 1
        plan.rewalk_finished = True
        self.spider.crawler.stats.inc_value("delist/rewalk_failed")
        logger.warning("Reading the listing again failed: %s", failure.getErrorMessage())
        # its new products are neither stored nor known: the page is a dead letter
        self.spider.failures.unless_done(failure, "list")

    # -- locate: the listing pages where the products not seen should be ------------------------

    def candidates(self) -> list[str]:
        """Stored products (listed before this run) the run did not see on any listing page."""
        spider = self.spider
        run_id = spider.session.run_id
        return sorted(
            url
            for url, known in spider.known.items()
            if not known.delisted
            and url not in spider.seen_urls
            and (run_id is None or known.last_seen_run_id != run_id)
        )

    def start_locating(self) -> list[Request]:
        """The candidates, the share gate, then the listing pages where several should be."""
        spider, plan = self.spider, self.plan
        stats = spider.crawler.stats
        if not plan.listing_complete():
            plan.delist_outcome = "listing_incomplete"
            logger.warning("The listing was not seen whole: no product is delisted this run")
            return []
        candidates = self.candidates()
        stored = stored_before(spider.known, spider.session.run_id)
        plan.delist_candidate_count = len(candidates)
        stats.set_value("delist/candidates", len(candidates))
        if delist_share_exceeded(len(candidates), stored, spider.delist_max_share):
            plan.delist_outcome = "too_many_candidates"
            stats.set_value("delist/refused", 1)
            logger.error(
                "%d of the %d stored products (%.1f%%) were not on the listing, more than "
                "DELIST_MAX_SHARE (%.1f%%): a listing hiding that much is broken, not shrinking. "
                "Nothing is delisted this run",
                len(candidates),
                stored,
                100 * len(candidates) / max(stored, 1),
                100 * spider.delist_max_share,
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
        seen_dates = [self.certified(url) for url in spider.seen_urls]
        pages = locate_pages({url: self.certified(url) for url in candidates}, seen_dates)
        if pages:
            logger.info(
                "Reading listing pages %s again, where %d of them should be",
                ", ".join(map(str, pages)),
                sum(len(urls) for urls in pages.values()),
            )
        plan.locate_scheduled = len(pages)
        stats.inc_value("delist/locate_pages_scheduled", len(pages))
        plan.locate_pages = sorted(pages)
        return [spider.locate_request(page, urls) for page, urls in pages.items()]

    def certified(self, url: str) -> date | None:
        known = self.spider.known.get(url)
        return None if known is None else known.certification_date

    def parse_locate(self, response: Response) -> Iterator[Any]:
        """Candidates this page shows are still listed; those certified before its first
        card or after its last are on the page before or after it, read once more."""
        spider, plan, walk = self.spider, self.plan, self.spider.walk
        plan.locate_done += 1
        spider.crawler.stats.inc_value("delist/locate_pages")
        if response.status != 200:
            return
        listing = walk.parsed(response)
        if listing is None:
            return
        walk.markup_checked(response, listing)
        page: int = response.meta["page"]
        cards = [card for card in walk.readable_cards(listing, page, response) if card]
        unseen = set(plan.delist_unseen) - set(plan.delist_found)
        found = [card.url for card in cards if card.url in unseen]
        plan.delist_found += found
        spider.crawler.stats.inc_value("delist/located", len(found))
        yield from walk.cards(list(cards), page)
        shown = [day for card in cards if (day := self.certified(card.url))]
        if response.meta.get("second") or not shown:
            return
        # missed products sit where pages meet: an estimate one place off is a page off
        missing = [url for url in response.meta.get("locate", ()) if url not in found]
        before = [url for url in missing if (self.certified(url) or min(shown)) > max(shown)]
        after = [url for url in missing if (self.certified(url) or max(shown)) < min(shown)]
        for neighbour, urls in ((page - 1, before), (page + 1, after)):
            if len(urls) >= 2 and neighbour >= 1 and neighbour not in plan.locate_pages:
                plan.locate_pages.append(neighbour)
                plan.locate_scheduled += 1
                yield spider.locate_request(neighbour, urls, second=True)

    def locate_failed(self, failure: Failure) -> None:
        self.plan.locate_done += 1
        self.spider.crawler.stats.inc_value("delist/locate_failed")
        logger.info("A listing page read to find products failed: %s", failure.getErrorMessage())

    # -- confirm: each remaining candidate's own page ------------------------------------------

    def confirmation_requests(self) -> list[Request]:
        """A request for the page of each candidate the listing still did not show."""
        spider, plan = self.spider, self.plan
        stats = spider.crawler.stats
        if plan.delist_outcome != "delisted":
            return []
        found = set(plan.delist_found)  # still listed: counted in delist_record
        if found:
            stats.inc_value("delist/still_listed", len(found))
        requests = []
        for url in plan.delist_unseen:
            if url in found:
                continue
            answer = spider.page_answers.get(url)
            if answer is None:
                plan.delist_candidates.append(url)
                requests.append(spider.confirm_request(url))
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
        spider, plan = self.spider, self.plan
        stats = spider.crawler.stats
        url = requested_url(response.request)
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
            spider.seen_urls[url] = None
            item = spider.product(response)
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
        self.plan.delist_unknown += 1
        self.spider.crawler.stats.inc_value("delist/unconfirmed")
        self.spider.failures.unless_done(failure, "detail")

    # -- the outcome ---------------------------------------------------------------------------

    def log_summary(self) -> None:
        plan = self.plan
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
        plan = self.spider.plan
        if plan is None or plan.finish_phase != "done" or plan.delist_outcome != "delisted":
            return []
        stats = self.spider.crawler.stats
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
        plan = self.spider.plan
        if plan is None or not plan.finishes_with_a_rewalk():
            return {"delist_outcome": None, "delist_candidates": None, "delist_still_listed": None}
        outcome = plan.delist_outcome
        if reason == "markup_drift" or self.spider.crawler.stats.get_value("drift/detected"):
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
