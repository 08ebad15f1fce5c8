"""Monitoring parts on their own: rates and ETA, stage counts, terminal text, the
service-discovery file under concurrent writers, the event hub, the HTTP server's
port choice and Host check, the registry's output, the shipped static files,
Prometheus configuration and dashboard."""

from __future__ import annotations

import http.client
import json
import pkgutil
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from twisted.internet.threads import deferToThread

from matter_crawler.commands._text import duration
from matter_crawler.extensions.prometheus import PrometheusExporter
from matter_crawler.monitoring import events as events_module
from matter_crawler.monitoring.crosscheck import CrosscheckCollector
from matter_crawler.monitoring.discovery import (
    HOST_LABEL,
    PID_LABEL,
    read_groups,
    update_groups,
)
from matter_crawler.monitoring.eta import EtaEstimator, SmoothedRate
from matter_crawler.monitoring.events import EventHub
from matter_crawler.monitoring.metrics import CrawlMetrics, CrawlStateCollector
from matter_crawler.monitoring.progress import ProgressAggregator, matter_stages
from matter_crawler.monitoring.resources import JsonResource
from matter_crawler.monitoring.server import MonitoringServer, parse_ports, renamed_setting
from matter_crawler.monitoring.terminal import ProgressBar, format_duration, progress_line

from ..conftest import require_executable
from ..helpers import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "matter-crawler.json"
PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus.yml"
#: The settings of the monitoring server and extensions.
MONITORING_PREFIXES = ("MONITORING_", "PROMETHEUS_", "PROGRESS_")


# -- rates and ETA ---------------------------------------------------------------------------


def test_smoothed_rate_is_right_from_the_first_seconds_and_steady_after():
    rate = SmoothedRate(window=30)
    rate.update(0.0, 0)
    rate.update(1.0, 10)
    assert rate.rate == pytest.approx(10)  # bias-corrected: not 10 * (1 - e^-1/30)
    for second in range(2, 120):
        rate.update(float(second), 10 * second)
    assert rate.rate == pytest.approx(10)
    assert rate.deviation == pytest.approx(0, abs=1e-6)


def test_eta_of_a_steady_crawl_is_remaining_over_rate_with_a_narrow_band():
    estimator = EtaEstimator(window=30)
    for second in range(0, 60):
        estimator.update(float(second), 20 * second + (3 if second % 2 else 0))  # a little noise
    estimate = estimator.estimate(remaining=600)
    assert estimate.seconds == pytest.approx(30, rel=0.05)
    assert 0 < estimate.band < 0.1 * estimate.seconds


def test_eta_follows_a_slowdown_and_widens_its_band_while_the_rate_drifts():
    estimator = EtaEstimator(window=10, slow_factor=6)
    done = 0
    for second in range(0, 120):
        estimator.update(float(second), done)
        done += 20 + (4 if second % 2 else -4)  # noisy but steady: 20 pages/s
    steady = estimator.estimate(remaining=1200)
    assert estimator.rate == pytest.approx(estimator.slow.rate)  # the smooth rate is used
    for second in range(120, 150):  # the site now answers half as fast
        estimator.update(float(second), done)
        done += 10 + (2 if second % 2 else -2)
    slowed = estimator.estimate(remaining=1200)
    assert steady.seconds == pytest.approx(60, rel=0.05)
    assert estimator.rate == pytest.approx(estimator.fast.rate)  # the change is clear: follow it
    assert slowed.seconds == pytest.approx(120, rel=0.1)
    assert slowed.band > 5 * steady.band


def test_eta_counts_extrapolated_work_as_uncertain_and_is_zero_when_nothing_remains():
    estimator = EtaEstimator(window=30)
    for second in range(0, 60):
        estimator.update(float(second), 10 * second)
    sure = estimator.estimate(remaining=1000)
    guessed = estimator.estimate(remaining=1000, extrapolated=900)
    assert guessed.seconds == sure.seconds
    assert guessed.band > sure.band
    assert estimator.estimate(remaining=0).seconds == 0
    assert EtaEstimator().estimate(remaining=10).seconds is None  # no rate yet


