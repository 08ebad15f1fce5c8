"""The listing's integrity, end to end against the simulated site (issue 14 items 1, 6, 7;
issue 15's page-count bound): what the database holds after crawls that meet a
catalogue changing under the walk, a listing that stops short, pages that change
only on the product page, markup drift, a pagination that lies, and stops in the
middle of the confirmations.

Mutations land at a moment of the crawl the site itself sees (``after_list_page``),
not on a timer, so each test meets the same situation on every run. One first
crawl fills a database for the whole module; each test starts its own site on the
same port with the same seed (the same catalogue, the same URLs) and a copy of it.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, update

from matter_crawler.planner import WALK_AHEAD
from matter_crawler.storage.models import CrawlRun, Product
from matter_crawler.verify import stored_records
from sitesim.process import SimulatedSite

from ..helpers import (
    crawl_runs,
    database_differences,
    free_port,
    query,
    run_crawl,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)

# its module-scoped fixtures crawl: run the module on one pytest-xdist worker, once
pytestmark = pytest.mark.xdist_group(__name__)

PRODUCTS = 240
PAGES = PRODUCTS // 12
SEED = 41
# a few pages at a time: a mutation after page 10 lands in the middle of the walk; no
# product page fetched again for its age (REFRESH_MAX_AGE_DAYS), whose answer would spare
# a removed product its confirmation request
PACED = {
    "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
    "ADAPTIVE_CONCURRENCY_ENABLED": False,
    "REFRESH_MAX_AGE_DAYS": 0,
}


def paths(database_url: str, sql: str) -> set[str]:
    return {urlsplit(url).path for (url,) in query(database_url, sql)}


def delisted(database_url: str) -> set[str]:
    return paths(database_url, "select url from products where delisted_at is not null")


@pytest.fixture(scope="module")
def filled_database(tmp_path_factory) -> tuple[int, Path]:
    """The port of the module's site, and a database a first full crawl of it filled."""
    port = free_port()
    path = tmp_path_factory.mktemp("filled") / "matter.sqlite3"
    with SimulatedSite(products=PRODUCTS, seed=SEED, port=port, latency_ms=5) as site:
        run_crawl(site.base_url, sqlite_url(path)).check()
    return port, path


@pytest.fixture
def seeded(filled_database, simulated_site, tmp_path) -> Callable[..., tuple[SimulatedSite, str]]:
    """``seeded(**site_options)``: the module's site again, and a copy of its filled database."""
    port, path = filled_database

    def start(**options) -> tuple[SimulatedSite, str]:
        site = simulated_site(products=PRODUCTS, seed=SEED, port=port, latency_ms=5, **options)
        copy = tmp_path / "matter.sqlite3"
        shutil.copyfile(path, copy)
        return site, sqlite_url(copy)

    return start


def test_products_removed_during_the_walk_are_delisted_only_on_proof(seeded):
    site, database_url = seeded()
    # the cards after each removed product move up a place, some onto pages already read
    site.mutate(remove=8, after_list_page=PAGES // 2)
    run_crawl(site.base_url, database_url, settings=PACED, args={"mode": "full"}).check()
    (mutation,) = site.mutations()["applied"]
    removed = set(mutation["removed"])
    listed = {record["url"] for record in site.truth()}

    gone = delisted(database_url)
    assert gone & listed == set(), "a product the site still lists was marked delisted"
    assert gone
    assert gone <= removed
    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["stage"], run["delist_outcome"]) == ("finished", "done", "delisted")
    assert run["products_delisted"] == len(gone)
    # the listing hid products that moved up: their pages answered, and were stored
    assert run["delist_still_listed"] >= 1
    assert run["delist_candidates"] == len(gone) + run["delist_still_listed"]
    # each found on the listing page its date puts it on, or asked for its own page
    stats = run["stats"]
    assert (
        stats["delist/confirm_requests"] + stats.get("delist/located", 0)
        == len(gone) + (run["delist_still_listed"])
    )
    # every listed product is stored as the site shows it; the removed products the walk
    # saw before they left are not proven gone yet (the next full run confirms them)
    seen_then_removed = removed - gone
    assert set(database_differences(database_url, site.truth())) == {
        f"unexpected product {path}" for path in seen_then_removed
    }


