"""The crawl plan's decisions, without I/O."""

from __future__ import annotations

import json

import pytest

from matter_crawler.parsing.listing import ListingCard
from matter_crawler.planner import (
    CrawlPlan,
    card_changed,
    choose_mode,
    known_before,
    needs_detail,
)
from matter_crawler.storage.products import KnownProduct

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
