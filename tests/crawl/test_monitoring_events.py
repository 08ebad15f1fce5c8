"""One real crawl of the simulated site, with faults (server errors, 429s with a
Retry-After) and the events file on, checked from outside as an operator sees it.

During the crawl: ``/status`` is the latest snapshot; ``/metrics``, parsed with
prometheus-client's own parsers in both exposition formats, has exactly the
metrics and types of :data:`METRIC_TYPES`, with no ``*_created`` series, and the
adaptive controller's decisions show (a learned ceiling, a Retry-After pause); a
request naming another host is refused. After it: the events file has a snapshot
about once a second, one ``retry`` event per retry the stats count, a ``done`` or
``invalid`` event for every product page, and ends with the ``closed`` event.
"""

from __future__ import annotations

import http.client
import json
import statistics
import urllib.request
from collections import Counter
from itertools import pairwise
from urllib.parse import urlsplit

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ..helpers import (
    crawl_runs,
    monitoring_address,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)

#: Every metric family the crawl exports, by the name prometheus-client's parsers
#: give it (counters without ``_total``), and its type.
METRIC_TYPES = {
    # counters
    "matter_crawler_requests": "counter",
    "matter_crawler_responses": "counter",  # by status
    "matter_crawler_items_stored": "counter",
    "matter_crawler_products_new": "counter",
    "matter_crawler_products_changed": "counter",
    "matter_crawler_items_invalid": "counter",
    "matter_crawler_retries": "counter",  # by failure class
    "matter_crawler_dead_letters": "counter",
    "matter_crawler_circuit_state_changes": "counter",
    "matter_crawler_adaptive_adjustments": "counter",
    # histograms
    "matter_crawler_download_latency_seconds": "histogram",
    "matter_crawler_batch_write_seconds": "histogram",
    # gauges
    "matter_crawler_start_time_seconds": "gauge",
    "matter_crawler_requests_in_flight": "gauge",
    "matter_crawler_scheduler_queued_requests": "gauge",
    "matter_crawler_scheduler_delayed_requests": "gauge",
    "matter_crawler_domain_concurrency": "gauge",
    "matter_crawler_domain_delay_seconds": "gauge",
    "matter_crawler_domain_active_requests": "gauge",
    "matter_crawler_circuit_state": "gauge",
    "matter_crawler_progress_ratio": "gauge",
    "matter_crawler_stage_pages": "gauge",
    "matter_crawler_eta_seconds": "gauge",
    "matter_crawler_eta_uncertainty_seconds": "gauge",
    "matter_crawler_memory_resident_bytes": "gauge",
    "matter_crawler_bottleneck": "gauge",
    "matter_crawler_adaptive_concurrency": "gauge",
    "matter_crawler_adaptive_concurrency_ceiling": "gauge",
    "matter_crawler_adaptive_concurrency_bound": "gauge",
    "matter_crawler_adaptive_paused": "gauge",
    "matter_crawler_adaptive_memory_pressure": "gauge",
    "matter_crawler_adaptive_latency_seconds": "gauge",
}
#: Families that may have no sample yet at a given scrape (nothing happened to count).
MAY_BE_EMPTY = {"matter_crawler_circuit_state_changes"}
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _get(url: str, accept: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode("utf-8")


def _families(text: str, parse) -> dict[str, tuple[str, list]]:
    return {family.name: (family.type, family.samples) for family in parse(text)}


def _status_with_host(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/status", headers={"Host": host})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


class DuringTheCrawl:
    """What one poll of /status and /metrics saw, accumulated until everything was seen."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.status: dict | None = None
        self.types_checked = False
        self.ceiling_seen = False
        self.pause_seen = False

    def poll(self) -> bool:
        status = json.loads(_get(f"{self.base_url}status"))
        if not status["finished"] and status["progress"] and 0 < status["progress"] < 1:
            self.status = status
        text = _families(_get(f"{self.base_url}metrics"), parse_text)
        samples = {name: found for name, (_, found) in text.items()}
        if not self.types_checked and all(
            samples[name] for name in METRIC_TYPES.keys() - MAY_BE_EMPTY
        ):
            # every family has data now (the ETA needs a rate, the ceiling a trouble)
            openmetrics = _families(_get(f"{self.base_url}metrics", OPENMETRICS), parse_openmetrics)
            for exported in (text, openmetrics):
                assert {name: kind for name, (kind, _) in exported.items()} == METRIC_TYPES
                names = {sample.name for _, found in exported.values() for sample in found}
                assert not {name for name in names if name.endswith("_created")}
            self.types_checked = True
        for sample in samples["matter_crawler_adaptive_concurrency_ceiling"]:
            bounds = {
                other.labels["bound"]: other.value
                for other in samples["matter_crawler_adaptive_concurrency_bound"]
                if other.labels["domain"] == sample.labels["domain"]
            }
            assert bounds["min"] <= sample.value <= bounds["max"]
            self.ceiling_seen = True
        for sample in samples["matter_crawler_adaptive_paused"]:
            assert sample.value in (0.0, 1.0)
            self.pause_seen |= sample.value == 1.0
        return bool(self.status and self.types_checked and self.ceiling_seen and self.pause_seen)


@pytest.mark.slow
def test_status_metrics_and_the_events_file_of_a_real_crawl(simulated_site, tmp_path):
    site = simulated_site(
        products=180, seed=13, latency_ms=40, error_rate=0.05, throttle_rate=0.03, retry_after=2
    )
    truth_paths = {record["url"] for record in site.truth()}
    database_url = sqlite_url(tmp_path / "events.sqlite3")
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        database_url,
        settings={
            "MONITORING_PORT": 0,
            "PROGRESS_BAR": False,
            "PROGRESS_EVENTS_FILE": str(tmp_path / "events" / "%(name)s-%(job)s.jsonl"),
            "CONCURRENT_REQUESTS": 2,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        },
        args={"_job": "events-test"},
        log_path=log_path,
    )
    try:
        base_url, port = monitoring_address(log_path)
        during = DuringTheCrawl(base_url)

        def everything_seen() -> bool:
            assert crawl.poll() is None, (
                f"the crawl ended before everything was seen: status {bool(during.status)}, "
                f"types {during.types_checked}, ceiling {during.ceiling_seen}, "
                f"pause {during.pause_seen}\n{log_path.read_text()[-3000:]}"
            )
            return during.poll()

        wait_for(everything_seen, timeout=120, interval=0.1, message="the crawl's metrics")
        assert _status_with_host(port, f"attacker.example:{port}") == 421
        assert _status_with_host(port, f"localhost:{port}") == 200
        assert crawl.wait(timeout=240) == 0, log_path.read_text()[-3000:]
    finally:
        stop_process(crawl)
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    (run,) = crawl_runs(database_url)
    stats = run["stats"]

    events_file = tmp_path / "events" / "matter_products-events-test.jsonl"
    events = [json.loads(line) for line in events_file.read_text(encoding="ascii").splitlines()]
    *body, last = events
    assert last["type"] == "closed"
    assert last["reason"] == "finished"
    assert all(event["type"] in ("snapshot", "task", "stage", "batch") for event in body)

    # snapshots: about one a second, the one /status served among them, the last one final
    snapshots = [event for event in body if event["type"] == "snapshot"]
    *ticks, final = snapshots
    assert final["finished"]
    assert final["reason"] == "finished"
    assert final["progress"] == 1.0
    assert len(ticks) >= 3
    gaps = [later["elapsed"] - earlier["elapsed"] for earlier, later in pairwise(ticks)]
    assert 0.8 <= statistics.median(gaps) <= 1.5, gaps
    span = ticks[-1]["elapsed"] - ticks[0]["elapsed"]
    assert len(ticks) <= span / 1.0 + 2  # never more often than PROGRESS_INTERVAL
    assert {"type": "snapshot", **during.status} in ticks  # /status served one of them
    assert during.status["job"] == "events-test"

    # task events: every retry, and every product page's outcome, once
    tasks = [event for event in body if event["type"] == "task" and event["outcome"] != "started"]
    retries = [task for task in tasks if task["outcome"] == "retry"]
    assert stats["retry/count"] > 0  # the site's faults
    assert len(retries) == stats["retry/count"]
    assert Counter(task["failure_class"] for task in retries) == {
        key.rsplit("/", 1)[1]: value
        for key, value in stats.items()
        if key.startswith("retry/class/")
    }
    assert {"server", "throttled"} <= {task["failure_class"] for task in retries}
    outcomes = Counter(
        urlsplit(task["url"]).path
        for task in tasks
        if task["stage"] == "detail" and task["outcome"] in ("done", "invalid")
    )
    assert set(outcomes) == truth_paths
    assert max(outcomes.values()) == 1
    assert not [task for task in tasks if task["outcome"] == "failed"]
    assert stats.get("dead_letters/count", 0) == 0
    listing_pages = {
        task["page"] for task in tasks if task["stage"] == "list" and task["status"] == 200
    }
    assert listing_pages == set(range(1, stats["matter/list/pages"] + 1))
    assert all(task["t"] <= last["t"] for task in tasks)
