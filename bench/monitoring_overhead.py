"""What the monitoring costs a crawl: pages/s and CPU with and without it.

Crawls of one simulated catalogue (profile ``fast``, every other component on),
alternating between:

- off: ``PROMETHEUS_ENABLED=False``, ``PROGRESS_ENABLED=False`` (no server either);
- on, task events off: the defaults with ``PROGRESS_TASK_EVENTS=False`` (metrics,
  snapshots, server; no task ids, no task events);
- on: the defaults (task events too; nobody scraping or watching);
- on, watched: the defaults plus a ``/metrics`` scrape every second and the
  JSON-lines events file (two events encoded and written for every request: its
  start and its end).

CPU seconds come from the crawl process's own rusage (``bench/common.run_measured``).
Prints medians and the ratios against "off" measured in the same run.

Crawl timings on a shared 2-core machine are noisy, so a first table measures the
per-request cost directly, in this process: the signals one product page sends
(request_reached_downloader, response_downloaded, response_received,
item_scraped), dispatched through Scrapy's signal manager, and the callback's
output through the task events' spider middleware, with the monitoring extensions
connected (task events off, on, on with a live subscriber), against the same with
nothing connected.

    python bench/monitoring_overhead.py [--products 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import ROOT, machine, markdown_table, median, run_measured

from sitesim.process import SimulatedSite


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape_until(url: str, stop: threading.Event, scrapes: list[int]) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                answer.read()
            scrapes.append(1)
        except OSError:
            pass  # not listening yet, or already closed


def per_request_cost(requests: int = 20000) -> list[list[object]]:
    """Microseconds per product page of the monitoring's signal handlers, dispatch included."""
    from scrapy import Request, Spider, signals
    from scrapy.http import HtmlResponse
    from scrapy.settings import Settings
    from scrapy.utils.test import get_crawler

    from matter_crawler.extensions.progress import ProgressMonitor
    from matter_crawler.extensions.prometheus import PrometheusExporter
    from matter_crawler.extensions.task_events import TaskEventsMiddleware
    from matter_crawler.items import ProductItem
    from matter_crawler.profiles import CrawlProfile

    project = Settings()
    project.setmodule("matter_crawler.settings")
    CrawlProfile().update_settings(project)  # the memory ceiling comes from the profile
    # the monitoring's own settings, with the project's defaults (the crawl's other parts are
    # not built here)
    defaults = {
        name: project[name]
        for name in project
        if name.startswith(("MONITORING_", "PROMETHEUS_", "PROGRESS_", "ADAPTIVE_MEMORY_"))
    }

    def run(connect: str) -> float:
        task_events = "task events off" not in connect
        crawler = get_crawler(
            Spider,
            {
                **defaults,
                "PROGRESS_BAR": False,
                "MONITORING_PORT": 0,
                "PROGRESS_TASK_EVENTS": task_events,
            },
        )
        crawler.spider = Spider("bench")
        keep = []
        output = list  # the callback's output as the engine takes it
        if connect != "nothing":
            keep += [
                PrometheusExporter.from_crawler(crawler),
                ProgressMonitor.from_crawler(crawler),
            ]
            middleware = TaskEventsMiddleware.from_crawler(crawler)

            def output(result):
                return list(middleware.process_spider_output(response, result))

        if connect.endswith("watched"):
            keep[1].hub.subscribe(lambda kind, data: None)  # as a browser on /events
        request = Request(
            "http://127.0.0.1/csa_product/x/",
            meta={"stage": "detail", "download_slot": "127.0.0.1", "download_latency": 0.05},
        )
        response = HtmlResponse(request.url, body=b"<html></html>", request=request)
        item = ProductItem(url=request.url, model="<script>", manufacturer="Acme")
        send = crawler.signals.send_catch_log
        started = time.perf_counter()
        for _ in range(requests):
            send(signals.request_reached_downloader, request=request, spider=crawler.spider)
            send(
                signals.response_downloaded,
                response=response,
                request=request,
                spider=crawler.spider,
            )
            send(
                signals.response_received, response=response, request=request, spider=crawler.spider
            )
            output([item])
            send(signals.item_scraped, item=item, response=response, spider=crawler.spider)
        return (time.perf_counter() - started) / requests * 1e6

    kinds = (
        "nothing",
        "monitoring, task events off",
        "monitoring (task events on)",
        "monitoring (task events on), watched",
    )
    costs: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(3):  # interleaved: a machine busy for a while slows every kind alike
        for kind in kinds:
            costs[kind].append(run(kind))
    base = median(costs["nothing"])
    events_off = median(costs["monitoring, task events off"])
    rows = []
    for kind in kinds:
        cost = median(costs[kind])
        label = "signals alone (nothing connected)" if kind == "nothing" else kind
        rows.append([label, cost, cost - base, cost - events_off if kind != "nothing" else ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are shown")
    options = parser.parse_args()

    print(f"Machine: {machine()}\n")
    print("Per product page, in-process (4 signals; medians of 3 x 20,000):\n")
    print(
        markdown_table(
            ["handlers", "us per page", "monitoring's share, us", "task events' share, us"],
            per_request_cost(),
        )
    )
    print()

    results: dict[str, list[tuple[float, float, int]]] = {
        "off": [],
        "on, task events off": [],
        "on": [],
        "on, watched": [],
    }
    scrape_counts: list[int] = []
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        SimulatedSite(products=options.products) as site,
    ):
        scratch = Path(scratch_dir)
        for attempt in range(options.repeat):
            for name, runs in results.items():
                database = scratch / f"{name.replace(', ', '-')}-{attempt}.sqlite3"
                port = free_port()
                command = [
                    sys.executable, "-m", "scrapy", "crawl", "matter_products",
                    "-s", f"CSA_BASE_URL={site.base_url}",
                    "-s", f"DATABASE_URL=sqlite:///{database}",
                    "-s", "CRAWL_PROFILE=fast",
                    "-s", "LOG_LEVEL=WARNING",
                    "-s", f"MONITORING_PORT={port}",
                    "-s", "PROGRESS_BAR=false",
                ]  # fmt: skip
                if name == "off":
                    command += ["-s", "PROMETHEUS_ENABLED=False", "-s", "PROGRESS_ENABLED=False"]
                if name == "on, task events off":
                    command += ["-s", "PROGRESS_TASK_EVENTS=False"]
                if name == "on, watched":
                    command += ["-s", f"PROGRESS_EVENTS_FILE={scratch / 'events.jsonl'}"]
                site.reset_stats()
                stop, scrapes = threading.Event(), []
                scraper = None
                if name == "on, watched":
                    scraper = threading.Thread(
                        target=scrape_until,
                        args=(f"http://127.0.0.1:{port}/metrics", stop, scrapes),
                    )
                    scraper.start()
                measurement = run_measured(command, cwd=ROOT)
                stop.set()
                if scraper is not None:
                    scraper.join()
                    scrape_counts.append(len(scrapes))
                if measurement.returncode != 0:
                    print(measurement.output[-3000:], file=sys.stderr)
                    return 1
                pages = site.stats()["requests_total"]
                runs.append((measurement.wall, measurement.cpu, pages))

    def rate_of(runs):
        return median([pages / wall for wall, _, pages in runs])

    def cpu_of(runs):
        return median([cpu / pages * 1000 for _, cpu, pages in runs])

    base_rate, base_cpu = rate_of(results["off"]), cpu_of(results["off"])
    quiet_rate, quiet_cpu = (
        rate_of(results["on, task events off"]),
        cpu_of(results["on, task events off"]),
    )
    rows = []
    for name, runs in results.items():
        rate, cpu_per_1000 = rate_of(runs), cpu_of(runs)
        with_events = name in ("on", "on, watched")
        rows.append(
            [
                f"monitoring {name}",
                runs[0][2],
                rate,
                f"{rate / base_rate:.2f}x",
                f"{rate / quiet_rate:.2f}x" if with_events else "",
                cpu_per_1000,
                f"{cpu_per_1000 / base_cpu:.2f}x",
                f"{cpu_per_1000 / quiet_cpu:.2f}x" if with_events else "",
            ]
        )
    print(f"Monitoring overhead: crawls of a {options.products:,}-product simulated catalogue")
    print(f"Medians of {options.repeat} run(s) each, interleaved\n")
    print(
        markdown_table(
            [
                "run",
                "pages",
                "pages/s",
                "vs. off",
                "vs. task events off",
                "CPU s / 1,000 pages",
                "vs. off",
                "vs. task events off",
            ],
            rows,
        )
    )
    if scrape_counts:
        print(f"\n'watched' runs: {median(scrape_counts):.0f} /metrics scrapes per crawl (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