def test_matter_stages_extrapolate_product_pages_while_listing():
    counts = {"stage": "list", "list_total": 50, "list_done": 10, "list_failed": 0,
              "detail_total": 120, "detail_done": 40, "detail_failed": 2}  # fmt: skip
    stages = matter_stages(counts)
    assert stages["list"].remaining == 40
    assert stages["detail"].total == pytest.approx(600)  # 12 per listing page so far
    assert stages["detail"].extrapolated == pytest.approx(480)
    assert stages["detail"].remaining == pytest.approx(558)

    listed = matter_stages({**counts, "stage": "detail", "list_done": 50, "detail_total": 590})
    assert listed["detail"].total == 590
    assert listed["detail"].extrapolated == 0
    planning = matter_stages({"stage": "planning", "list_total": None})
    assert planning["list"].remaining is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0s"), (44.6, "45s"), (130, "2m10s"), (3725, "1h02m")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.04, "0.0s"),
        (12.34, "12.3s"),
        (59.96, "1m00s"),
        (245, "4m05s"),
        (7380, "2h03m"),
        (float("nan"), "-"),
    ],
)
def test_the_commands_show_durations_in_the_same_format_with_tenths(seconds, text):
    """``scrapy runs`` formats a run's duration with the ETA's formatter, tenths below a minute."""
    assert duration(seconds) == text


def _snapshot(**changes):
    snapshot = {
        "finished": False,
        "elapsed": 100.0,
        "progress": 0.25,
        "stages": {
            "list": {"total": 498, "done": 120, "failed": 0, "estimated": False},
            "detail": {"total": 5970, "done": 1300, "failed": 0, "estimated": False},
        },
        "rates": {"items": 35.2, "pages": 40.0},
        "requests": {"retries": 0},
        "eta": {"seconds": 130.0, "band": 15.0},
    }
    snapshot.update(changes)
    return snapshot


def test_progress_line_reads_like_the_issue_says():
    assert progress_line(_snapshot()) == (
        "list 120/498 pages, details 1,300/5,970, 35 items/s, ETA 2m10s +-15s"
    )
    estimated = _snapshot()
    estimated["stages"]["detail"]["estimated"] = True
    estimated["requests"]["retries"] = 12
    assert "details 1,300/~5,970" in progress_line(estimated)
    assert "12 retries" in progress_line(estimated)


def test_progress_bar_fits_the_terminal_width_and_is_only_auto_on_a_terminal(tmp_path):
    with (tmp_path / "out").open("w", encoding="ascii") as out:
        text = ProgressBar(stream=out).render(_snapshot(), columns=60)
    assert len(text) == 59  # one short of the width: a wrapped line cannot be redrawn
    assert text.startswith("[####-----------]  25% list 120/498")  # 15 cells, 4 filled
    with (tmp_path / "not-a-tty").open("w") as stream:
        assert ProgressBar.wanted("auto", stream) is False
        assert ProgressBar.wanted("true", stream) is True
        assert ProgressBar.wanted("false", stream) is False


# -- service discovery file ----------------------------------------------------------------------


REGISTER_THEN_WAIT = """
import sys
from pathlib import Path
from matter_crawler.monitoring.discovery import ServiceDiscoveryEntry
path, port = sys.argv[1], sys.argv[2]
entry = ServiceDiscoveryEntry(Path(path), f"127.0.0.1:{port}", {"spider": "s", "job": port})
entry.add()
print("ready", flush=True)
sys.stdin.readline()
entry.remove()
"""


def test_concurrent_jobs_share_the_discovery_file_without_losing_entries(tmp_path):
    path = tmp_path / "targets" / "matter-crawler.json"
    ports = [9500 + n for n in range(8)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_THEN_WAIT, str(path), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        groups = read_groups(path)
        assert sorted(group["targets"][0] for group in groups) == [
            f"127.0.0.1:{port}" for port in ports
        ]
        assert {group["labels"]["job"] for group in groups} == {str(port) for port in ports}
        for worker in workers:  # all remove their entries at once
            worker.stdin.write("\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            worker.stdin.close()
            worker.stdout.close()
    assert read_groups(path) == []
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "matter-crawler.json",
        "matter-crawler.json.lock",
    ]  # no temporary file left behind


def test_entries_of_dead_processes_are_dropped_on_the_next_update(tmp_path):
    path = tmp_path / "sd.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {
        "targets": ["127.0.0.1:9999"],
        "labels": {HOST_LABEL: socket.gethostname(), PID_LABEL: str(dead.pid)},
    }
    elsewhere = {
        "targets": ["10.0.0.9:9410"],
        "labels": {HOST_LABEL: "another-host", PID_LABEL: "1"},
    }
    path.write_text(json.dumps([stale, elsewhere]))
    update_groups(path, lambda groups: groups)
    assert read_groups(path) == [elsewhere]


