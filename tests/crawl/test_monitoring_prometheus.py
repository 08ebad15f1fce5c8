"""A real Prometheus (Debian's package) discovers two running crawls through the
service-discovery file and scrapes both; its query API returns the stored-items
counter, every PromQL expression of the Grafana dashboard returns data, and the
dashboard's template variables (``label_values(...)``, which Grafana runs through
the label-values API) list both crawls.

Prometheus runs with an unchanged copy of ``deploy/prometheus.yml`` in a temporary
directory (its ``files:`` path is relative to the configuration), on a free
loopback port, and is stopped by PID. The crawls are child processes made to last
longer than the checks by the simulated site's latency and a low concurrency, then
stopped with Ctrl-C (SIGINT), which must still remove them from the discovery file.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from matter_crawler.dcl.checks import store_check
from matter_crawler.dcl.crosscheck import CrosscheckResult, Finding
from matter_crawler.monitoring.discovery import read_groups
from matter_crawler.storage import create_database_engine
from matter_crawler.storage.schema import prepare_schema

from ..conftest import require_executable
from ..helpers import (
    PROJECT_ROOT,
    crawl_runs,
    free_port,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
    wait_until_ready,
)

CONFIG = PROJECT_ROOT / "deploy" / "prometheus.yml"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "matter-crawler.json"


def scrape_interval() -> float:
    match = re.search(r"scrape_interval:\s*(\d+)s", CONFIG.read_text())
    assert match, "deploy/prometheus.yml sets a global scrape_interval in seconds"
    return float(match.group(1))


@dataclass
class Prometheus:
    url: str
    directory: Path
    process: subprocess.Popen

    @property
    def sd_file(self) -> Path:
        return self.directory / "targets" / "matter-crawler.json"

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict]:
        return self.api("query", query=expression)["result"]

    def crawl_targets(self) -> list[dict]:
        return [
            target
            for target in self.api("targets", state="active")["activeTargets"]
            if target["scrapePool"] == "matter-crawler"
        ]


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Prometheus]:
    binary = require_executable("prometheus", "the metrics tests scrape crawls with it")
    directory = tmp_path / "prometheus"
    (directory / "targets").mkdir(parents=True)
    shutil.copy(CONFIG, directory / "prometheus.yml")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", directory, process)
    try:
        wait_until_ready(server.url, process, tmp_path / "prometheus.log", "Prometheus", 60)
        yield server
    finally:
        stop_process(process, signal.SIGTERM, wait=30)
        log.close()


def store_a_crosscheck(database_url: str, missing: int) -> None:
    """A database holding one stored cross-check (``missing`` products missing on the DCL),
    so the crawl's metrics, and the dashboard's cross-check panels, have its numbers."""
    findings = [
        Finding("missing_on_dcl", 1, pid, f"CSA24000MAT{pid:05}-00") for pid in range(missing)
    ]
    findings.append(Finding("field_mismatch", 2, 1, "CSA24000MAT99999-00", "transport", [], "x"))
    engine = create_database_engine(database_url)
    try:
        prepare_schema(engine)
        with engine.begin() as conn:
            store_check(conn, CrosscheckResult(10, 10 - missing - 1, findings), datetime.now(UTC))
    finally:
        engine.dispose()


def grafana_variable_queries() -> dict[str, tuple[str, str]]:
    """Each query variable: (label, series selector) of its ``label_values(selector, label)``."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert match, f"variable {variable['name']}: {variable['definition']}"
        selector = re.sub(r"\$\{?(spider|job)\}?", ".*", match.group(1))  # "All"
        assert "$" not in selector, f"unknown variable in {selector}"
        found[variable["name"]] = (match.group(2), selector)
    return found


def grafana_expressions() -> list[tuple[str, str]]:
    """Every panel's PromQL with the variables substituted as Grafana would ("All")."""
    dashboard = json.loads(DASHBOARD.read_text())
    rate_interval = f"{int(4 * scrape_interval())}s"  # Grafana's floor: 4 scrape intervals
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                expression = target["expr"].replace("$__rate_interval", rate_interval)
                expression = re.sub(r"\$\{?(spider|job)\}?", ".*", expression)
                assert "$" not in expression, f"unknown variable in {expression}"
                found.append((inner["title"], expression))
    return found


