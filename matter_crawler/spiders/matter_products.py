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

The spider holds the run's state (``plan``, ``known``, ``seen_urls``), builds
every request and owns every callback (JOBDIR stores a request's callback by
its name on the spider; subclasses override builders and callbacks); the work
is done by collaborators, one concern each:

- list stage (:mod:`.listing_walk`): the walk, the plan's page count, the
  cards, each a detail request and/or a sighting (``listing_sighted``, not an item);
- detail stage (here): each product page parsed (:mod:`matter_crawler.parsing`)
  into a ``ProductItem``; with ``refresh=changed``, the pages stored longest ago
  are fetched too (``REFRESH_MAX_AGE_DAYS``, :mod:`.planning`);
- the end of a full run (:mod:`.delisting`): page 1 read again, then proof for
  each stored product not seen that it is gone; the store pipeline delists
  those at close (:meth:`MatterProductsSpider.delisting`);
- dead letters and failed pages (:mod:`.failures`): a page or card the parsers
  refuse is dead-lettered with the reason (failure class ``parse``), and a
  listing page with a letter counts as failed, so the listing is never taken
  as complete.

Product URLs are canonical (:func:`~matter_crawler.parsing.canonical_product_url`):
the detail request, the ``known`` key, the stored row and the dead letters use
the same string. Stats: ``matter/...``, ``sightings/count``, ``delist/...``,
``refresh/...``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from itertools import islice
from typing import Any
from urllib.parse import urlparse

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from ..core.session import CrawlSession
from ..items import ProductItem
from ..parsing import (
    PageParseError,
    build_product,
    canonical_product_url,
    page_number_from_url,
    parse_detail,
)
from ..parsing.listing import ListingCard
from ..planner import GONE_STATUSES, MODES, REDIRECT_STATUSES, REFRESH, CrawlPlan
from ..request_url import requested_url
from ..storage import Database
from ..storage.dead_letters import pending_letters
from ..storage.products import KnownProduct, load_known_products
from ..storage.runs import previous_run_facts
from . import planning
from .catalogue import (
    DETAIL_PRIORITY,
    LIST_PRIORITY,
    LISTING_PATH,
    PAST_END_STATUSES,
    listing_url,
)
from .delisting import DelistingProof
from .failures import PageFailures
from .listing_walk import ListingWalk

__all__ = ["DETAIL_PRIORITY", "LISTING_PATH", "LIST_PRIORITY", "MatterProductsSpider"]

logger = logging.getLogger(__name__)

