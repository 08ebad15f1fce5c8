"""The crawl plan: which listing pages and which detail pages a run fetches.

Pure decisions, kept apart from the spider's I/O so they can be tested on
their own. The spider owns one :class:`CrawlPlan` and saves it with the job
(JOBDIR) so a resumed crawl carries on where it stopped.

Modes:
- ``full``: every listing page; a detail page for each new product, for each
  card that differs from the stored product, or for every product when
  ``refresh="all"``. A complete full run also marks products no listing page
  showed as delisted.
- ``incremental``: walk the listing newest first and stop after a whole page's
  worth of consecutive known cards. New certifications push older products
  back a slot each, so page numbers are never trusted, only card identity.
- ``auto`` (default): ``full`` on an empty database, ``incremental`` after.

The end of a full run (``CrawlPlan.finish_phase``): once its listing walk is
over, page 1 is read again and the walk goes on until a page's worth of known
cards (``rewalk``: products certified while the walk went on), then every stored
product the run did not see is looked for: on the listing page where its certification
date puts it when several are expected there (``locate``, :func:`locate_pages`),
else with a confirmation request for its page (``confirm``); only a product
page that answers 404 or 410, or redirects to the listing, is proof that the
product left the catalogue (``done``). More than
``DELIST_MAX_SHARE`` of the stored products unseen is a broken listing, not a
shrinking catalogue: then nothing is confirmed or delisted.

The page count a pagination claims is bounded by evidence
(:func:`plausible_page_count`); a claim beyond it is not trusted and the listing
is walked page by page instead (``pagination_trusted``). Every decision here
costs O(1) or O(pages done), never O(claimed pages).

Each run with ``refresh=changed`` also fetches again the product pages stored
longest ago, ``refresh_quota`` of them, so that every stored page is read at
least once per ``REFRESH_MAX_AGE_DAYS``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from .parsing.listing import ListingCard
from .storage.products import KnownProduct

CARDS_PER_PAGE = 12
MODES = ("auto", "full", "incremental")
REFRESH = ("changed", "all")
#: Listing pages a walk with an untrusted pagination requests beyond the highest page
#: known to exist: enough to keep a few requests in flight, few to waste past the end.
WALK_AHEAD = 4
#: How far the page count may grow over the evidence before a claim is implausible:
#: twice the evidence plus this many pages (a catalogue does not double between runs).
PAGE_COUNT_SLACK = 10
#: The phases at the end of a full run, in order (see the module docstring).
FINISH_PHASES = ("listing", "rewalk", "locate", "confirm", "done")
#: ``crawl_runs.delist_outcome``: the run delisted what it proved gone, or why it delisted none.
DELIST_OUTCOMES = (
    "delisted",
    "too_many_candidates",
    "listing_incomplete",
    "batches_lost",
    "markup_drift",
    "interrupted",
)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
GONE_STATUSES = (404, 410)


def choose_mode(requested: str, known_products: int) -> str:
    """Resolve ``auto``: a first run on an empty database is full."""
    if requested not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {requested!r}")
    if requested != "auto":
        return requested
    return "incremental" if known_products else "full"


def card_changed(card: ListingCard, known: KnownProduct) -> bool:
    """Whether a card shows something other than the stored product (a missing value is no news)."""
    pairs = (
        (card.manufacturer, known.manufacturer),
        (card.model, known.model),
        (card.certificate_id, known.certificate_id),
    )
    return any(shown is not None and shown != stored for shown, stored in pairs)


def known_before(known: KnownProduct | None, run_id: int | None) -> bool:
    """Whether a card's product was listed before this run (the incremental walk's "known").

    A product this same run stored before a hard kill is not: after the kill
    the run plans again from the database, and counting its own new products as
    known would end the walk before the rest of the new ones.
    """
    if known is None or known.delisted:
        return False
    return run_id is None or known.first_seen_run_id != run_id


def needs_detail(
    card: ListingCard,
    known: KnownProduct | None,
    *,
    refresh_all: bool,
    run_id: int | None,
) -> bool:
    """Whether this run should fetch the card's detail page."""
    if known is None or known.delisted:
        return True
    if refresh_all:
        # after a hard kill the same run starts over: what it already fetched stays fetched
        return run_id is None or known.last_fetched_run_id != run_id
    return card_changed(card, known)


def plausible_page_count(previous_pages: int | None, stored_products: int, ceiling: int) -> int:
    """The most listing pages a pagination may claim before the claim is not trusted.

    Evidence: the page count the previous run recorded and the stored products
    (12 a page). With evidence, twice its page count plus ``PAGE_COUNT_SLACK``;
    without (a first run), only ``ceiling`` (``LISTING_MAX_PAGES``), which also
    caps the rest.
    """
    evidence = max(previous_pages or 0, math.ceil(stored_products / CARDS_PER_PAGE))
    if evidence <= 0:
        return ceiling
    return min(ceiling, 2 * evidence + PAGE_COUNT_SLACK)


