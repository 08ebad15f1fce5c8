"""The crawl plan's decisions, without I/O."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest

from matter_crawler.parsing.listing import ListingCard
from matter_crawler.planner import (
    CrawlPlan,
    card_changed,
    choose_mode,
    confirmation_verdict,
    delist_share_exceeded,
    known_before,
    locate_pages,
    needs_detail,
    plausible_page_count,
    refresh_quota,
)
from matter_crawler.storage.products import KnownProduct


@contextmanager
def alarm_after(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block takes longer than ``seconds``."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


CARD = ListingCard("https://csa-iot.org/csa_product/a/", "Acme", "Plug", "CSA22059MAT40059-24", 1)
KNOWN = KnownProduct("Acme", "Plug", "CSA22059MAT40059-24", last_fetched_run_id=3, delisted=False)


def test_choose_mode():
    assert choose_mode("auto", 0) == "full"
    assert choose_mode("auto", 10) == "incremental"
    assert choose_mode("full", 10) == "full"
    with pytest.raises(ValueError, match="mode must be one of"):
        choose_mode("quick", 0)


def test_card_changes():
    assert not card_changed(CARD, KNOWN)
    assert card_changed(ListingCard(CARD.url, "Acme", "Plug 2", CARD.certificate_id, 1), KNOWN)
    # a card without a certificate line says nothing about the certificate
    assert not card_changed(ListingCard(CARD.url, "Acme", "Plug", None, 1), KNOWN)


def test_needs_detail():
    assert needs_detail(CARD, None, refresh_all=False, run_id=1)
    assert not needs_detail(CARD, KNOWN, refresh_all=False, run_id=4)
    assert needs_detail(
        CARD, KnownProduct("Acme", "Plug", None, 3, delisted=True), refresh_all=False, run_id=4
    )
    assert needs_detail(CARD, KNOWN, refresh_all=True, run_id=4)
    # the same run after a hard kill does not fetch again what it fetched already
    assert not needs_detail(CARD, KNOWN, refresh_all=True, run_id=3)


def test_known_before_this_run():
    stored_by_run_2 = KnownProduct("Acme", "Plug", None, 2, delisted=False, first_seen_run_id=2)
    assert known_before(stored_by_run_2, run_id=3)
    # stored by this very run before a hard kill: still news to the incremental walk
    assert not known_before(stored_by_run_2, run_id=2)
    assert not known_before(None, run_id=3)
    delisted = KnownProduct("Acme", "Plug", None, 2, delisted=True, first_seen_run_id=1)
    assert not known_before(delisted, run_id=3)


def test_full_plan_completes_only_with_every_page_and_the_end_confirmed():
    plan = CrawlPlan(mode="full")
    assert plan.pages_to_schedule() == []
    plan.site_last_page = 4
    assert plan.pages_to_schedule() == [1, 2, 3, 4]
    plan.pages_scheduled.update({1, 2, 3, 4})
    plan.pages_done.update({1, 2, 3, 4})
    assert not plan.list_stage_finished()  # page 5 has not answered "past the end" yet
    plan.end_confirmed = True
    assert plan.list_stage_finished()
    assert plan.listing_complete()


def test_a_failed_page_or_a_limit_means_no_delisting():
    plan = CrawlPlan(
        mode="full", site_last_page=2, end_confirmed=True, pages_done={1}, pages_failed={2}
    )
    assert plan.list_stage_finished()
    assert not plan.listing_complete()
    limited = CrawlPlan(
        mode="full", last_page_wanted=1, limited=True, site_last_page=9, pages_done={1}
    )
    assert limited.target_last_page() == 1
    assert limited.list_stage_finished()
    assert not limited.listing_complete()


def test_incremental_walk_stops_after_a_page_of_known_cards():
    plan = CrawlPlan(mode="incremental")
    plan.observe_incremental_page([False] * 10 + [True] * 2)  # 10 new products at the front
    assert not plan.walk_finished
    plan.observe_incremental_page([True] * 9 + [False] + [True] * 2)  # a gap resets the count
    assert not plan.walk_finished
    plan.observe_incremental_page([True] * 12)
    assert plan.walk_finished
    assert plan.list_stage_finished()


def test_state_round_trip_is_json():
    plan = CrawlPlan(mode="full", site_last_page=3, pages_scheduled={1, 2, 3}, pages_done={1})
    state = json.loads(json.dumps(plan.to_state()))
    assert CrawlPlan.from_state(state) == plan


def test_a_page_count_is_bounded_by_evidence():
    # no evidence (a first run): only the ceiling
    assert plausible_page_count(None, 0, 20_000) == 20_000
    # twice the evidence plus 10 pages: the previous run's count or the stored products / 12
    assert plausible_page_count(500, 5_900, 20_000) == 2 * 500 + 10
    assert plausible_page_count(None, 6_000, 20_000) == 2 * 500 + 10
    assert plausible_page_count(400, 6_000, 20_000) == 2 * 500 + 10
    assert plausible_page_count(9_000, 0, 10_000) == 10_000  # never above the ceiling


def test_plan_arithmetic_never_walks_the_claimed_range():
    # a plan over a billion pages answers at once (c3359a7 built set(range(...)) every second)
    with alarm_after(5):
        plan = CrawlPlan(mode="full", site_last_page=10**9, end_confirmed=True, pages_done={1, 2})
        assert not plan.list_stage_finished()
        plan.scheduled_through = 10**9 - 2
        assert plan.pages_to_schedule() == [10**9 - 1, 10**9]


def test_an_untrusted_pagination_is_walked_a_few_pages_ahead():
    plan = CrawlPlan(mode="full", pagination_trusted=False, site_last_page=3, page_ceiling=100)
    plan.mark_scheduled(1)
    assert plan.pages_to_schedule() == [2, 3, 4, 5, 6, 7]  # WALK_AHEAD = 4 past page 3
    for page in plan.pages_to_schedule():
        plan.mark_scheduled(page)
    assert plan.scheduled_through == 7
    plan.pages_past_end.add(6)  # page 6 answered 404: nothing at or past it
    plan.site_last_page = 5
    assert plan.pages_to_schedule() == []
    plan.pages_done.update(range(1, 6))
    plan.end_confirmed = True
    assert plan.list_stage_finished()
    assert plan.listing_complete()
    # an incremental walk with an untrusted pagination stops at the ceiling or the end
    walk = CrawlPlan(mode="incremental", pagination_trusted=False, page_ceiling=100)
    assert walk.incremental_last_page() == 100
    walk.pages_past_end.add(9)
    assert walk.incremental_last_page() == 8


def test_refresh_quota_spreads_the_stored_pages_over_the_period():
    # 6,000 products, 30 days, daily runs: about 200 pages a day (the README's figure)
    assert refresh_quota(6_000, due=0, days_since_previous_run=1.0, max_age_days=30) == 200
    # a run an hour after the previous one: the hour's share, rounded up
    assert refresh_quota(6_000, due=0, days_since_previous_run=1 / 24, max_age_days=30) == 9
    # pages that would pass the age limit before the next run are read whatever the share
    assert refresh_quota(6_000, due=450, days_since_previous_run=1.0, max_age_days=30) == 450
    # after a pause longer than the period: everything, once
    assert refresh_quota(6_000, due=6_000, days_since_previous_run=45, max_age_days=30) == 6_000
    # no previous run (every page was just fetched), nothing stored, or switched off: none
    assert refresh_quota(6_000, due=0, days_since_previous_run=None, max_age_days=30) == 0
    assert refresh_quota(0, due=0, days_since_previous_run=1.0, max_age_days=30) == 0
    assert refresh_quota(6_000, due=0, days_since_previous_run=1.0, max_age_days=0) == 0


def test_refresh_quota_reads_every_page_within_the_period():
    # daily runs on 6,000 pages all fetched on day 0 (a first crawl): oldest first, no
    # page is ever older than 30 days, and the daily cost settles at 200
    fetched_on = [0] * 6_000
    costs = []
    for day in range(1, 91):
        due = sum(1 for fetched in fetched_on if day - fetched > 30 - 1)
        quota = refresh_quota(len(fetched_on), due, 1.0, 30)
        oldest = sorted(range(len(fetched_on)), key=lambda n: fetched_on[n])[:quota]
        for n in oldest:
            fetched_on[n] = day
        assert max(day - fetched for fetched in fetched_on) <= 30
        costs.append(quota)
    assert set(costs[30:]) == {200}


def test_what_a_confirmation_proves():
    listing = "/csa-iot_products/"
    assert confirmation_verdict(404, None, listing, has_product=False) == "gone"
    assert confirmation_verdict(410, None, listing, has_product=False) == "gone"
    assert confirmation_verdict(302, "https://x/csa-iot_products/?p=1", listing, False) == "gone"
    assert confirmation_verdict(301, "https://x/", listing, has_product=False) == "gone"
    assert confirmation_verdict(200, None, listing, has_product=True) == "listed"
    # anything else proves nothing: the product is not delisted this run
    assert confirmation_verdict(301, "https://x/csa_product/a-2/", listing, False) == "unknown"
    assert confirmation_verdict(500, None, listing, has_product=False) == "unknown"
    assert confirmation_verdict(200, None, listing, has_product=False) == "unknown"


def test_too_many_candidates_is_a_broken_listing():
    assert not delist_share_exceeded(50, 1_000, 0.05)
    assert delist_share_exceeded(51, 1_000, 0.05)
    assert not delist_share_exceeded(0, 0, 0.05)


def test_the_rewalk_stops_after_a_page_of_known_cards():
    plan = CrawlPlan(mode="full")
    assert plan.finishes_with_a_rewalk()
    assert not CrawlPlan(mode="full", limited=True).finishes_with_a_rewalk()
    assert not CrawlPlan(mode="incremental").finishes_with_a_rewalk()
    plan.observe_rewalk_page([False] * 12)  # 12 products listed during the walk
    plan.observe_rewalk_page([False] * 3 + [True] * 9)
    assert not plan.rewalk_finished
    plan.observe_rewalk_page([True] * 3 + [True] * 9)
    assert plan.rewalk_finished  # 12 known in a row, as an incremental walk stops
    empty = CrawlPlan(mode="full")
    empty.observe_rewalk_page([])  # a page without cards ends it too
    assert empty.rewalk_finished


def test_missed_products_are_looked_for_where_their_date_puts_them():
    day = date(2025, 1, 1).toordinal()
    # the walk saw 30 products (two new to the database, newest) and missed three stored
    # ones certified just after the 15th and the 25th newest seen: two of them in a row
    seen = [None, None, *(date.fromordinal(day - n) for n in range(28))]
    missed = {
        "a": date.fromordinal(day - 12),  # after the 13 seen newer (2 new + 11): page 2
        "b": date.fromordinal(day - 12),
        "c": date.fromordinal(day - 25),  # alone on page 3: its own page is cheaper
    }
    (group,) = locate_pages(missed, seen).items()
    assert (group[0], sorted(group[1])) == (2, ["a", "b"])
    assert locate_pages(missed, seen, min_group=1).keys() == {2, 3}
    assert locate_pages({"x": None}, seen, min_group=1) == {}  # no date: asked for directly