# -- event hub -------------------------------------------------------------------------------------


def test_event_hub_encodes_nothing_without_listeners_and_replays_recent_tasks(
    tmp_path, monkeypatch
):
    encoded = []
    real_encode = events_module.encode
    monkeypatch.setattr(
        events_module,
        "encode",
        lambda kind, payload: encoded.append(kind) or real_encode(kind, payload),
    )
    hub = EventHub(recent=3)
    for n in range(5):
        hub.task("done", "detail", f"http://x/{n}", name=f"<b>{n}</b>")
    hub.snapshot({"progress": 0.5})
    assert encoded == []  # nobody listens: no JSON per request
    assert len(hub.recent) == 3

    received: list[tuple[str, dict]] = []
    hub.subscribe(lambda kind, data: received.append((kind, json.loads(data))))
    assert [kind for kind, _ in received] == ["snapshot", "task", "task", "task"]
    assert [event["url"] for _, event in received[1:]] == ["http://x/2", "http://x/3", "http://x/4"]

    hub.open_file(tmp_path / "events.jsonl")
    hub.task("retry", "list", "http://x/list", failure_class="server", attempt=1)
    hub.close("finished")
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines] == ["task", "closed"]
    assert lines[0]["failure_class"] == "server"
    assert received[-1][0] == "closed"


def project_crawler(**overrides: object) -> Crawler:
    """A crawler with the project's monitoring settings (their defaults live there) and
    ``overrides``, all at the project's priority, as if written in the project's settings.py."""
    settings = Settings()
    settings.setmodule("matter_crawler.settings")
    defaults = {name: settings[name] for name in settings if name.startswith(MONITORING_PREFIXES)}
    return get_crawler(Spider, {**defaults, **overrides})


# -- HTTP server -------------------------------------------------------------------------------


def test_port_specs():
    assert parse_ports("9410") == [9410]
    assert parse_ports("9410-9430") == list(range(9410, 9431))
    assert parse_ports(0) == [0]
    for bad in ("nine", "9430-9410", "70000", "0-5"):
        with pytest.raises(ValueError, match="MONITORING_PORT"):
            parse_ports(bad)


def _free_port_pair() -> int:
    """A port p with p and p+1 both free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65535:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


@pytest_twisted.ensureDeferred
async def test_server_takes_the_first_free_port_of_its_range_and_frees_it():
    port = _free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        crawler = project_crawler(MONITORING_PORT=f"{port}-{port + 1}")
        server = MonitoringServer.from_crawler(crawler)
        assert MonitoringServer.from_crawler(crawler) is server  # one per crawl
        assert server.start() == f"http://127.0.0.1:{port + 1}/"
        assert server.port == port + 1
        # a second crawl finds the whole range taken: it runs without a server
        other = MonitoringServer.from_crawler(project_crawler(MONITORING_PORT=port + 1))
        assert other.start() is None
        await deferred_from_coro(server.stop())
    with socket.socket() as again:
        again.bind(("127.0.0.1", port + 1))  # freed


def _status_by_host(port: int, hosts: list[str | None], path: str = "/status") -> list[int]:
    """The status of a GET with each Host header (None: no Host header at all, HTTP/1.0)."""
    statuses = []
    for host in hosts:
        if host is None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode("ascii"))
                statuses.append(int(raw.makefile("rb").readline().split()[1]))
            continue
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": host})
            answer = connection.getresponse()
            answer.read()
            statuses.append(answer.status)
        finally:
            connection.close()
    return statuses


@pytest_twisted.ensureDeferred
async def test_server_refuses_host_headers_that_name_another_server():
    """DNS rebinding: a page on attacker.example resolved to 127.0.0.1 sends its own Host."""
    crawler = project_crawler(MONITORING_PORT=0, MONITORING_ALLOWED_HOSTS=["Crawler-1.internal"])
    server = MonitoringServer.from_crawler(crawler)
    server.put("status", JsonResource(lambda: {"ok": True}))
    assert server.start()
    port = server.port
    try:
        allowed = [f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                   f"[::1]:{port}", f"crawler-1.internal:{port}"]  # fmt: skip
        refused = [f"attacker.example:{port}", f"127.0.0.1.attacker.example:{port}",
                   f"127.0.0.1:{port + 1}", "localhost", f"localhost:{port}x",
                   f"localhost:{port}@attacker.example", "", None]  # fmt: skip
        statuses = await deferToThread(_status_by_host, port, allowed + refused)
        assert statuses == [200] * len(allowed) + [421] * len(refused)
        # every path, not only the known ones: a refused request learns nothing
        for path in ("/", "/metrics", "/events", "/no-such-page"):
            (status,) = await deferToThread(
                _status_by_host, port, [f"attacker.example:{port}"], path
            )
            assert status == 421, path
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_server_answers_to_its_configured_host():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names: no deprecation warning
        server = MonitoringServer.from_crawler(
            project_crawler(MONITORING_PORT=0, MONITORING_HOST="127.0.0.2")
        )
    server.put("status", JsonResource(lambda: {"ok": True}))
    assert server.start() == f"http://127.0.0.2:{server.port}/"
    port = server.port

    def statuses() -> list[int]:
        found = []
        for host in (f"127.0.0.2:{port}", f"localhost:{port}", f"attacker.example:{port}"):
            connection = http.client.HTTPConnection("127.0.0.2", port, timeout=10)
            try:
                connection.request("GET", "/status", headers={"Host": host})
                found.append(connection.getresponse().status)
            finally:
                connection.close()
        return found

    try:
        assert await deferToThread(statuses) == [200, 200, 421]
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_the_old_server_setting_names_still_work_and_warn():
    """PROMETHEUS_HOST/PORT, as a project written for 0.1.0 sets them, for one more release."""
    with pytest.warns(ScrapyDeprecationWarning) as caught:
        server = MonitoringServer.from_crawler(
            project_crawler(PROMETHEUS_PORT=0, PROMETHEUS_HOST="127.0.0.2")
        )
    messages = sorted(str(warning.message) for warning in caught)
    assert len(messages) == 2
    assert messages[0].startswith("The PROMETHEUS_HOST setting is deprecated: use MONITORING_HOST")
    assert messages[1].startswith("The PROMETHEUS_PORT setting is deprecated: use MONITORING_PORT")
    try:
        assert server.start() == f"http://127.0.0.2:{server.port}/"
    finally:
        await deferred_from_coro(server.stop())


IDLE_SPIDER = """
import scrapy


