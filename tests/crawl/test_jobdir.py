"""Pause and resume with JOBDIR: Ctrl-C (SIGINT) and a hard kill (SIGKILL) at several points."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlparse, urlsplit

import pytest
from scrapy import Spider, signals
from scrapy.utils.test import get_crawler

from matter_crawler.core.liveness import ProcessIdentity, this_host
from matter_crawler.core.session import COUNTERS_STATE, RUNNING_MARKER, STATE_FILE, CrawlSession
from matter_crawler.spiders.matter_products import SEEN_CARDS_FILE

from ..helpers import (
    crawl_runs,
    database_differences,
    query,
    retry_after_violations,
    run_crawl,
    start_crawl,
    stop_process,
    wait_for,
)

PRODUCTS = 480
LISTING_PAGES = PRODUCTS // 12
REQUESTS = PRODUCTS + LISTING_PAGES + 2  # detail pages, listing pages, the page past the end
# Slow enough to stop at a chosen point: 4 at a time, 25 ms each.
RETRY_AFTER = 12
PACED = {
    "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
    "ADAPTIVE_CONCURRENCY_ENABLED": False,
    # items are written only when a batch fills or the spider closes: a stop must flush them
    "STORE_BATCH_SIZE": 5000,
    "STORE_FLUSH_INTERVAL": 0,
}


COUNTED = {
    "matter/detail/pages": 5,
    "store/batch_seconds_total": 0.25,
    "retry/count": 2,
    "scheduler/delayed/held": 3,
    "downloader/request_count": 9,
    "downloader/response_status_count/200": 7,
    "item_scraped_count": 5,
    "log_count/ERROR": 1,
}
NOT_COUNTED = {
    "matter/run_id": 4,
    "memusage/max": 10**8,
    "adaptive/127.0.0.1/concurrency": 8,
    "circuit/127.0.0.1/state": "closed",
    "scheduler/enqueued/disk": 6,
    "start_time": datetime.now(UTC),
}


def open_session(jobdir):
    """A crawl's session on a fresh crawler with the given JOBDIR, its spider opened."""
    crawler = get_crawler(Spider, {"JOBDIR": str(jobdir), "JOBDIR_STATE_SAVE_INTERVAL": 0})
    session = CrawlSession.from_crawler(crawler)
    crawler.signals.send_catch_log(signal=signals.spider_opened)
    return crawler, session


def ours(crawler) -> dict:
    stats = crawler.stats.get_stats()
    return {name: stats[name] for name in (*COUNTED, *NOT_COUNTED) if name in stats}


def test_counters_are_saved_with_the_job_and_added_back_on_resume(tmp_path):
    crawler, session = open_session(tmp_path)
    for name, value in {**COUNTED, **NOT_COUNTED}.items():
        crawler.stats.set_value(name, value)
    crawler.signals.send_catch_log(signal=signals.spider_closed, reason="shutdown")
    assert json.loads((tmp_path / STATE_FILE).read_text())[COUNTERS_STATE] == COUNTED

    crawler, session = open_session(tmp_path)
    assert (session.resumed, session.recovered) == (True, False)
    assert ours(crawler) == COUNTED  # counters only: gauges start afresh
    crawler.stats.inc_value("matter/detail/pages", 2)
    crawler.stats.inc_value("downloader/request_count", 3)
    crawler.signals.send_catch_log(signal=signals.spider_closed, reason="shutdown")

    crawler, _ = open_session(tmp_path)  # a second resume: the whole run's counts
    assert ours(crawler) == {
        **COUNTED,
        "matter/detail/pages": 7,
        "downloader/request_count": 12,
    }


def test_after_a_hard_kill_the_plan_counters_restart_with_the_plan(tmp_path):
    crawler, session = open_session(tmp_path)
    for name, value in COUNTED.items():
        crawler.stats.set_value(name, value)
    session.save_state()  # the periodic save; then the process dies without closing
    crawler.stats.inc_value("downloader/request_count", 50)  # after the save: lost
    # ... and is gone: its marker names a process no longer running (same pid, other start)
    dead = ProcessIdentity(os.getpid(), this_host(), "a-process-that-ended:0")
    (tmp_path / RUNNING_MARKER).write_text(dead.to_json())

    crawler, session = open_session(tmp_path)
    assert session.recovered
    # the plan was discarded with Scrapy's queue: its counts with it; the work done stays
    assert ours(crawler) == {k: v for k, v in COUNTED.items() if not k.startswith("matter/")}


def stop_at(site, share: float, crawl) -> None:
    wait_for(
        lambda: site.stats()["requests_total"] >= share * REQUESTS or crawl.poll() is not None,
        timeout=120,
        message=f"{share:.0%} of the crawl",
    )
    assert crawl.poll() is None, "the crawl ended before the stop point"


