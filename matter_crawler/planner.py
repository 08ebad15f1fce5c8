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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .parsing.listing import ListingCard
from .storage.products import KnownProduct

CARDS_PER_PAGE = 12
MODES = ("auto", "full", "incremental")
REFRESH = ("changed", "all")


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

    def target_last_page(self) -> int | None:
        if self.site_last_page is None:
            return self.last_page_wanted
        if self.last_page_wanted is None:
            return self.site_last_page
        return min(self.site_last_page, self.last_page_wanted)

    def pages_to_schedule(self) -> list[int]:
        """Full mode: the listing pages in range not scheduled yet."""
        last = self.target_last_page()
        if last is None:
            return []
        return [p for p in range(self.first_page, last + 1) if p not in self.pages_scheduled]

    def list_stage_finished(self) -> bool:
        if self.mode == "incremental":
            return self.walk_finished or (
                self.end_confirmed
                and not (self.pages_scheduled - self.pages_done - self.pages_failed)
            )
        last = self.target_last_page()
        if last is None:
            return False
        wanted = set(range(self.first_page, last + 1))
        return wanted <= (self.pages_done | self.pages_failed) and (
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

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        for name in ("pages_scheduled", "pages_done", "pages_failed"):
            state[name] = sorted(state[name])
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CrawlPlan:
        values = dict(state)
        for name in ("pages_scheduled", "pages_done", "pages_failed"):
            values[name] = set(values.get(name, ()))
        return cls(**values)