class Idle(scrapy.Spider):
    name = "idle"

    async def start(self):
        return
        yield
"""


def test_scrapy_s_with_the_old_port_name_places_the_server_and_warns(tmp_path):
    """``-s PROMETHEUS_PORT=...`` (command line) over the project's MONITORING_PORT default."""
    spider = tmp_path / "idle.py"
    spider.write_text(IDLE_SPIDER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "runspider", str(spider),
         "-s", f"PROMETHEUS_PORT={port}", "-s", "PROGRESS_BAR=false",
         "-s", f"DATABASE_URL=sqlite:///{tmp_path / 'idle.sqlite3'}", "-s", "LOG_LEVEL=INFO"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Monitoring server on http://127.0.0.1:{port}/ " in output
    assert re.search(
        r"ScrapyDeprecationWarning: The PROMETHEUS_PORT setting is deprecated: use MONITORING_PORT",
        output,
    )


def _port_setting(**given: tuple[object, str]) -> tuple[object, list[str]]:
    """MONITORING_PORT as the server reads it: the project's settings, then ``given``
    (name=(value, priority)); and the warnings it gave."""
    settings = Settings()
    settings.setmodule("matter_crawler.settings", priority="project")
    for name, (value, priority) in given.items():
        settings.set(name, value, priority=priority)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = renamed_setting(settings, "MONITORING_PORT")
    return value, [str(warning.message) for warning in caught]


def test_an_explicit_new_setting_name_wins_over_the_old_one():
    # the new name alone (the project's default, or given): no warning
    assert _port_setting() == ("9410-9430", [])
    assert _port_setting(MONITORING_PORT=(0, "cmdline")) == (0, [])
    # the old one over the project's default (-s, or in the project's settings.py)
    for priority in ("cmdline", "spider", "project"):
        value, messages = _port_setting(PROMETHEUS_PORT=("9500", priority))
        assert value == "9500", priority
        assert messages == [
            "The PROMETHEUS_PORT setting is deprecated: use MONITORING_PORT (it configures the "
            "whole monitoring server, not only Prometheus); using PROMETHEUS_PORT='9500'"
        ]
    # both given: the new name wins, at the same priority or a higher one; the old still warns
    for old, new in (("cmdline", "cmdline"), ("project", "project"), ("project", "cmdline")):
        value, messages = _port_setting(
            PROMETHEUS_PORT=("9500", old), MONITORING_PORT=("9600", new)
        )
        assert value == "9600", (old, new)
        assert len(messages) == 1
        assert "use MONITORING_PORT" in messages[0]
        assert "using MONITORING_PORT='9600'" in messages[0]
    # an old name given more explicitly than the new one (-s over a settings.py value) wins
    value, _ = _port_setting(
        PROMETHEUS_PORT=("9500", "cmdline"), MONITORING_PORT=("9600", "project")
    )
    assert value == "9500"


# -- metrics registry ------------------------------------------------------------------------------


def test_no_created_series_in_the_crawl_registry_and_other_registries_keep_theirs():
    metrics = CrawlMetrics("s", "j")
    metrics.request_sent("example.com", "list")
    metrics.retried("example.com", "list", "server")
    metrics.response_received("example.com", "list", 200, 0.1)
    metrics.batch_stored(products=1, sightings=0, new=1, changed=0, seconds=0.01)
    for text in (generate_latest(metrics.registry), generate_openmetrics(metrics.registry)):
        assert b"_created" not in text
        assert b"matter_crawler_requests_total{" in text
        assert b"matter_crawler_batch_write_seconds_count{" in text
    # process-global state is untouched: another registry in the same process still has them
    other = CollectorRegistry()
    Counter("someone_elses", "Another exporter in the Scrapy process.", registry=other).inc()
    assert other.get_sample_value("someone_elses_created") is not None
    assert b"someone_elses_created" in generate_latest(other)


def test_retries_and_dead_letters_start_at_zero_per_domain():
    metrics = CrawlMetrics("s", "j")
    registry = metrics.registry
    labels = {"spider": "s", "job": "j", "domain": "example.com", "stage": "detail"}
    assert registry.get_sample_value(
        "matter_crawler_retries_total", {**labels, "failure_class": "server"}
    ) is None  # fmt: skip
    metrics.request_sent("example.com", "list")
    for failure_class in ("server", "transient", "invalid"):
        for name in ("matter_crawler_retries_total", "matter_crawler_dead_letters_total"):
            assert registry.get_sample_value(name, {**labels, "failure_class": failure_class}) == 0
    metrics.retried("example.com", "detail", "server")
    metrics.dead_lettered("other.example", "detail", "offsite")
    assert registry.get_sample_value(
        "matter_crawler_retries_total", {**labels, "failure_class": "server"}
    ) == 1  # fmt: skip
    assert registry.get_sample_value(
        "matter_crawler_dead_letters_total",
        {**labels, "domain": "other.example", "failure_class": "offsite"},
    ) == 1  # fmt: skip


def test_each_crawl_has_its_own_registry():
    first, second = CrawlMetrics("s", "a"), CrawlMetrics("s", "b")
    first.batch_stored(products=5, sightings=1, new=5, changed=0, seconds=0.01)
    assert first.registry is not second.registry
    assert (
        first.registry.get_sample_value(
            "matter_crawler_items_stored_total", {"spider": "s", "job": "a", "kind": "product"}
        )
        == 5
    )
    assert (
        second.registry.get_sample_value(
            "matter_crawler_items_stored_total", {"spider": "s", "job": "b", "kind": "product"}
        )
        == 0
    )


def _exported_metric_names() -> set[str]:
    metrics = CrawlMetrics("s", "j")
    crawler = project_crawler()
    collector = CrawlStateCollector(
        crawler, ProgressAggregator.from_crawler(crawler), metrics.labels
    )
    metrics.registry.register(collector)
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    for family in [*collector.describe(), *CrosscheckCollector(metrics.labels).describe()]:
        names.add(family.name)
    for family in list(metrics.registry.collect()):
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_metric_names_follow_prometheus_conventions():
    names = _exported_metric_names()
    for name in names:
        assert re.fullmatch(r"matter_crawler_[a-z_]+", name), name
    metrics = CrawlMetrics("s", "j")
    for family in metrics.registry.collect():
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


# -- shipped files -------------------------------------------------------------------------------


def test_static_files_load_with_pkgutil_and_never_insert_markup():
    for name in (
        "static/index.html",
        "static/app.js",
        "static/bottleneck.js",
        "static/control.js",
        "static/style.css",
    ):
        assert pkgutil.get_data("matter_crawler.monitoring", name)
    for name in ("app.js", "bottleneck.js", "control.js"):
        script = pkgutil.get_data("matter_crawler.monitoring", f"static/{name}").decode()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script, f"{name} uses {sink}"
    page = pkgutil.get_data("matter_crawler.monitoring", "static/index.html").decode()
    assert "<script>" not in page  # no inline script: the CSP allows only the static scripts


def _dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def test_dashboard_loads_and_uses_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 30
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "spider", "job"} <= variables
    expressions = _dashboard_expressions()
    assert len(expressions) >= 15
    exported = _exported_metric_names() | {"up"}
    for title, expression in expressions:
        for name in re.findall(r"\b(matter_crawler_[a-z_]+|up)\b(?=\{)", expression):
            assert name in exported, f"panel {title!r} uses {name}, which is not exported"
    titles = " ".join(title.lower() for title, _ in expressions)
    for subject in (
        "per second",
        "failure class",
        "circuit",
        "concurrency",
        "progress",
        "eta",
        "held back",
    ):
        assert subject in titles
    crosscheck = [e for title, e in expressions if "cross-check" in title.lower()]
    for name in ("findings", "field_mismatches", "products", "consistent"):
        assert any(f"matter_crawler_crosscheck_{name}" in e for e in crosscheck), name
    # the check is the database's, not a crawl's: a panel of it ignores the crawl variables
    assert not [e for e in crosscheck if "$" in e]