@pytest.mark.slow
# early (the listing barely begun) and mid-crawl; the hard kill below takes mid and late.
# With CONCURRENT_ITEMS=1 the listing runs ahead of the product pages: the stop finds
# many cards read whose pages are still queued (the resumed run must know it read them).
@pytest.mark.parametrize(
    ("share", "items"), [(0.03, None), (0.4, None), (0.03, 1)], ids=["early", "mid", "ahead"]
)
def test_ctrl_c_then_resume_repeats_nothing(simulated_site, tmp_path, share, items):
    site = simulated_site(products=PRODUCTS, seed=31, latency_ms=25)
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    jobdir = tmp_path / "job"
    settings = {**PACED, "JOBDIR": str(jobdir)}
    if items is not None:
        settings["CONCURRENT_ITEMS"] = items
    crawl = start_crawl(
        site.base_url, database_url, settings=settings, log_path=tmp_path / "first.log"
    )
    try:
        stop_at(site, share, crawl)
        crawl.send_signal(signal.SIGINT)  # one Ctrl-C: a graceful stop
        crawl.wait(timeout=60)
    finally:
        stop_process(crawl, signal.SIGKILL)
    first_log = (tmp_path / "first.log").read_text()
    assert crawl.returncode == 0, first_log[-3000:]
    assert "shutting down gracefully" in first_log

    # the stop wrote the pending batch and the job's state, and left no "running" marker
    fetched = sum(1 for e in site.requests_log() if e["kind"] == "detail" and e["status"] == 200)
    assert query(database_url, "select count(*) from products") == [(fetched,)]
    (run,) = crawl_runs(database_url)
    assert run["status"] == "stopped"
    assert not (jobdir / RUNNING_MARKER).exists()
    state = json.loads((jobdir / STATE_FILE).read_text())
    assert state["run_id"] == run["id"]
    assert {"spider", "spider_run", "circuit_breakers", COUNTERS_STATE} <= state.keys()
    listed = sum(1 for e in site.requests_log() if e["kind"] == "list" and e["status"] == 200)
    assert state[COUNTERS_STATE].get("matter/detail/pages", 0) == fetched
    assert state[COUNTERS_STATE].get("matter/list/pages", 0) == listed
    # the cards read are a file of their own, appended at each save, not a JSON list
    cards = (jobdir / SEEN_CARDS_FILE).read_text(encoding="utf-8").splitlines()
    assert "seen_urls" not in state["spider"]
    assert len(set(cards)) == len(cards) == state["spider"]["seen_cards"]
    assert 0 < len(cards) <= listed * 12

    events = tmp_path / "events.jsonl"
    resumed = {**settings, "PROGRESS_EVENTS_FILE": str(events)}
    run_crawl(site.base_url, database_url, settings=resumed).check()
    assert database_differences(database_url, site.truth()) == []
    (run,) = crawl_runs(database_url)  # the same run went on
    assert (run["status"], run["sessions"], run["stage"]) == ("finished", 2, "done")
    # its totals cover both processes
    assert (run["products_new"], run["products_fetched"]) == (PRODUCTS, PRODUCTS)
    assert (run["pages_crawled"], run["pages_planned"]) == (LISTING_PAGES, LISTING_PAGES)
    assert run["requests"] == site.stats()["requests_total"]
    # and so did the resumed process's progress, from its first snapshot to its last
    snapshots = [
        e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "snapshot"
    ]
    assert snapshots[0]["stages"]["detail"]["done"] >= fetched
    final = snapshots[-1]["stages"]
    assert (final["list"]["done"], final["detail"]["done"]) == (LISTING_PAGES, PRODUCTS)
    assert final["detail"]["total"] == PRODUCTS
    # nothing fetched twice: every listing and product page was requested once in all,
    # but page 1, read again at the end for products listed during the walk
    requested = Counter(e["path"] for e in site.requests_log() if e["kind"] in ("list", "detail"))
    assert [(path, count) for path, count in requested.items() if count > 1] == [
        (urlsplit(site.listing_url(1)).path + "?" + urlsplit(site.listing_url(1)).query, 2)
    ]
    assert sum(1 for path in requested if "/csa_product/" in path) == PRODUCTS


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.4, 0.85])
def test_hard_kill_then_resume_loses_nothing(simulated_site, tmp_path, share):
    site = simulated_site(products=PRODUCTS, seed=32, latency_ms=25)
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    jobdir = tmp_path / "job"
    settings = {**PACED, "JOBDIR": str(jobdir), "STORE_BATCH_SIZE": 50}
    crawl = start_crawl(
        site.base_url, database_url, settings=settings, log_path=tmp_path / "first.log"
    )
    try:
        stop_at(site, share, crawl)
        crawl.send_signal(signal.SIGKILL)
        crawl.wait(timeout=30)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert (jobdir / RUNNING_MARKER).exists()

    result = run_crawl(site.base_url, database_url, settings=settings).check()
    assert "did not stop cleanly" in result.output
    assert database_differences(database_url, site.truth()) == []
    assert query(database_url, "select count(*), count(distinct url) from products") == [
        (PRODUCTS, PRODUCTS)
    ]
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["sessions"], run["mode"]) == ("finished", 2, "full")
    # product counts come from the database, exact whatever the kill cost in re-fetching;
    # the listing was walked again with the new plan, which counts its pages afresh
    assert (run["products_new"], run["products_fetched"]) == (PRODUCTS, PRODUCTS)
    assert run["pages_crawled"] == LISTING_PAGES
    # a complete full run after the kill: nothing was wrongly marked delisted
    assert query(database_url, "select count(*) from products where delisted_at is not null") == [
        (0,)
    ]


