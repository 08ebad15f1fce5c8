"""Pause and resume with JOBDIR: Ctrl-C (SIGINT) and a hard kill (SIGKILL) at several points."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from matter_crawler.session import RUNNING_MARKER, STATE_FILE

from .helpers import (
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
REQUESTS = PRODUCTS + PRODUCTS // 12 + 2  # detail pages, listing pages, the page past the end
# Slow enough to stop at a chosen point: 4 at a time, 25 ms each.
PACED = {
    "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
    "ADAPTIVE_CONCURRENCY_ENABLED": False,
    # items are written only when a batch fills or the spider closes: a stop must flush them
    "STORE_BATCH_SIZE": 5000,
    "STORE_FLUSH_INTERVAL": 0,
}


def stop_at(site, share: float, crawl) -> None:
    wait_for(
        lambda: site.stats()["requests_total"] >= share * REQUESTS or crawl.poll() is not None,
        timeout=120,
        message=f"{share:.0%} of the crawl",
    )
    assert crawl.poll() is None, "the crawl ended before the stop point"


@pytest.mark.parametrize("share", [0.03, 0.4, 0.85])
def test_ctrl_c_then_resume_repeats_nothing(simulated_site, tmp_path, share):
    site = simulated_site(products=PRODUCTS, seed=31, latency_ms=25)
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    jobdir = tmp_path / "job"
    settings = {**PACED, "JOBDIR": str(jobdir)}
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
    assert {"spider", "spider_run", "circuit_breakers"} <= state.keys()

    run_crawl(site.base_url, database_url, settings=settings).check()
    assert database_differences(database_url, site.truth()) == []
    (run,) = crawl_runs(database_url)  # the same run went on
    assert (run["status"], run["sessions"]) == ("finished", 2)
    # nothing fetched twice: every listing and product page was requested once in all
    requested = Counter(e["path"] for e in site.requests_log() if e["kind"] in ("list", "detail"))
    assert [path for path, count in requested.items() if count > 1] == []
    assert sum(1 for path in requested if "/csa_product/" in path) == PRODUCTS


@pytest.mark.parametrize("share", [0.03, 0.4, 0.85])
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
    # a complete full run after the kill: nothing was wrongly marked delisted
    assert query(database_url, "select count(*) from products where delisted_at is not null") == [
        (0,)
    ]


def test_retries_waiting_for_their_time_survive_a_pause(simulated_site, tmp_path):
    # every 429 asks for 3 s: at the stop, many requests wait for their time in the scheduler
    site = simulated_site(products=240, seed=33, latency_ms=10, throttle_rate=0.3, retry_after=3)
    database_url = f"sqlite:///{tmp_path}/matter.sqlite3"
    settings = {**PACED, "JOBDIR": str(tmp_path / "job"), "CIRCUIT_BREAKER_ENABLED": False}
    crawl = start_crawl(
        site.base_url, database_url, settings=settings, log_path=tmp_path / "first.log"
    )
    try:
        wait_for(lambda: site.stats()["by_status"].get("429", 0) >= 15, timeout=60, message="429s")
        crawl.send_signal(signal.SIGINT)
        crawl.wait(timeout=60)
    finally:
        stop_process(crawl, signal.SIGKILL)
    assert crawl.returncode == 0

    result = run_crawl(site.base_url, database_url, settings=settings).check()
    assert database_differences(database_url, site.truth()) == []
    run = crawl_runs(database_url)[-1]
    # requests came back from the job's disk queue before their time and were held again
    assert run["stats"].get("scheduler/delayed/held", 0) > 0, result.output[-2000:]
    # and across the pause, no request went before the time its 429 asked for
    assert retry_after_violations(site.requests_log()) == []