def test_products_added_during_the_walk_are_stored_by_the_same_run(seeded, tmp_path):
    site, database_url = seeded()
    site.mutate(add=20, after_list_page=PAGES // 2)
    events = tmp_path / "events.jsonl"
    settings = {**PACED, "PROGRESS_EVENTS_FILE": str(events)}
    run_crawl(site.base_url, database_url, settings=settings, args={"mode": "full"}).check()

    assert database_differences(database_url, site.truth()) == []
    run = crawl_runs(database_url)[-1]
    assert (run["products_new"], run["products_delisted"]) == (20, 0)
    # page 1 read again: 20 new cards, then 12 known ones end the re-walk on page 3
    assert run["stats"]["delist/rewalk_pages"] == 3
    assert run["stats"]["delist/rewalk_new_cards"] == 20
    assert delisted(database_url) == set()
    # the progress shows those pages as a stage of their own
    snapshots = [e for e in map(json.loads, events.read_text().splitlines()) if "stages" in e]
    final = snapshots[-1]["stages"]["delist"]
    assert (final["total"], final["done"], final["failed"]) == (3, 3, 0)


@pytest.mark.parametrize("past_end", ["404", "redirect"])
def test_a_listing_that_stops_short_delists_nothing(seeded, past_end):
    site, database_url = seeded(past_end=past_end)
    # pages 6-20 answer as if the catalogue ended after page 5 (404, or 302 to page 1)
    site.set_faults(hide_pages=f"6-{PAGES}")
    result = run_crawl(site.base_url, database_url, args={"mode": "full"}).check()

    assert delisted(database_url) == set()
    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["delist_outcome"], run["delist_candidates"]) == (
        "finished",
        "too_many_candidates",
        PRODUCTS - 5 * 12,
    )
    assert "DELIST_MAX_SHARE" in result.output
    # and no confirmation request was spent on them
    assert run["stats"].get("delist/confirm_requests", 0) == 0
    assert site.stats()["by_kind"]["detail"] == run["stats"]["refresh/pages"]


@pytest.mark.parametrize("stop", ["pause", "hard kill"])
def test_confirmations_survive_a_pause_and_a_hard_kill(seeded, tmp_path, stop):
    site, database_url = seeded()
    removed = set(site.mutate(remove=10)["removed"])  # 4% of the catalogue
    # slow product pages, two at a time (and no more taken from the queue, since a stop lets
    # the downloader finish what it holds): the stop comes among the confirmations
    site.set_faults(latency_ms=250, only="detail")
    settings = {
        "JOBDIR": str(tmp_path / "job"),
        "CONCURRENT_REQUESTS": 2,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "ADAPTIVE_CONCURRENCY_ENABLED": False,
        "REFRESH_MAX_AGE_DAYS": 0,
    }
    command = {"settings": settings, "args": {"mode": "full"}}
    crawl = start_crawl(site.base_url, database_url, log_path=tmp_path / "first.log", **command)

    def confirmed() -> int:
        return sum(1 for e in site.requests_log() if e["kind"] == "detail" and e["status"] == 404)

    try:
        wait_for(
            lambda: confirmed() >= 3 or crawl.poll() is not None,
            timeout=90,
            interval=0.05,
            message="the first confirmations",
        )
        crawl.send_signal(signal.SIGINT if stop == "pause" else signal.SIGKILL)
        crawl.wait(timeout=60)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert 3 <= confirmed() < len(removed), "the stop should come among the confirmations"
    if stop == "pause":
        assert crawl_runs(database_url)[-1]["delist_outcome"] == "interrupted"
    assert delisted(database_url) == set()  # nothing delisted before every answer is in

    run_crawl(site.base_url, database_url, **command).check()
    assert delisted(database_url) == removed
    assert database_differences(database_url, site.truth()) == []
    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["stage"], run["sessions"]) == ("finished", "done", 2)
    assert (run["delist_outcome"], run["delist_candidates"], run["products_delisted"]) == (
        "delisted",
        10,
        10,
    )
    if stop == "pause":
        # the resumed process asked only the pages not yet answered
        asked = [e["path"] for e in site.requests_log() if e["kind"] == "detail"]
        assert sorted(asked) == sorted(removed)


