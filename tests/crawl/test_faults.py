"""Nothing lost under faults: the fault matrix, the outage and the breaker, Retry-After, replay."""

from __future__ import annotations

import re
import time
from collections import Counter
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from matter_crawler.verify import diff_records, stored_records
from sitesim.catalogue import PAGE_SIZE
from sitesim.process import SimulatedSite

from ..helpers import (
    crawl_runs,
    database_differences,
    query,
    retry_after_violations,
    run_crawl,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)

# Short backoffs and cool-downs keep the test quick; the classes and the logic are the defaults'.
# Server errors get 3 attempts rather than 5, so that the fault run always dead-letters
# something: with seed 13, four product pages answer 5xx to each of their first three requests
# (the site's faults are a function of the seed, the path and its request count), and three of
# them, on listing pages 12, 16 and 19, are fetched well after the 429 burst. The breaker
# opens after 20 failures in a row, not 10: at the crawl's end, when only the few pages that
# keep failing are left, 10 in a row come by chance, and each such opening costs cool-downs.
# A cool-down of 3 s puts the outage's last probe a second after its end, not on it.
FAST_RECOVERY = {
    "DOWNLOAD_TIMEOUT": 2,
    "RETRY_POLICIES": {
        "transient": {"base": 0.5, "cap": 4},
        "server": {"attempts": 3, "base": 0.5, "cap": 4},
        "throttled": {"base": 1, "cap": 5},
        "content": {"base": 0.2, "cap": 2},
    },
    "CIRCUIT_FAILURE_THRESHOLD": 20,
    "CIRCUIT_COOLDOWN": 3,
    "CIRCUIT_COOLDOWN_MAX": 6,
    "CIRCUIT_HALF_OPEN_PROBES": 1,
}
# Log times as epoch seconds, the clock of the site's request log and outage window.
EPOCH_LOG_FORMAT = "%(created).6f [%(name)s] %(levelname)s: %(message)s"
TRANSITION = re.compile(
    r"^(?P<t>\d+\.\d+) \[matter_crawler\.middlewares\.breaker\] \w+: "
    r"Circuit for (?P<domain>\S+): (?P<old>\w+) -> (?P<new>\w+) ",
    re.MULTILINE,
)
# Requests already sent when the breaker opened arrived before it; those still waiting in
# the download slot's queue are held as the slot sends them (the breaker's send gate). What
# is left is the time between the site logging an arrival and the crawl logging the opening.
IN_FLIGHT_GRACE = 0.2