def refresh_quota(
    stored: int, due: int, days_since_previous_run: float | None, max_age_days: float
) -> int:
    """How many of the product pages stored longest ago a run fetches again.

    ``stored``: stored products (not delisted); ``due``: those whose page is older
    than ``max_age_days`` minus the time since the previous run (they would pass
    the age limit before a next run at the same pace). The quota is the share of
    the period that passed since the previous run, ``stored * days / max_age_days``
    rounded up, and at least every page due: daily runs read about
    ``stored / max_age_days`` pages a day, and a run after a long pause catches up
    at once. No previous run (the pages were all just fetched) or
    ``max_age_days <= 0`` (off): none.
    """
    if max_age_days <= 0 or stored <= 0 or days_since_previous_run is None:
        return 0
    share = min(1.0, max(0.0, days_since_previous_run) / max_age_days)
    return min(stored, max(math.ceil(stored * share), due))


def locate_pages(
    candidates: Mapping[str, date | None],
    seen_dates: Sequence[date | None],
    *,
    min_group: int = 2,
) -> dict[int, list[str]]:
    """The listing pages where stored products the walk did not see should be now.

    The listing is ordered by certification date, newest first, so a product's
    place is the number of listed products certified after it: the products the
    run saw (``seen_dates``; None for a product new to the database, taken as
    newer than any stored one) and the candidates certified after it (taken as
    still listed: a walk misses products in runs, where the listing moved under
    it). Only pages expected to hold ``min_group`` candidates or more are worth a
    request: reading one costs less than confirming each of them. A candidate
    the page does not show still gets its confirmation request.
    """
    unknown = sum(1 for day in seen_dates if day is None)
    ascending = sorted(day for day in seen_dates if day is not None)
    dated = sorted(((day, url) for url, day in candidates.items() if day is not None), reverse=True)
    groups: dict[int, list[str]] = {}
    for newer_candidates, (day, url) in enumerate(dated):
        newer_seen = len(ascending) - bisect_right(ascending, day)
        position = unknown + newer_seen + newer_candidates
        groups.setdefault(position // CARDS_PER_PAGE + 1, []).append(url)
    return {page: urls for page, urls in sorted(groups.items()) if len(urls) >= min_group}


def delist_share_exceeded(candidates: int, stored: int, max_share: float) -> bool:
    """Whether so many stored products went unseen that the listing itself is broken."""
    return candidates > max_share * max(stored, 0)


def confirmation_verdict(
    status: int, location: str | None, listing_path: str, has_product: bool
) -> str:
    """What a product page's answer proves about a product the listing did not show.

    ``gone``: 404 or 410, or a redirect to the listing (or the site's front page);
    ``listed``: 200 with the product on it; ``unknown``: anything else (the run
    does not delist it).
    """
    if status in GONE_STATUSES:
        return "gone"
    if status in REDIRECT_STATUSES:
        path = urlsplit(location or "").path or "/"
        return "gone" if path == "/" or path.startswith(listing_path) else "unknown"
    if status == 200 and has_product:
        return "listed"
    return "unknown"


@dataclass
class CrawlPlan:
    """A run's listing plan and progress through it."""

    mode: str
    refresh_all: bool = False
    first_page: int = 1
    last_page_wanted: int | None = None  # from end_page / max_pages
    site_last_page: int | None = None  # what the pagination (and the probes) say
    end_confirmed: bool = False  # a page past the end answered 404 or a redirect
    pages_scheduled: set[int] = field(default_factory=set)
    pages_done: set[int] = field(default_factory=set)
    pages_failed: set[int] = field(default_factory=set)
    known_streak: int = 0  # incremental: consecutive known cards
    walk_finished: bool = False  # incremental: stop condition reached
    details_scheduled: int = 0
    limited: bool = False  # a page range or limit was given: not a complete listing
    # page-count bound (see plausible_page_count); None: LISTING_MAX_PAGES alone
    page_bound: int | None = None
    page_bound_evidence: str = ""  # what the bound rests on, for the dead letter's reason
    page_ceiling: int | None = None  # LISTING_MAX_PAGES: no walk goes further
    pagination_trusted: bool = True  # False after a claim beyond page_bound
    scheduled_through: int = 0  # full mode: every page first_page..this is scheduled
    pages_past_end: set[int] = field(default_factory=set)  # answered 404 or a redirect
    # the lowest page that answered past the end twice: the end, whatever stale pages claim
    end_rechecked: int | None = None
    # the end of a full run (see the module docstring)
    finish_phase: str = "listing"
    rewalk_scheduled: int = 0  # re-walk pages requested
    rewalk_done: int = 0  # re-walk pages answered (parsed, past the end or failed)
    rewalk_streak: int = 0  # consecutive known cards in the re-walk
    rewalk_finished: bool = False
    delist_outcome: str | None = None
    delist_candidate_count: int | None = None  # stored products the run did not see
    delist_unseen: list[str] = field(default_factory=list)  # those candidates' URLs
    locate_pages: list[int] = field(default_factory=list)  # read where candidates should be
    locate_scheduled: int = 0
    locate_done: int = 0
    delist_found: list[str] = field(default_factory=list)  # candidates those pages showed
    delist_candidates: list[str] = field(default_factory=list)  # URLs asked to confirm
    delist_gone: list[str] = field(default_factory=list)  # proven gone: delisted at close
    delist_listed: int = 0  # candidates whose page shows the product: the listing hid them
    delist_unknown: int = 0  # candidates whose page proved nothing (errors, odd redirects)
    refresh_scheduled: int = 0  # product pages fetched again because they are the oldest

    def target_last_page(self) -> int | None:
        if self.site_last_page is None:
            return self.last_page_wanted
        if self.last_page_wanted is None:
            return self.site_last_page
        return min(self.site_last_page, self.last_page_wanted)

    def incremental_last_page(self) -> int | None:
        """The last page an incremental walk may go to (None: no bound known)."""
        if self.pagination_trusted:
            return self.target_last_page()
        bounds = [self.page_ceiling, self.last_page_wanted]
        if self.pages_past_end:
            bounds.append(min(self.pages_past_end) - 1)
        known = [bound for bound in bounds if bound is not None]
        return min(known) if known else None

    def pages_to_schedule(self) -> list[int]:
        """Full mode: the listing pages in range not scheduled yet (O(new pages)).

        With an untrusted pagination, only up to ``WALK_AHEAD`` pages past the
        highest page known to exist, and never at or past a page past the end.
        """
        last = self.target_last_page()
        if last is None:
            return []
        if not self.pagination_trusted:
            last += WALK_AHEAD
            if self.page_ceiling is not None:
                last = min(last, self.page_ceiling)
            if self.last_page_wanted is not None:
                last = min(last, self.last_page_wanted)
            if self.pages_past_end:
                last = min(last, min(self.pages_past_end) - 1)
        start = max(self.first_page, self.scheduled_through + 1)
        return [p for p in range(start, last + 1) if p not in self.pages_scheduled]

    def mark_scheduled(self, page: int) -> None:
        """Record a listing page as requested (keeps the full walk's high-water mark)."""
        self.pages_scheduled.add(page)
        if page == self.scheduled_through + 1:
            self.scheduled_through = page
            while self.scheduled_through + 1 in self.pages_scheduled:
                self.scheduled_through += 1

    def list_stage_finished(self) -> bool:
        """Whether the listing walk is over (O(pages done), never O(claimed pages))."""
        if self.mode == "incremental":
            return self.walk_finished or (
                self.end_confirmed
                and not (self.pages_scheduled - self.pages_done - self.pages_failed)
            )
        last = self.target_last_page()
        if last is None:
            return False
        answered = sum(
            1 for page in self.pages_done | self.pages_failed if self.first_page <= page <= last
        )
        return answered >= last - self.first_page + 1 and (
            self.end_confirmed or self.last_page_wanted is not None
        )

    def listing_complete(self) -> bool:
        """A full run saw every listing page: products it did not see have left the catalogue."""
        return (
            self.mode == "full"
            and not self.limited
            and self.end_confirmed
            and not self.pages_failed
            and self.list_stage_finished()
        )

    def observe_incremental_page(self, cards_known: list[bool]) -> None:
        """Count consecutive known cards, newest first; a page's worth of them ends the walk."""
        for known in cards_known:
            self.known_streak = self.known_streak + 1 if known else 0
        if self.known_streak >= CARDS_PER_PAGE:
            self.walk_finished = True

    def finishes_with_a_rewalk(self) -> bool:
        """A full run over the whole listing reads page 1 again before it ends."""
        return self.mode == "full" and not self.limited

    def observe_rewalk_page(self, cards_known: list[bool]) -> None:
        """Count consecutive known cards of the re-walk; a page's worth of them ends it."""
        for known in cards_known:
            self.rewalk_streak = self.rewalk_streak + 1 if known else 0
        if self.rewalk_streak >= CARDS_PER_PAGE or not cards_known:
            self.rewalk_finished = True

    def still_listed(self) -> int:
        """Candidates the site still lists: found on the listing again, or by their page."""
        return len(self.delist_found) + self.delist_listed

    def confirmations_answered(self) -> int:
        return len(self.delist_gone) + self.delist_listed + self.delist_unknown

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        for name in ("pages_scheduled", "pages_done", "pages_failed", "pages_past_end"):
            state[name] = sorted(state[name])
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CrawlPlan:
        values = dict(state)
        for name in ("pages_scheduled", "pages_done", "pages_failed", "pages_past_end"):
            values[name] = set(values.get(name, ()))
        return cls(**values)