@pytest.mark.slow
def test_retries_waiting_for_their_time_survive_a_pause(simulated_site, tmp_path):
    # each 429 asks for 12 s, far longer than a stop and a restart take: at the stop,
    # requests wait for their time in the scheduler, and they are still early on resume
    site = simulated_site(
        products=240, seed=33, latency_ms=10, throttle_rate=0.3, retry_after=RETRY_AFTER
    )
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    settings = {**PACED, "JOBDIR": str(tmp_path / "job"), "CIRCUIT_BREAKER_ENABLED": False}
    crawl = start_crawl(
        site.base_url, database_url, settings=settings, log_path=tmp_path / "first.log"
    )
    try:
        wait_for(lambda: site.stats()["by_status"].get("429", 0) >= 5, timeout=60, message="429s")
        crawl.send_signal(signal.SIGINT)
        crawl.wait(timeout=60)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert crawl.returncode == 0
    throttled = site.stats()["by_status"]["429"]
    # no new 429s from here on: whatever is held after the resume was held before the pause
    site.set_faults(throttle_rate=0)

    result = run_crawl(site.base_url, database_url, settings=settings).check()
    assert database_differences(database_url, site.truth()) == []
    assert site.stats()["by_status"]["429"] == throttled
    run = crawl_runs(database_url)[-1]
    # the throttled requests came back from the job's disk queue before their time and
    # were held again, each of them
    held_again = run["stats"].get("scheduler/delayed/held_again", 0)
    assert held_again == throttled, result.output[-2000:]
    # and across the pause, no request went before the time its 429 asked for
    assert retry_after_violations(site.requests_log()) == []


@pytest.mark.slow
def test_hard_kill_of_an_incremental_run_then_resume(simulated_site, tmp_path):
    site = simulated_site(products=240, seed=34, latency_ms=40)
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    run_crawl(site.base_url, database_url).check()
    added = site.mutate(add=40)["added"]
    site.reset_stats()

    jobdir = tmp_path / "job"
    # batches of 10: products the run stores before the kill are in the database after it;
    # no refresh of old pages (REFRESH_MAX_AGE_DAYS): only new products' pages are fetched
    settings = {**PACED, "JOBDIR": str(jobdir), "STORE_BATCH_SIZE": 10, "REFRESH_MAX_AGE_DAYS": 0}
    command = {"settings": settings, "args": {"mode": "incremental"}}
    crawl = start_crawl(site.base_url, database_url, log_path=tmp_path / "first.log", **command)
    try:
        wait_for(
            lambda: site.stats()["by_kind"].get("detail", 0) >= 25 or crawl.poll() is not None,
            timeout=60,
            interval=0.02,
            message="25 product pages",
        )
        crawl.send_signal(signal.SIGKILL)
        crawl.wait(timeout=30)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert crawl.returncode == -signal.SIGKILL
    stored_by_run = {
        urlparse(url).path
        for (url,) in query(
            database_url,
            "select url from products where first_seen_run_id = (select max(id) from crawl_runs)",
        )
    }
    assert 0 < len(stored_by_run) < 40, "the kill should come after some new products were stored"

    result = run_crawl(site.base_url, database_url, **command).check()
    assert "did not stop cleanly" in result.output
    assert database_differences(database_url, site.truth()) == []
    assert query(database_url, "select count(*), count(distinct url) from products") == [(280, 280)]
    runs = crawl_runs(database_url)
    assert [(run["mode"], run["status"], run["sessions"]) for run in runs] == [
        ("full", "finished", 1),
        ("incremental", "finished", 2),
    ]
    assert runs[-1]["products_new"] == len(added) == 40
    # only new products' pages were fetched; those stored before the kill, only once
    fetched = Counter(e["path"] for e in site.requests_log() if e["kind"] == "detail")
    assert set(fetched) == set(added)
    assert {path: fetched[path] for path in stored_by_run} == dict.fromkeys(stored_by_run, 1)