def test_the_pages_stored_longest_ago_are_read_again(seeded):
    site, database_url = seeded()
    # every product page changes, and no card: only fetching a page again can see it
    site.mutate(change=PRODUCTS)
    # the previous run was a day ago, and 30 pages were last fetched 40 days ago
    now = datetime.now(UTC)
    engine = create_engine(database_url)
    products = Product.__table__
    oldest = [
        url for (url,) in query(database_url, "select url from products order by id limit 30")
    ]
    with engine.begin() as conn:
        conn.execute(update(CrawlRun.__table__).values(started_at=now - timedelta(days=1)))
        conn.execute(
            update(products)
            .where(products.c.url.in_(oldest))
            .values(last_fetched_at=now - timedelta(days=40))
        )
    engine.dispose()

    run_crawl(site.base_url, database_url, args={"mode": "incremental"}).check()
    fetched = {
        urlsplit(e["path"]).path
        for e in site.requests_log()
        if e["kind"] == "detail" and e["status"] == 200
    }
    refreshed = {urlsplit(url).path for url in oldest}
    assert fetched == refreshed
    run = crawl_runs(database_url)[-1]
    # a day of 30 is 8 pages of 240; but 30 would pass the 30 days before the next run
    assert (run["stats"]["refresh/quota"], run["stats"]["refresh/due"]) == (30, 30)
    # their changes are recorded like any other, and stored
    changed = paths(
        database_url, f"select product_url from product_changes where run_id = {run['id']}"
    )
    assert changed == refreshed
    truth = {record["url"]: record for record in site.truth()}
    engine = create_engine(database_url)
    stored = {record["url"]: record for record in stored_records(engine)}
    engine.dispose()
    assert all(stored[path] == truth[path] for path in refreshed)


def test_a_listing_whose_cards_vanish_stops_the_crawl_and_keeps_the_data(seeded):
    site, database_url = seeded()
    engine = create_engine(database_url)
    before = stored_records(engine)
    site.set_faults(drift="list")  # a new theme: the cards' classes are gone
    result = run_crawl(site.base_url, database_url, args={"mode": "full"}).check()

    # nothing delisted, nothing changed
    assert delisted(database_url) == set()
    assert stored_records(engine) == before
    engine.dispose()
    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["finish_reason"]) == ("failed", "markup_drift")
    assert run["delist_outcome"] == "markup_drift"
    assert "Markup drift: listing page 1 shows no product cards" in result.output
    assert "article.product" in result.output
    assert site.stats()["by_kind"]["list"] == 1


@pytest.mark.parametrize(
    ("drift", "named"),
    [
        ("detail", ["div.entry-product-details"]),
        ("labels", ["label 'Certificate ID'", "p.entry-company", "unknown label 'VID'"]),
    ],
)
def test_product_pages_that_stop_parsing_stop_the_crawl(seeded, drift, named):
    site, database_url = seeded()
    site.set_faults(drift=drift)
    result = run_crawl(
        site.base_url,
        database_url,
        args={"mode": "full", "refresh": "all"},
        settings={"RETRY_POLICIES": {"content": {"attempts": 1}}},
    ).check()

    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["finish_reason"]) == ("failed", "markup_drift")
    assert run["delist_outcome"] == "markup_drift"
    assert "Markup drift:" in result.output
    for what in named:
        assert what in result.output, what
    assert run["stats"]["drift/pages_failed"] > 0.2 * run["stats"]["drift/pages_checked"]
    # stopped early, with the stored products untouched
    assert site.stats()["by_kind"]["detail"] < PRODUCTS // 2
    assert delisted(database_url) == set()
    assert query(database_url, "select count(*) from product_changes") == [(0,)]
    assert database_differences(database_url, site.truth()) == []


def test_an_implausible_page_count_is_dead_lettered_and_the_listing_walked(seeded):
    # every listing page's pagination claims a billion pages
    site, database_url = seeded(claim_last_page=999_999_999)
    site.mutate(remove=3)
    run_crawl(site.base_url, database_url, args={"mode": "full"}, timeout=120).check()

    # the previous run's 20 pages and the 240 stored products say at most 2 * 20 + 10
    ((url, stage, reason),) = query(database_url, "select url, stage, last_error from dead_letters")
    assert (urlsplit(url).path, stage) == ("/csa-iot_products/page/999999999/", "list")
    assert "claims 999,999,999 pages, but at most 50 are plausible" in reason
    # walked page by page instead: the whole listing, and nothing else lost
    assert database_differences(database_url, site.truth()) == []
    run = crawl_runs(database_url)[-1]
    assert (run["status"], run["stage"], run["pages_planned"]) == ("finished", "done", PAGES)
    assert (run["delist_outcome"], run["products_delisted"]) == ("delisted", 3)
    # at most a few pages past the end, and page 1 once more at the end
    listing = [e for e in site.requests_log() if e["kind"] == "list"]
    assert len(listing) <= PAGES + WALK_AHEAD + 1