def fault_run_problems(database_url: str, truth: list[dict], site: SimulatedSite) -> list[str]:
    """Every product must be stored exactly as the truth says, or dead-lettered with a reason:
    its own page, or exactly the listing page that shows it."""
    engine = create_engine(database_url)
    try:
        stored = {record["url"]: record for record in stored_records(engine)}
    finally:
        engine.dispose()
    truth_urls = {record["url"] for record in truth}
    # stored rows that exist, field by field (and no stored product the truth does not have)
    problems = diff_records([r for r in truth if r["url"] in stored], stored.values(), limit=0)
    pages = {site.listing_url(n): n for n in range(1, len(truth) // PAGE_SIZE + 2)}
    lettered_pages: set[int] = set()
    lettered_products: set[str] = set()
    pending = (
        "select url, stage, failure_class, last_error from dead_letters where resolved_at is null"
    )
    for url, stage, failure_class, reason in query(database_url, pending):
        if failure_class not in {"transient", "server", "throttled", "content"} or not reason:
            problems.append(f"letter {url}: class {failure_class!r}, reason {reason!r}")
        if stage == "list":
            if url not in pages:
                problems.append(f"letter for a listing page that does not exist: {url}")
            lettered_pages.add(pages.get(url, 0))
        elif url.removeprefix(site.base_url) in truth_urls:
            lettered_products.add(url.removeprefix(site.base_url))
        else:
            problems.append(f"letter for a product that does not exist: {url}")
    for index, record in enumerate(truth):
        path = record["url"]
        if path in stored:
            if path in lettered_products:
                problems.append(f"stored and still dead-lettered: {path}")
        elif path not in lettered_products and index // PAGE_SIZE + 1 not in lettered_pages:
            problems.append(f"lost: {path} (listing page {index // PAGE_SIZE + 1})")
    return problems


def repeated_product_fetches(log: list[dict]) -> dict[str, int]:
    """Product paths the site answered with a whole page (200, no fault) more than once."""
    answers = Counter(
        urlsplit(entry["path"]).path
        for entry in log
        if entry["kind"] == "detail" and entry["status"] == 200 and entry["fault"] is None
    )
    return {path: count for path, count in answers.items() if count > 1}


def breaker_transitions(output: str, domain: str) -> list[tuple[float, str, str]]:
    """(epoch time, old state, new state) of each logged transition of ``domain``'s breaker."""
    return [
        (float(match["t"]), match["old"], match["new"])
        for match in TRANSITION.finditer(output)
        if match["domain"] == domain
    ]


def most_at_once(entries: list[dict]) -> int:
    """The most requests open at the site at the same time."""
    events = sorted(
        (time_, step)
        for entry in entries
        for time_, step in ((entry["t"], 1), (entry["t"] + entry["duration_ms"] / 1000, -1))
    )
    running = peak = 0
    for _, step in events:  # at equal times, -1 sorts first: back-to-back is not overlap
        running += step
        peak = max(peak, running)
    return peak


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
        site.base_url,
        database_url,
        settings={**FAST_RECOVERY, "LOG_FORMAT": EPOCH_LOG_FORMAT},
        log_path=tmp_path / "crawl.log",
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
    assert "Traceback" not in output, output[-5000:]
    log = site.requests_log(since=started)
    run = crawl_runs(database_url)[-1]
    stats = run["stats"]

    # the fault run on its own: every product stored exactly, or dead-lettered with its reason
    assert fault_run_problems(database_url, truth, site) == []
    letters = query(
        database_url, "select failure_class, count(*) from dead_letters group by failure_class"
    )
    assert letters, "the fault run dead-lettered nothing: the replay below would prove nothing"
    assert run["dead_letters"] == stats["dead_letters/count"] == sum(n for _, n in letters)
    for failure_class, count in letters:
        assert stats.get(f"dead_letters/{failure_class}") == count, failure_class

    # nothing fetched twice: one whole answer per product page, and so no change recorded
    assert repeated_product_fetches(log) == {}
    assert query(database_url, "select count(*) from product_changes") == [(0,)]

    # every failure class met, named in the stats
    for failure_class in ("server", "transient", "throttled", "content"):
        assert stats.get(f"retry/class/{failure_class}", 0) > 0, failure_class
    assert stats.get("retry/retry_after_honoured", 0) > 0

    # the breaker opened during the outage and closed after it, by its own clock and the site's
    domain = "127.0.0.1"
    for transition in ("closed_to_open", "open_to_half_open", "half_open_to_closed"):
        assert stats.get(f"circuit/{domain}/{transition}", 0) >= 1, transition
    assert stats.get(f"circuit/{domain}/state") == "closed"
    transitions = breaker_transitions(output, domain)
    timeline = [(round(t - window["start"], 2), old, new) for t, old, new in transitions]
    opened = [
        t for t, _, new in transitions if new == "open" and window["start"] < t < window["end"]
    ]
    assert opened, ("no opening during the outage", timeline)
    closed = [t for t, _, new in transitions if new == "closed" and t > opened[0]]
    assert closed, ("never closed after the outage", timeline)
    assert closed[0] >= window["end"], ("closed during the outage", timeline)

    # no request storm during the outage: once the breaker is open, only probes arrive, one
    # at a time (CIRCUIT_HALF_OPEN_PROBES), each a whole cool-down after the last
    settled = opened[0] + IN_FLIGHT_GRACE
    during = sorted((e for e in log if settled <= e["t"] < window["end"]), key=lambda e: e["t"])
    arrivals = [round(e["t"] - window["start"], 2) for e in during]
    assert during, ("no probe during the outage", timeline)
    assert most_at_once(during) <= FAST_RECOVERY["CIRCUIT_HALF_OPEN_PROBES"], (arrivals, timeline)
    gaps = [b["t"] - a["t"] for a, b in pairwise(during)]
    assert all(gap >= FAST_RECOVERY["CIRCUIT_COOLDOWN"] for gap in gaps), (arrivals, timeline)
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
    assert crawl_runs(database_url)[-1]["dead_letters_resolved"] == run["dead_letters"]
    assert database_differences(database_url, truth) == []
    # the replay fetched only what the fault run had not got
    assert repeated_product_fetches(site.requests_log(since=started)) == {}
    assert query(database_url, "select count(*) from product_changes") == [(0,)]


def test_requests_waiting_in_the_slot_when_the_breaker_opens_are_held(simulated_site, tmp_path):
    """One request at a time to the site, 0.3 s apart, and eight in the downloader: seven
    wait in the slot's queue, past the breaker's process_request, when an outage opens it.
    They must not reach the site while it is open (before the send gate they went out
    one by one, 0.3 s apart, right after the opening)."""
    site = simulated_site(products=36, seed=5)
    truth = site.truth()
    log_path = tmp_path / "crawl.log"
    database_url = sqlite_url(tmp_path / "matter.sqlite3")
    crawl = start_crawl(
        site.base_url,
        database_url,
        settings={
            "CONCURRENT_REQUESTS": 8,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
            "DOWNLOAD_DELAY": 0.3,
            "RANDOMIZE_DOWNLOAD_DELAY": False,
            "ADAPTIVE_CONCURRENCY_ENABLED": False,
            "CIRCUIT_FAILURE_THRESHOLD": 3,
            "CIRCUIT_COOLDOWN": 4,
            "CIRCUIT_HALF_OPEN_PROBES": 1,
            "RETRY_POLICIES": {"server": {"base": 0.5, "cap": 2}},
            "LOG_FORMAT": EPOCH_LOG_FORMAT,
        },
        log_path=log_path,
    )
    try:
        wait_for(lambda: site.stats()["requests_total"] >= 8, 60, 0.05, "the crawl to get going")
        window = site.set_faults(outage="0,3")["outage_window"]
        assert crawl.wait(timeout=120) == 0
    finally:
        stop_process(crawl)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert database_differences(database_url, truth) == []
    domain = urlsplit(site.base_url).hostname
    transitions = breaker_transitions(output, domain)
    opened = next(t for t, _, new in transitions if new == "open")
    reopened = next(t for t, old, new in transitions if (old, new) == ("open", "half_open"))
    assert window["start"] < opened < window["end"], transitions
    # while open, nothing; the first request after it is the probe of the half-open breaker
    arrivals = [entry["t"] for entry in site.requests_log(since=window["start"])]
    during = [t - opened for t in arrivals if opened + IN_FLIGHT_GRACE <= t < reopened]
    assert during == [], (during, transitions)
    # held by the send gate: Scrapy's DownloaderStats counts the exception that carries them
    assert (
        "'downloader/exception_type_count/matter_crawler.middlewares.breaker.CircuitHeld'" in output
    )


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

    # a letter of the dcl spider in the same database (a ledger page it lost): the
    # catalogue's replay leaves it to that spider (it would be read as a listing page)
    ledger_page = f"{site.base_url}/dcl/model/models?pagination.offset=1000"
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dead_letters (url, stage, failure_class, last_error, attempts, "
                "first_failed_at, last_failed_at, run_id) SELECT :url, 'models', "
                "failure_class, last_error, attempts, first_failed_at, last_failed_at, run_id "
                "FROM dead_letters LIMIT 1"
            ),
            {"url": ledger_page},
        )
    engine.dispose()

    site.set_faults(error_rate=0)
    site.reset_stats()
    run_crawl(site.base_url, database_url, args={"replay_dead_letters": 1}).check()
    replay = crawl_runs(database_url)[-1]
    assert replay["dead_letters_resolved"] == len(truth)
    assert query(database_url, "select url from dead_letters where resolved_at is null") == [
        (ledger_page,)
    ]
    assert site.stats()["requests_total"] == len(truth) + 1  # the letters and robots.txt
    assert replay["dead_letters"] == 0
    assert database_differences(database_url, truth) == []
    # a replay fetches the letters only: no listing walk
    assert site.stats()["by_kind"].get("list", 0) == 0