@pytest.mark.slow
@pytest.mark.system
def test_prometheus_discovers_and_scrapes_two_crawls_and_the_dashboard_has_data(
    prometheus, simulated_site, tmp_path
):
    site = simulated_site(products=800, seed=5, latency_ms=100, error_rate=0.03)
    first_port = free_port()
    settings = {
        "PROMETHEUS_SD_FILE": str(prometheus.sd_file),
        # a range: the two crawls take the first two free ports of it
        "MONITORING_PORT": f"{first_port}-{first_port + 20}",
        # at most 4 at a time (this caps the adaptive controller too): the crawls outlast
        # the checks; the site's 5xx answers give the controller a ceiling to learn
        "CONCURRENT_REQUESTS": 4,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 4,
        "PROGRESS_BAR": False,
    }
    jobs = ("prom-a", "prom-b")
    crawls = {}
    try:
        for number, job in enumerate(jobs, start=1):
            store_a_crosscheck(sqlite_url(tmp_path / f"{job}.sqlite3"), missing=number)
            crawls[job] = start_crawl(
                site.base_url,
                sqlite_url(tmp_path / f"{job}.sqlite3"),
                settings=settings,
                args={"_job": job},
                log_path=tmp_path / f"{job}.log",
            )

        def both_scraped() -> bool:
            for process in crawls.values():
                assert process.poll() is None, "a crawl ended before Prometheus scraped it"
            up = {
                target["labels"].get("job"): target["health"]
                for target in prometheus.crawl_targets()
            }
            return up == {job: "up" for job in jobs}

        wait_for(both_scraped, timeout=60, interval=0.5, message="Prometheus to scrape both")
        ports = {
            target["labels"]["instance"].rsplit(":", 1)[1] for target in prometheus.crawl_targets()
        }
        assert len(ports) == 2
        assert ports <= {str(p) for p in range(first_port, first_port + 21)}

        def stored_items() -> dict[str, float]:
            result = prometheus.query('matter_crawler_items_stored_total{kind="product"}')
            return {row["metric"]["job"]: float(row["value"][1]) for row in result}

        wait_for(
            lambda: all(stored_items().get(job, 0) > 0 for job in jobs),
            timeout=60,
            interval=0.5,
            message="the stored-items counter of both crawls in Prometheus",
        )

        # the template variables, as Grafana asks for them: every crawl is selectable
        variables = grafana_variable_queries()
        assert set(variables) == {"spider", "job"}
        for name, expected in (("spider", {"matter_products"}), ("job", set(jobs))):
            label, selector = variables[name]
            assert set(prometheus.api(f"label/{label}/values", **{"match[]": selector})) == (
                expected
            ), (name, selector)

        # the newest check's numbers (prom-b's database), whichever crawl exports them
        findings = prometheus.query(
            next(e for t, e in grafana_expressions() if t.endswith("findings per class"))
        )
        by_class = {row["metric"]["class"]: float(row["value"][1]) for row in findings}
        assert by_class == {
            "missing_on_dcl": 2,
            "absent_from_catalogue": 0,
            "revoked_but_listed": 0,
            "field_mismatch": 1,
        }

        missing = []
        for title, expression in grafana_expressions():
            try:
                wait_for(lambda e=expression: prometheus.query(e), timeout=30, interval=1)
            except AssertionError:
                missing.append(f"{title}: {expression}")
        assert not missing, "dashboard expressions without data:\n" + "\n".join(missing)
        assert all(process.poll() is None for process in crawls.values()), (
            "the crawls must still run while the dashboard is checked"
        )

        # Ctrl-C: both shut down cleanly, and leave the discovery file
        for process in crawls.values():
            process.send_signal(signal.SIGINT)
        for job, process in crawls.items():
            assert process.wait(timeout=60) == 0, (tmp_path / f"{job}.log").read_text()[-3000:]
    finally:
        for process in crawls.values():
            stop_process(process)

    for job in jobs:
        log = (tmp_path / f"{job}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "Monitoring server on http://127.0.0.1:" in log
        assert " stopped" in log
        (run,) = crawl_runs(sqlite_url(tmp_path / f"{job}.sqlite3"))
        assert run["status"] == "stopped"
        assert 0 < run["products_new"] < 800
        # the counter Prometheus stored for this job: up to the crawl's final count
        (row,) = prometheus.query(
            f'max_over_time(matter_crawler_items_stored_total{{job="{job}",kind="product"}}[10m])'
        )
        assert 0 < float(row["value"][1]) <= run["products_new"]
    # closed crawls leave the discovery file, and Prometheus drops them
    assert read_groups(prometheus.sd_file) == []
    wait_for(lambda: prometheus.crawl_targets() == [], timeout=30, message="targets dropped")
