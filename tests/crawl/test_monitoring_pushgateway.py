"""A short crawl pushes its final metrics to a real Pushgateway (Debian's
prometheus-pushgateway, started on a free loopback port and stopped by PID); the
pushed values, parsed with prometheus-client's parser, equal the crawl's final
stats as its run record keeps them. The same crawl's log (not a terminal) has the
progress lines and no progress bar."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import require_executable
from ..helpers import crawl_runs, free_port, run_crawl, stop_process, wait_until_ready


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    binary = require_executable("prometheus-pushgateway", "the push-at-close test needs it")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "pushgateway.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(url, process, tmp_path / "pushgateway.log", "the Pushgateway", 30)
        yield url
    finally:
        stop_process(process, signal.SIGTERM, wait=30)
        log.close()


@pytest.mark.system
def test_final_metrics_are_pushed_at_close(pushgateway, simulated_site, database_url):
    site = simulated_site(products=120, seed=11, error_rate=0.05)
    result = run_crawl(
        site.base_url,
        database_url,
        settings={
            "PROMETHEUS_PUSHGATEWAY_URL": pushgateway,
            "MONITORING_PORT": 0,
            "PROGRESS_LOG_INTERVAL": 0.5,
        },
        args={"_job": "push-test"},
    ).check()
    assert f"Pushed the final metrics to the Pushgateway {pushgateway}" in result.output
    # not a terminal: progress lines in the log, never the bar's redraws
    assert "Progress: list " in result.output
    assert "items/s" in result.output
    assert "\x1b[K" not in result.output
    assert "\r" not in result.output

    (run,) = crawl_runs(database_url)
    stats = run["stats"]
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") == "push-test":
                values[sample.name, frozenset(sample.labels.items())] = sample.value

    def total(name: str, **labels: str) -> float:
        wanted = {"job": "push-test", "spider": "matter_products", **labels}.items()
        return sum(v for (n, key), v in values.items() if n == name and wanted <= key)

    assert total("push_time_seconds") > 0  # the Pushgateway's own mark of our group
    assert not [name for name, _ in values if name.endswith("_created")]  # none pushed
    assert total("matter_crawler_retries_total", domain="127.0.0.1") == stats["retry/count"]
    assert total("matter_crawler_items_stored_total", kind="product") == run["products_new"] == 120
    assert total("matter_crawler_requests_total") == stats["downloader/request_count"]
    assert (
        total("matter_crawler_responses_total", status="200")
        == stats["downloader/response_status_count/200"]
    )
    assert total("matter_crawler_retries_total") == stats["retry/count"] > 0
    assert total("matter_crawler_progress_ratio", stage="total") == 1.0
    assert total("matter_crawler_eta_seconds") == 0.0
