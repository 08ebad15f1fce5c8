"""Where a real crawl of the simulated site is held back, as ``/status`` and the
``matter_crawler_bottleneck`` gauge say it, in four situations: the ``polite`` profile
(politeness), a site that refuses requests over its capacity (the site), ``fast`` on a
site that answers at once (our CPU: the site, on the same machine, takes the other
core), and an outage that opens the breaker (the site).

Each crawl runs until ``/status`` and ``/metrics`` agree on the expected verdict, then
is stopped. The verdict's reasoning itself is tested on plain numbers in
``tests/unit/test_monitoring_bottleneck.py``.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..helpers import monitoring_address, sqlite_url, start_crawl, stop_process, wait_for


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode("utf-8")


def _gauge(base_url: str) -> dict[str, float]:
    for family in text_string_to_metric_families(_get(f"{base_url}metrics")):
        if family.name == "matter_crawler_bottleneck":
            return {sample.labels["verdict"]: sample.value for sample in family.samples}
    return {}


def held_back(simulated_site, tmp_path, site_options, settings, expected, reason, during=None):
    """Crawl until /status and the gauge both give ``expected`` with a reason starting
    ``reason``; the verdicts seen on the way, counted."""
    site = simulated_site(seed=5, **site_options)
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(tmp_path / "held.sqlite3"),
        settings={"MONITORING_PORT": 0, "PROGRESS_BAR": False, **settings},
        log_path=log_path,
    )
    seen: Counter[str] = Counter()
    try:
        base_url, _ = monitoring_address(log_path)
        if during is not None:
            during(site)

        def found() -> dict | None:
            assert crawl.poll() is None, (
                f"the crawl ended first: {seen}\n{log_path.read_text()[-3000:]}"
            )
            status = json.loads(_get(f"{base_url}status"))
            verdict = status["bottleneck"]
            seen[verdict["verdict"]] += 1
            if verdict["verdict"] != expected or not verdict["reason"].startswith(reason):
                return None
            if status["cpu_percent"] is None or not status["bytes_per_second"]:
                return None  # the first seconds: no rates yet
            gauge = _gauge(base_url)
            if gauge.get(expected) != 1.0:
                return None
            assert sum(gauge.values()) == 1.0, gauge  # one verdict at a time
            return status

        status = wait_for(found, timeout=120, interval=0.25, message=f"a {expected} verdict")
    finally:
        stop_process(crawl)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert set(status["queues"]) <= {"list", "detail", "delist", "other"}
    return status, seen


@pytest.mark.slow
def test_the_polite_profile_is_held_back_by_politeness(simulated_site, tmp_path):
    status, _ = held_back(
        simulated_site,
        tmp_path,
        {"products": 240, "latency_ms": 20},
        {"CRAWL_PROFILE": "polite"},
        "politeness",
        "politeness ceiling: 127.0.0.1 at",
    )
    assert status["bottleneck"]["domain"] == "127.0.0.1"
    assert status["bottleneck"]["reason"].endswith("1 s apart")
    assert status["cpu_demand_percent"] < 50  # waiting for its next turn, not computing


@pytest.mark.slow
def test_a_site_at_its_capacity_holds_the_crawl_back(simulated_site, tmp_path):
    status, _ = held_back(
        simulated_site,
        tmp_path,
        {"products": 1200, "latency_ms": 100, "capacity": 4},
        {"CRAWL_PROFILE": "fast"},
        "site",
        "capacity: 127.0.0.1 is troubled above",
    )
    assert status["bottleneck"]["domain"] == "127.0.0.1"


@pytest.mark.slow
def test_fast_on_a_site_without_latency_is_held_back_by_our_cpu(simulated_site, tmp_path):
    status, _ = held_back(
        simulated_site,
        tmp_path,
        {"products": 4000},
        {"CRAWL_PROFILE": "fast"},
        "cpu",
        "the crawl's thread runs or waits for a CPU",
    )
    assert status["cpu_demand_percent"] >= 85


@pytest.mark.slow
def test_an_outage_opens_the_breaker_and_the_site_holds_the_crawl_back(simulated_site, tmp_path):
    status, _ = held_back(
        simulated_site,
        tmp_path,
        {"products": 1200, "latency_ms": 50},
        {"CRAWL_PROFILE": "fast"},
        "site",
        "breaker open: 127.0.0.1 is failing",
        during=lambda site: site.set_faults(outage="1,60"),
    )
    assert status["breakers"]["127.0.0.1"] == "open"