def test_crosscheck_gauges_of_the_latest_stored_check():
    check = {
        "checked_at": datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC),
        "products": 600,
        "consistent": 581,
        "counts": {
            "counts": {"missing_on_dcl": 3, "field_mismatch": 13},
            "field_counts": {"transport": 2, "vendor_name": 1},
        },
    }
    labels = {"spider": "matter_products", "job": "j"}
    collector = CrosscheckCollector(labels)
    assert list(collector.collect()) == []  # no check stored: no samples, no zeros
    assert {family.name for family in collector.describe()} == {
        "matter_crawler_crosscheck_findings",
        "matter_crawler_crosscheck_field_mismatches",
        "matter_crawler_crosscheck_products",
        "matter_crawler_crosscheck_consistent",
        "matter_crawler_crosscheck_time_seconds",
    }
    collector.check = check
    samples = {
        (sample.name, tuple(sorted(set(sample.labels.items()) - set(labels.items())))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }
    assert samples == {
        ("matter_crawler_crosscheck_findings", (("class", "missing_on_dcl"),)): 3,
        ("matter_crawler_crosscheck_findings", (("class", "field_mismatch"),)): 13,
        ("matter_crawler_crosscheck_field_mismatches", (("field", "transport"),)): 2,
        ("matter_crawler_crosscheck_field_mismatches", (("field", "vendor_name"),)): 1,
        ("matter_crawler_crosscheck_products", ()): 600,
        ("matter_crawler_crosscheck_consistent", ()): 581,
        ("matter_crawler_crosscheck_time_seconds", ()): check["checked_at"].timestamp(),
    }


@pytest.mark.system
def test_prometheus_accepts_the_shipped_configuration(tmp_path):
    promtool = require_executable("promtool", "checks deploy/prometheus.yml")
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "matter-crawler.json").write_text("[]")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr  # the relative files: path resolves


