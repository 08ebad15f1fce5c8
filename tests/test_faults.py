"""Nothing lost under faults: the fault matrix, the outage and the breaker, Retry-After, replay."""

from __future__ import annotations

import time

import pytest

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

# Short backoffs and cool-downs keep the test quick; the classes and the logic are the defaults'.
FAST_RECOVERY = {
    "DOWNLOAD_TIMEOUT": 2,
    "RETRY_POLICIES": {
        "transient": {"base": 0.5, "cap": 4},
        "server": {"base": 0.5, "cap": 4},
        "throttled": {"base": 1, "cap": 5},
        "content": {"base": 0.2, "cap": 2},
    },
    "CIRCUIT_COOLDOWN": 4,
    "CIRCUIT_COOLDOWN_MAX": 8,
}


def accounted_for(database_url: str, truth: list[dict], base_url: str) -> list[str]:
    """Products neither stored, nor dead-lettered, nor on a dead-lettered listing page."""
    stored = {url for (url,) in query(database_url, "select url from products")}
    letters = {
        url
        for (url,) in query(database_url, "select url from dead_letters where resolved_at is null")
    }
    lost = []
    for index, record in enumerate(truth):
        url = base_url + record["url"]
        page = index // 12 + 1
        page_url_part = "/csa-iot_products/" if page == 1 else f"/csa-iot_products/page/{page}/"
        page_lettered = any(
            page_url_part in letter and "/csa_product/" not in letter for letter in letters
        )
        if url not in stored and url not in letters and not page_lettered:
            lost.append(record["url"])
    return lost


@pytest.mark.slow
def test_fault_matrix_loses_nothing(simulated_site, database_url, tmp_path):
    site = simulated_site(
        products=300,
        seed=13,
        latency_ms=20,
        error_rate=0.2,
        timeout_rate=0.05,
        hang_ms=4000,
        reset_rate=0.05,
        truncate_rate=0.02,
        throttle_rate=0.03,
        retry_after=1,
    )
    truth = site.truth()
    started = time.time()
    crawl = start_crawl(
        site.base_url, database_url, settings=FAST_RECOVERY, log_path=tmp_path / "crawl.log"
    )
    try:
        wait_for(
            lambda: site.stats()["requests_total"] >= 60,
            timeout=60,
            message="the crawl to get going",
        )
        site.set_faults(throttle_rate=0.6)  # a burst of 429s with Retry-After, both forms
        time.sleep(2)
        site.set_faults(throttle_rate=0.03)
        wait_for(lambda: site.stats()["requests_total"] >= 150, timeout=60, message="more progress")
        window = site.set_faults(outage="0,20")["outage_window"]
        crawl.wait(timeout=300)
    finally:
        stop_process(crawl)
    output = (tmp_path / "crawl.log").read_text()
    assert crawl.returncode == 0, output[-5000:]
    log = site.requests_log(since=started)
    run = crawl_runs(database_url)[-1]
    stats = run["stats"]

    # zero lost, zero duplicated
    assert accounted_for(database_url, truth, site.base_url) == []
    assert query(database_url, "select count(*) = count(distinct url) from products") == [(1,)]
    assert query(
        database_url,
        "select count(*) from products join dead_letters using (url) where dead_letters.resolved_at is null",
    ) == [(0,)]
    for letter in query(
        database_url, "select failure_class, last_error, attempts, stage from dead_letters"
    ):
        assert letter[0] in {"transient", "server", "throttled", "content"}, letter
        assert letter[1], letter  # a reason

    # every failure class met, named in the stats
    for failure_class in ("server", "transient", "throttled", "content"):
        assert stats.get(f"retry/class/{failure_class}", 0) > 0, failure_class
    assert stats.get("retry/retry_after_honoured", 0) > 0

    # the breaker opened during the outage and closed after it
    domain = "127.0.0.1"
    assert stats.get(f"circuit/{domain}/open", 0) >= 1
    assert stats.get(f"circuit/{domain}/closed", 0) >= 1
    assert stats.get(f"circuit/{domain}/state") == "closed"
    assert f"Circuit for {domain}: closed -> open" in output

    # no request storm during the outage: once the breaker is open, only probes arrive
    during = [e for e in log if window["start"] + 2 <= e["t"] < window["end"]]
    assert 1 <= len(during) <= 6, [(round(e["t"] - window["start"], 1), e["path"]) for e in during]
    before = [e for e in log if window["start"] - 5 <= e["t"] < window["start"]]
    assert len(before) > 5 * len(during)  # the crawl was busy right before

    # Retry-After was respected: no path came back before the time its 429 asked for
    assert [e for e in log if e["status"] == 429], "the burst produced no 429"
    assert retry_after_violations(log) == []

    # with the faults off, replaying the dead letters completes the catalogue
    site.set_faults(error_rate=0, timeout_rate=0, reset_rate=0, truncate_rate=0, throttle_rate=0)
    run_crawl(
        site.base_url, database_url, args={"replay_dead_letters": 1}, settings=FAST_RECOVERY
    ).check()
    pending = query(database_url, "select count(*) from dead_letters where resolved_at is null")
    assert pending == [(0,)]
    if run["dead_letters"]:
        assert crawl_runs(database_url)[-1]["dead_letters_resolved"] == run["dead_letters"]
    full = run_crawl(site.base_url, database_url, args={"mode": "full"}, settings=FAST_RECOVERY)
    full.check()
    assert database_differences(database_url, truth) == []


def test_replay_clears_dead_letters_once_the_faults_are_off(simulated_site, database_url):
    site = simulated_site(products=40, seed=17, error_rate=1.0, only="detail")
    truth = site.truth()
    # every product page fails: no retries, and neither the breaker nor the adaptive
    # controller slowing down for a site that answers nothing but errors
    no_retries = {
        "RETRY_POLICIES": {"server": {"attempts": 1}},
        "CIRCUIT_BREAKER_ENABLED": False,
        "ADAPTIVE_CONCURRENCY_ENABLED": False,
    }
    run_crawl(site.base_url, database_url, settings=no_retries).check()
    first = crawl_runs(database_url)[-1]
    assert first["dead_letters"] == len(truth)
    assert query(database_url, "select count(*) from products") == [(0,)]
    assert query(database_url, "select distinct failure_class, stage from dead_letters") == [
        ("server", "detail")
    ]

    site.set_faults(error_rate=0)
    site.reset_stats()
    run_crawl(site.base_url, database_url, args={"replay_dead_letters": 1}).check()
    replay = crawl_runs(database_url)[-1]
    assert replay["dead_letters_resolved"] == len(truth)
    assert replay["dead_letters"] == 0
    assert query(database_url, "select count(*) from dead_letters where resolved_at is null") == [
        (0,)
    ]
    assert database_differences(database_url, truth) == []
    # a replay fetches the letters only: no listing walk
    assert site.stats()["by_kind"].get("list", 0) == 0