#: The stages of this spider's dead letters (a replay leaves other spiders' letters alone).
REPLAYED_STAGES = (None, "list", "detail")
#: In JOBDIR: the product URLs of the cards read, one a line, in the order read
SEEN_CARDS_FILE = "matter_crawler.seen-cards.txt"


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
        self.start_page = planning.positive_int("start_page", start_page) or 1
        self.end_page = planning.positive_int("end_page", end_page)
        self.max_pages = planning.positive_int("max_pages", max_pages)
        self.max_products = planning.positive_int("max_products", max_products)
        if self.end_page is not None and self.end_page < self.start_page:
            raise ValueError(
                f"spider argument end_page ({self.end_page}) "
                f"is before start_page ({self.start_page})"
            )
        self.replay_dead_letters = planning.flag(replay_dead_letters)
        self.plan: CrawlPlan | None = None
        self.known: dict[str, KnownProduct] = {}
        # product URLs listing cards showed in this process (a stored product seen
        # by an earlier process of the run has last_seen_run_id = the run)
        # (a dict for its order: each JOBDIR state save appends only the cards read since
        # the last one to SEEN_CARDS_FILE, instead of all of them as one JSON document)
        self.seen_urls: dict[str, None] = {}
        self._seen_cards_saved: int | None = None  # None: SEEN_CARDS_FILE not written yet
        self.refreshing: set[str] = set()  # refresh requests of this process
        # pages of stored products this process read (True: the product; False: 404/410)
        self.page_answers: dict[str, bool] = {}
        # the collaborators (see the module docstring)
        self.walk = ListingWalk(self)
        self.delist = DelistingProof(self)
        self.failures = PageFailures(self)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> MatterProductsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.base_url = settings.get("CSA_BASE_URL").rstrip("/")
        spider.listing_query = settings.get("CSA_LISTING_QUERY").lstrip("?")
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
        spider.failures.connect()
        crawler.signals.connect(spider.delist.spider_idle, signal=signals.spider_idle)
        return spider

    # -- requests ------------------------------------------------------------------

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
        """A listing page read again at the end of a full run (see :mod:`.delisting`)."""
        request = self.listing_request(page)
        return request.replace(
            callback=self.parse_rewalk,
            errback=self.rewalk_failed,
            dont_filter=True,
            meta={**request.meta, "rewalk": True},
        )

    def locate_request(self, page: int, urls: list[str], *, second: bool = False) -> Request:
        """A listing page where products the walk missed should be (the end of a full run)."""
        request = self.listing_request(page)
        return request.replace(
            callback=self.parse_locate,
            errback=self.locate_failed,
            dont_filter=True,
            meta={**request.meta, "rewalk": True, "locate": urls, "second": second},
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

    # -- start ------------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        saved = self.session.restored_state("spider", queue_bound=True)
        if saved:
            # at once, before any wait: a resumed job's queue is served meanwhile
            self.plan = CrawlPlan.from_state(saved["plan"])
            # the cards the stopped process read: not asked for again, and the re-walk at
            # the end of a full run stops at them as it would have in one process
            self.seen_urls = dict.fromkeys(self._restored_seen_cards(saved))
        self.known = await self.database.run(load_known_products)
        # what this run set out to do survives even a hard kill (the same run goes on)
        run = self.session.restored_state("spider_run") or {}
        previous_started: datetime | None = None
        if saved:
            plan = self.current_plan()
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
                previous_run_facts, self.session.run_id, self.name
            )
            self.plan = planning.new_plan(self, run, previous_pages)
        plan = self.current_plan()

        self.session.save_state()  # a hard kill from here on still knows the run's mode
        if plan.mode == "replay":
            for letter in await self.database.run(pending_letters):
                if letter["stage"] in REPLAYED_STAGES:  # not the dcl spider's letters
                    yield self._replay_request(letter)
            return
        # a resumed plan's refresh requests are in the job's queue already
        refresh = [] if saved else await planning.plan_refresh(self, previous_started)
        plan.mark_scheduled(1)
        yield self.listing_request(1)
        for url in refresh:
            yield self.refresh_request(url)

    # -- list stage (see ListingWalk) ------------------------------------------------------

    def parse_listing(self, response: Response) -> Iterator[Any]:
        yield from self.walk.parse(response)

    def listing_failed(self, failure: Failure) -> Iterator[Request]:
        yield from self.walk.failed(failure)

    # -- detail stage -------------------------------------------------------------------

    def parse_detail(self, response: Response) -> Iterator[ProductItem]:
        yield from self._detail_items(response)

    def _detail_items(self, response: Response) -> Iterator[ProductItem]:
        item = self.product(response)
        if item is not None:
            self.crawler.stats.inc_value("matter/detail/pages")
            yield item

    def product(self, response: Response) -> ProductItem | None:
        """The product a page shows; None when the parser refuses the page (dead-lettered)."""
        requested = requested_url(response.request)
        try:
            page = parse_detail(response.body, response.url, response.encoding)
        except PageParseError as error:
            self.crawler.stats.inc_value("matter/detail/failed")
            logger.warning("Product page %s refused: %s", requested, error.reason)
            self.failures.page_refused(response, "detail", error.reason)
            return None
        # the key of the product: the URL asked for (not a redirect's), in canonical form
        url = self.canonical_url(requested) or requested
        if url in self.known:  # only a stored product's answer can settle its delisting
            self.page_answers[url] = True
        # its dead letter, if any, is resolved once the batch holding it is committed
        return build_product(page, url)

    def parse_refresh(self, response: Response) -> Iterator[ProductItem]:
        """A page fetched again for its age; a product gone meanwhile is left to a full run."""
        stats = self.crawler.stats
        stats.inc_value("refresh/pages")
        if response.status in GONE_STATUSES:
            url = requested_url(response.request)
            self.page_answers[url] = False
            stats.inc_value("refresh/gone")
            logger.info(
                "%s answers %d: the product left the catalogue (a full run delists it)",
                url,
                response.status,
            )
            return
        # not through parse_detail: a subclass may make that callback async
        yield from self._detail_items(response)

    def detail_failed(self, failure: Failure) -> None:
        self.crawler.stats.inc_value("matter/detail/failed")
        self.failures.unless_done(failure, "detail")

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
            yield from self.walk.continue_incremental(page)

    # -- the end of a full run (see DelistingProof) ------------------------------------------

    def parse_rewalk(self, response: Response) -> Iterator[Any]:
        yield from self.delist.parse_rewalk(response)

    def rewalk_failed(self, failure: Failure) -> None:
        self.delist.rewalk_failed(failure)

    def parse_locate(self, response: Response) -> Iterator[Any]:
        yield from self.delist.parse_locate(response)

    def locate_failed(self, failure: Failure) -> None:
        self.delist.locate_failed(failure)

    def parse_confirmation(self, response: Response) -> Iterator[ProductItem]:
        yield from self.delist.parse_confirmation(response)

    def confirmation_failed(self, failure: Failure) -> None:
        self.delist.confirmation_failed(failure)

    def delisting(self) -> list[str]:
        """What the store pipeline delists at close: the products proven gone, if nothing
        makes the run's view doubtful (a lost batch, markup drift)."""
        return self.delist.delisting()

    def delist_record(self, reason: str) -> dict[str, Any]:
        """The run record's delisting columns (see ``crawl_runs.delist_outcome``)."""
        return self.delist.delist_record(reason)

    # -- state --------------------------------------------------------------------------

    def current_plan(self) -> CrawlPlan:
        """The plan :meth:`start` made (every callback runs after it)."""
        assert self.plan is not None, "start() sets the plan"
        return self.plan

    def _saved_state(self) -> dict[str, Any] | None:
        if self.plan is None:
            return None
        return {"plan": self.plan.to_state(), "seen_cards": self._save_seen_cards()}

    def _save_seen_cards(self) -> int:
        """Append the cards read since the last save to JOBDIR's SEEN_CARDS_FILE; how many
        of its lines belong to the state being saved.

        Appended, not dumped with the state: at 100,000 products the whole list as JSON
        was 14 MB of strings made and dropped at every save, a crawl's peak memory.
        """
        assert self.session.jobdir is not None  # the session saves state only with one
        path = self.session.jobdir / SEEN_CARDS_FILE
        # the first save of a process writes the file anew: a finished job's cards, or
        # lines past the count a killed process saved, are not this state's
        start = self._seen_cards_saved
        with path.open("w" if start is None else "a", encoding="utf-8") as file:
            file.writelines(f"{url}\n" for url in islice(self.seen_urls, start or 0, None))
        self._seen_cards_saved = len(self.seen_urls)
        return self._seen_cards_saved

    def _restored_seen_cards(self, saved: dict[str, Any]) -> list[str]:
        """The cards the stopped process had read when it saved ``saved``."""
        count = saved.get("seen_cards", 0)
        assert self.session.jobdir is not None
        path = self.session.jobdir / SEEN_CARDS_FILE
        try:
            with path.open(encoding="utf-8") as file:
                cards = [line.rstrip("\n") for line in islice(file, count)]
        except FileNotFoundError:
            cards = []
        if len(cards) < count:
            # the resumed walk then reads those listing pages again: slower, nothing lost
            logger.warning(
                "%s holds %d of the %d cards the stopped crawl had read", path, len(cards), count
            )
        return cards

    def _saved_run(self) -> dict[str, Any] | None:
        if self.plan is None:
            return None
        return {"mode": self.plan.mode, "refresh_all": self.plan.refresh_all}

    def listing_complete(self) -> bool:
        """Whether this run saw the whole listing (its products not seen are then confirmed)."""
        return self.plan is not None and self.plan.listing_complete()

    def progress(self) -> dict[str, Any]:
        """Counts for progress reporting: listing pages and product pages, planned and done."""
        return planning.progress(self.plan, self.crawler.stats)

    def stage(self) -> str:
        """The stage the crawl is in: planning, list, detail, delist."""
        return planning.stage(self.plan)