def test_exporter_is_off_when_disabled():
    from scrapy.exceptions import NotConfigured

    assert PrometheusExporter.from_crawler(project_crawler()).registry is not None
    with pytest.raises(NotConfigured):
        PrometheusExporter.from_crawler(project_crawler(PROMETHEUS_ENABLED=False))


def test_snapshot_of_a_spider_without_progress_counts_responses():
    crawler = project_crawler()
    crawler.spider = Spider("plain")
    crawler.stats.open_spider()
    crawler.stats.set_value("response_received_count", 7)
    snapshot = ProgressAggregator.from_crawler(crawler).take_snapshot()
    assert snapshot["stages"] == {
        "pages": {
            "total": 7,
            "done": 7,
            "failed": 0,
            "remaining": 0,
            "estimated": False,
            "rate": None,
        }
    }
    assert snapshot["stage"] == "crawl"
    # no engine: nothing in flight or queued; the rates need a second reading
    assert snapshot["bottleneck"]["verdict"] == "idle"
    assert (snapshot["queues"], snapshot["cpu_percent"], snapshot["bytes_per_second"]) == (
        {},
        None,
        None,
    )
    crawler.stats.set_value("downloader/response_bytes", 10_000)
    later = ProgressAggregator.from_crawler(crawler).take_snapshot()
    assert later["bytes_per_second"] > 0
    assert later["cpu_percent"] is not None
    json.dumps(snapshot)  # JSON-safe
    time.sleep(0)
