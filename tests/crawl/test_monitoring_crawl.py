"""Two real crawls of simulated sites in one process: each exports its own metrics,
equal to its own stats and to its adaptive controller's decisions, without
``*_created`` series, and everything the monitoring started stops at close; and a
crawl forced down with a second Ctrl-C still leaves the service-discovery file.

In-process (AsyncCrawlerRunner) on purpose: the point is two crawlers sharing one
process, hence per-crawl registries, ports and timers. ``/metrics`` is fetched
over HTTP from a worker thread inside a ``spider_closed`` handler, when every
count is final but the server is still up (it closes when the engine stops).
"""

from __future__ import annotations

import signal
import socket
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from scrapy import signals
from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from matter_crawler.adaptive.extension import adaptive_state
from matter_crawler.extensions.progress import ProgressMonitor
from matter_crawler.extensions.prometheus import PrometheusExporter
from matter_crawler.monitoring.discovery import read_groups
from matter_crawler.spiders.matter_products import MatterProductsSpider

from ..helpers import sqlite_url, start_crawl, stop_process, wait_for


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8")


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _total(samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def _extension(crawler: Crawler, kind: type) -> Any:
    return next(ext for ext in crawler.extensions.middlewares if isinstance(ext, kind))


class CloseProbe:
    """At spider_closed: the SD file, /metrics over HTTP, the adaptive state, the stats."""

    def __init__(self, crawler: Crawler, sd_file) -> None:
        self.crawler = crawler
        self.sd_file = sd_file
        self.metrics_text: str | None = None
        self.stats: dict[str, Any] = {}
        self.sd_targets_at_close: list[str] = []
        self.url: str | None = None
        # read just before and just after the scrape: what is equal in both is what it saw
        self.adaptive: tuple[dict, dict] = ({}, {})
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    async def spider_closed(self) -> None:
        self.sd_targets_at_close = [g["targets"][0] for g in read_groups(self.sd_file)]
        self.url = _extension(self.crawler, PrometheusExporter).server.url
        before = adaptive_state(self.crawler)
        self.metrics_text = await maybe_deferred_to_future(
            deferToThread(_fetch, f"{self.url}metrics")
        )
        self.adaptive = (before, adaptive_state(self.crawler))
        self.stats = dict(self.crawler.stats.get_stats())


def _one(samples, name: str, **labels: str) -> float | None:
    """The value of the one sample with these labels (None if there is none)."""
    found = [
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def _check_adaptive_gauges(samples, before: dict, after: dict, mine: dict[str, str]) -> None:
    """The adaptive gauges equal adaptive_state() (fields that did not change meanwhile)."""
    assert before, "the adaptive extension is on: it has a state per domain"
    exported = {
        labels["domain"]
        for name, labels, _ in samples
        if name == "matter_crawler_adaptive_concurrency"
    }
    assert exported == set(before) == set(after)
    checked = set()
    for domain, state in before.items():
        expected = [  # (field of the state, metric, extra labels, value)
            ("concurrency", "adaptive_concurrency", {}, state["concurrency"]),
            ("ceiling", "adaptive_concurrency_ceiling", {}, state["ceiling"]),
            ("paused", "adaptive_paused", {}, float(state["paused"])),
            ("memory_pressure", "adaptive_memory_pressure", {}, float(state["memory_pressure"])),
            ("min_concurrency", "adaptive_concurrency_bound", {"bound": "min"},
             state["min_concurrency"]),
            ("max_concurrency", "adaptive_concurrency_bound", {"bound": "max"},
             state["max_concurrency"]),
            ("latency", "adaptive_latency_seconds", {"kind": "smoothed"}, state["latency"]),
            ("increases", "adaptive_adjustments_total", {"direction": "increase"},
             state["increases"]),
            ("decreases", "adaptive_adjustments_total", {"direction": "decrease"},
             state["decreases"]),
        ]  # fmt: skip
        for field, name, extra, value in expected:
            if after[domain][field] != value:
                continue  # changed while /metrics was read: no telling which it saw
            labels = {**mine, "domain": domain, **extra}
            assert _one(samples, f"matter_crawler_{name}", **labels) == value, (name, labels)
            checked.add(field)
    assert {"concurrency", "ceiling", "min_concurrency", "max_concurrency", "increases"} <= checked


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_two_crawls_in_one_process_export_their_own_stats_and_clean_up(
    simulated_site, tmp_path
):
    sites = {
        "job-a": simulated_site(
            products=120, seed=3, error_rate=0.05, throttle_rate=0.03, retry_after=1
        ),
        "job-b": simulated_site(products=240, seed=4, error_rate=0.05),
    }
    sd_file = tmp_path / "targets" / "matter-crawler.json"
    settings = Settings()
    settings.setmodule("matter_crawler.settings", priority="project")
    settings.setdict(
        {
            "CRAWL_PROFILE": "fast",
            "LOG_LEVEL": "WARNING",
            "MONITORING_PORT": 0,
            "PROMETHEUS_SD_FILE": str(sd_file),
            "PROGRESS_BAR": False,
        },
        priority="cmdline",
    )
    runner = AsyncCrawlerRunner(settings)
    crawlers, probes, runs = {}, {}, []
    for job, site in sites.items():
        spider_class = type(
            f"Spider_{job.replace('-', '_')}",
            (MatterProductsSpider,),
            {"custom_settings": {
                "CSA_BASE_URL": site.base_url,
                "DATABASE_URL": sqlite_url(tmp_path / f"{job}.sqlite3"),
            }},
        )  # fmt: skip
        crawler = runner.create_crawler(spider_class)
        crawlers[job], probes[job] = crawler, CloseProbe(crawler, sd_file)
        runs.append(deferred_from_coro(runner.crawl(crawler, _job=job)))
    await DeferredList(runs, fireOnOneErrback=True)

    for job, crawler in crawlers.items():
        probe = probes[job]
        stats = probe.stats
        samples = _samples(probe.metrics_text)
        mine = {"job": job, "spider": "matter_products"}
        assert {labels.get("job") for _, labels, _ in samples} == {
            job
        }  # nothing of the other crawl
        host_port = probe.url.removeprefix("http://").rstrip("/")
        assert host_port in probe.sd_targets_at_close

        # counters equal the crawl's own stats
        assert (
            _total(samples, "matter_crawler_requests_total", **mine)
            == stats["downloader/request_count"]
        )
        statuses = {
            key.rsplit("/", 1)[1]: value
            for key, value in stats.items()
            if key.startswith("downloader/response_status_count/")
        }
        assert statuses.keys() >= {"200"}
        for status, count in statuses.items():
            assert _total(samples, "matter_crawler_responses_total", status=status, **mine) == count
        assert (
            _total(samples, "matter_crawler_download_latency_seconds_count", **mine)
            == stats["downloader/response_count"]
        )
        stored = sum(
            stats.get(f"store/products_{kind}", 0) for kind in ("new", "changed", "unchanged")
        )
        assert stored == len(sites[job].truth())
        assert (
            _total(samples, "matter_crawler_items_stored_total", kind="product", **mine) == stored
        )
        assert (
            _total(samples, "matter_crawler_products_new_total", **mine)
            == stats["store/products_new"]
        )
        assert not [name for name, _, _ in samples if name.endswith("_created")]
        assert stats["retry/count"] > 0  # the sites inject errors
        assert _total(samples, "matter_crawler_retries_total", **mine) == stats["retry/count"]
        # labelled with the domain: the site's host (Scrapy's download slot key)
        assert (
            _total(samples, "matter_crawler_retries_total", domain="127.0.0.1", **mine)
            == stats["retry/count"]
        )
        for name in ("matter_crawler_retries_total", "matter_crawler_dead_letters_total"):
            domains = {labels["domain"] for n, labels, _ in samples if n == name}
            assert domains == {"127.0.0.1"}, (name, domains)
        for key, count in stats.items():
            if key.startswith("retry/class/"):
                failure_class = key.rsplit("/", 1)[1]
                assert (
                    _total(
                        samples, "matter_crawler_retries_total", failure_class=failure_class, **mine
                    )
                    == count
                )
        assert _total(samples, "matter_crawler_dead_letters_total", **mine) == stats.get(
            "dead_letters/count", 0
        )
        assert _total(samples, "matter_crawler_items_invalid_total", **mine) == stats.get(
            "validation/invalid", 0
        )
        assert (
            _total(samples, "matter_crawler_batch_write_seconds_count", **mine)
            == stats["store/batches"]
        )
        assert _total(samples, "matter_crawler_batch_write_seconds_sum", **mine) == pytest.approx(
            stats["store/batch_seconds_total"]
        )
        # gauges: the final state
        assert _total(samples, "matter_crawler_progress_ratio", stage="total", **mine) == 1.0
        assert _total(samples, "matter_crawler_eta_seconds", **mine) == 0.0
        assert (
            _total(samples, "matter_crawler_stage_pages", stage="detail", state="done", **mine)
            == stats["matter/detail/pages"]
        )
        assert _total(samples, "matter_crawler_requests_in_flight", **mine) == 0
        assert _total(samples, "matter_crawler_circuit_state", state="closed", **mine) == 1
        assert _total(samples, "matter_crawler_memory_resident_bytes", **mine) > 10 * 2**20
        _check_adaptive_gauges(samples, *probe.adaptive, mine)

        # everything stopped: server, port, timers, event streams
        exporter = _extension(crawler, PrometheusExporter)
        monitor = _extension(crawler, ProgressMonitor)
        assert exporter.server.listening is None
        assert exporter.aggregator._timer is None
        assert exporter.aggregator.finished
        assert monitor.hub.closed == {"reason": "finished", "t": monitor.hub.closed["t"]}
        host, port = host_port.rsplit(":", 1)
        with socket.socket() as probe_socket, pytest.raises(ConnectionRefusedError):
            probe_socket.connect((host, int(port)))

    assert read_groups(sd_file) == []  # both removed their entries


def test_a_forced_shutdown_still_leaves_the_discovery_file(simulated_site, tmp_path):
    """Ctrl-C twice: Scrapy stops without closing the spider; the entry goes at exit."""
    site = simulated_site(products=120, seed=6, latency_ms=3000)  # downloads outlast Ctrl-C
    sd_file = tmp_path / "sd.json"
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(tmp_path / "forced.sqlite3"),
        settings={"MONITORING_PORT": 0, "PROMETHEUS_SD_FILE": str(sd_file)},
        log_path=log_path,
    )
    try:
        wait_for(lambda: "Registered 127.0.0.1:" in log_path.read_text(), timeout=60)
        assert len(read_groups(sd_file)) == 1
        wait_for(lambda: "Planning a full crawl" in log_path.read_text(), timeout=60)
        crawl.send_signal(signal.SIGINT)
        wait_for(lambda: "shutting down gracefully" in log_path.read_text(), timeout=30)
        crawl.send_signal(signal.SIGINT)
        assert crawl.wait(timeout=60) == 0
    finally:
        stop_process(crawl)
    output = log_path.read_text()
    assert "forcing unclean shutdown" in output
    assert "Spider closed" not in output
    assert read_groups(sd_file) == []
