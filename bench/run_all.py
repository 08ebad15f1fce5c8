"""Every benchmark of issue 10, side by side in one run: ``make bench``.

Three sections, each printed as a markdown table with the machine described
and the targets marked MET or MISSED; the same text goes to
``bench/results/benchmarks.md`` and the raw figures of every run to
``bench/results/benchmarks.json``. See docs/benchmarks.md for what each row
measures and why the comparison is fair.

1. Crawl: one simulated catalogue (default 6,000 products: 500 listing pages
   and 6,000 product pages) crawled, politeness off, at the same concurrency
   (default 16), by
   - matter-crawler, its default configuration with every component on, profile
     ``fast`` capped at the common concurrency, into a fresh SQLite file;
   - the same parsing in a bare Scrapy spider with stock components
     (``bench/bare_scrapy_spider.py``), writing JSON lines;
   - Crawlee for Python's ParselCrawler with the same parse functions
     (``bench/crawlee_crawler.py``), writing its dataset;
   - the limit: a plain aiohttp client fetching the same URLs
     (``bench/fetch_limit.py``), no parsing, no storing.
   Runs are interleaved (the order rotates each round) and medians of
   ``--repeat`` rounds are shown. Every crawler's output is compared with the
   site's ground truth, field by field; one that differs is FAILED.
2. Storage: ``--storage-items`` products through the project's
   BatchStorePipeline at the project's ``STORE_BATCH_SIZE`` and at 1 (one
   commit per item), into SQLite files and, when Debian's postgresql package is
   installed, into PostgreSQL databases on a local server started for the run
   (``bench/store_throughput.py``).
3. Scale: a ``--scale-products`` catalogue (default 100,000) crawled by
   matter-crawler with JOBDIR: peak memory, and pages/s in the second half of
   the crawl's pages against the first, timed from the site's request log.

    .venv/bin/python bench/run_all.py [--repeat 3] [--products 6000] [--concurrency 16]
        [--crawlers matter,bare,crawlee,limit] [--storage-items 100000]
        [--scale-products 100000] [--skip-crawl] [--skip-storage] [--skip-scale]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    Measurement,
    item_records,
    last_json_line,
    load_average,
    machine,
    markdown_table,
    median,
    read_dataset,
    read_json_lines,
    run_measured,
)
from sqlalchemy import create_engine

from matter_crawler import settings as project_settings
from matter_crawler.sitesim.process import SimulatedSite
from matter_crawler.verify import diff_records, stored_records
from tests.postgresql import PostgreSQLServer, PostgreSQLUnavailable

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CARDS_PER_PAGE = 12  # the catalogue's listing pages hold 12 cards (docs/sitesim.md)

CRAWLERS = ("matter", "bare", "crawlee", "limit")
NAMES = {
    "matter": "matter-crawler, every component on",
    "bare": "bare Scrapy spider, stock components",
    "crawlee": "Crawlee for Python ParselCrawler",
    "limit": "limit: plain aiohttp fetch, same URLs",
}

# -- targets (issue 10) ----------------------------------------------------------------
TARGET_VS_BARE = 1.0
TARGET_VS_CRAWLEE = 2.0
TARGET_BATCH_ITEMS_PER_S = 30_000
TARGET_BATCH_VS_SINGLE = 20.0
TARGET_SCALE_PEAK_MB = 300  # Scrapy's MB (MEMUSAGE_LIMIT_MB): 2**20 bytes
TARGET_SECOND_HALF = 0.90


@dataclass
class Run:
    """One measured run of one crawler: its cost, what the site served, what was wrong."""

    crawler: str
    round: int
    wall: float
    cpu: float
    user: float
    system: float
    peak_mib: float
    requests_served: int
    problems: list[str] = field(default_factory=list)
    #: what the crawler said about itself (matter-crawler: its adaptive controller's stats)
    details: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, crawler: str, round_: int, measurement: Measurement, served: int) -> Run:
        return cls(
            crawler=crawler,
            round=round_,
            wall=measurement.wall,
            cpu=measurement.cpu,
            user=measurement.user,
            system=measurement.system,
            peak_mib=measurement.peak_mib,
            requests_served=served,
        )


def status_problem(measurement: Measurement) -> list[str]:
    if measurement.returncode == 0:
        return []
    tail = " | ".join(measurement.output.strip().splitlines()[-3:])
    return [f"exit status {measurement.returncode}: {tail[-300:]}"]


def mark(met: bool) -> str:
    return "MET" if met else "MISSED"


def ratio(value: float | None, baseline: float | None) -> str:
    if value is None or not baseline:
        return "-"
    return f"{value / baseline:.2f}x"


# -- section 1: the crawl ------------------------------------------------------------------


class CrawlBench:
    """The four crawlers against one simulated site; every output checked against its truth."""

    def __init__(
        self, site: SimulatedSite, scratch: Path, concurrency: int, crawlee_crawler: str = "parsel"
    ) -> None:
        self.site = site
        self.scratch = scratch
        self.concurrency = concurrency
        self.crawlee_crawler = crawlee_crawler
        self.truth = site.truth()
        listing_pages = math.ceil(len(self.truth) / CARDS_PER_PAGE)
        self.urls = [site.listing_url(page) for page in range(1, listing_pages + 1)]
        self.urls += [site.url(record["url"]) for record in self.truth]
        self.urls_file = scratch / "urls.txt"
        self.urls_file.write_text("\n".join(self.urls) + "\n", encoding="utf-8")
        self.listing_pages = listing_pages

    @property
    def pages(self) -> int:
        """The catalogue's pages: what every crawler has to fetch (the same for all)."""
        return len(self.urls)

    def measure(self, crawler: str, round_: int) -> Run:
        run: Callable[[int], Run] = getattr(self, f"run_{crawler}")
        return run(round_)

    def _measured(
        self, crawler: str, round_: int, command: list[str], cwd: Path, env: dict[str, str]
    ) -> tuple[Run, Measurement]:
        self.site.reset_stats()
        measurement = run_measured(command, cwd=cwd, env=env)
        served = self.site.stats()["requests_total"]
        run = Run.of(crawler, round_, measurement, served)
        run.problems += status_problem(measurement)
        return run, measurement

    def _check(self, run: Run, records: list[dict[str, Any]]) -> Run:
        differences = diff_records(self.truth, records, limit=0)
        if differences:
            run.problems.append(
                f"{len(differences)} differences from the ground truth, e.g. {differences[0]}"
            )
        return run

    def run_matter(self, round_: int) -> Run:
        database = self.scratch / f"matter-{round_}.sqlite3"
        command = [sys.executable, "-m", "scrapy", *matter_arguments(self.site, database, self)]
        run, measurement = self._measured("matter", round_, command, ROOT, dict(os.environ))
        run.details = adaptive_stats(measurement.output)
        if not run.problems:
            engine = create_engine(f"sqlite:///{database}")
            try:
                self._check(run, stored_records(engine))
            finally:
                engine.dispose()
        return run

    def run_bare(self, round_: int) -> Run:
        # a fresh empty directory: no scrapy.cfg above it, nothing on sys.path to shadow
        workdir = Path(tempfile.mkdtemp(prefix=f"bare-{round_}-", dir=self.scratch))
        output = workdir / "products.jsonl"
        command = [sys.executable, "-m", "scrapy", *bare_arguments(self.site, output, self)]
        run, _ = self._measured("bare", round_, command, workdir, stock_scrapy_env())
        if not run.problems:
            self._check(run, item_records(read_json_lines(output)))
        return run

    def run_crawlee(self, round_: int) -> Run:
        workdir = Path(tempfile.mkdtemp(prefix=f"crawlee-{round_}-", dir=self.scratch))
        storage = workdir / "storage"
        command = [
            sys.executable, str(BENCH / "crawlee_crawler.py"),
            "--base-url", self.site.base_url,
            "--concurrency", str(self.concurrency),
            "--storage-dir", str(storage),
            "--crawler", self.crawlee_crawler,
        ]  # fmt: skip
        run, _ = self._measured("crawlee", round_, command, workdir, dict(os.environ))
        if not run.problems:
            self._check(run, item_records(read_dataset(storage)))
        return run

    def run_limit(self, round_: int) -> Run:
        command = [
            sys.executable, str(BENCH / "fetch_limit.py"), str(self.urls_file),
            "--concurrency", str(self.concurrency),
        ]  # fmt: skip
        run, measurement = self._measured("limit", round_, command, self.scratch, dict(os.environ))
        if not run.problems:
            # its "output" is the pages themselves: every one fetched with a 200
            found = re.search(r"fetched (\d+) ok, (\d+) failed", measurement.output)
            ok, failed = (int(found.group(1)), int(found.group(2))) if found else (0, -1)
            if ok != self.pages or failed:
                run.problems.append(f"fetched {ok} of {self.pages} pages ok, {failed} failed")
        return run


_ADAPTIVE_STAT = re.compile(r"'adaptive/[^/']+/(\w+)': ([\d.]+)")


def adaptive_stats(log: str) -> dict[str, float]:
    """The adaptive controller's stats from a crawl's closing stats dump (one site: one slot)."""
    return {name: float(value) for name, value in _ADAPTIVE_STAT.findall(log)}


def _stat(details: dict[str, float], name: str) -> str:
    return f"{details[name]:g}" if name in details else "none"


def matter_arguments(site: SimulatedSite, database: Path, options: Any) -> list[str]:
    """``scrapy`` arguments of the matter-crawler row (run from the project directory).

    Politeness off, N at once, nothing switched off: profile ``fast`` has no delay
    floor, and the adaptive controller's ceiling is ``min(ADAPTIVE_MAX_CONCURRENCY,
    CONCURRENT_REQUESTS)``, both set to N. The controller starts the domain at
    ``ADAPTIVE_MIN_CONCURRENCY`` (1) and climbs to N in a few rounds: that ramp counts
    against matter-crawler, as it would in a user's crawl.
    """
    concurrency = options.concurrency
    return [
        "crawl", "matter_products",
        "-s", f"CSA_BASE_URL={site.base_url}",
        "-s", f"DATABASE_URL=sqlite:///{database}",
        "-s", "CRAWL_PROFILE=fast",
        "-s", f"CONCURRENT_REQUESTS={concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        "-s", f"ADAPTIVE_MAX_CONCURRENCY={concurrency}",
    ]  # fmt: skip


def bare_arguments(site: SimulatedSite, output: Path, options: Any) -> list[str]:
    """``scrapy`` arguments of the bare Scrapy row (run where no scrapy.cfg is found).

    Stock settings except N at once (the stock per-domain limit is 8), INFO logging
    (the stock DEBUG logs every page and item; matter-crawler runs at INFO) and the feed.
    """
    concurrency = options.concurrency
    return [
        "runspider", str(BENCH / "bare_scrapy_spider.py"),
        "-a", f"base_url={site.base_url}",
        "-s", f"CONCURRENT_REQUESTS={concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        "-s", "LOG_LEVEL=INFO",
        "-O", f"{output}:jsonlines",
    ]  # fmt: skip


def stock_scrapy_env() -> dict[str, str]:
    """The environment without anything pointing Scrapy at a project's settings."""
    env = dict(os.environ)
    for name in ("SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "SCRAPY_PYTHON_SHELL"):
        env.pop(name, None)
    return env


def crawl_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    crawlers = [name for name in CRAWLERS if name in options.crawlers]
    with SimulatedSite(products=options.products, seed=options.seed) as site:
        bench = CrawlBench(site, scratch, options.concurrency, options.crawlee_crawler)
        runs: dict[str, list[Run]] = {name: [] for name in crawlers}
        load_before = load_average()
        for round_ in range(options.repeat):
            # rotate the order each round: no crawler always runs first, or after the same one
            shift = round_ % len(crawlers)
            for name in crawlers[shift:] + crawlers[:shift]:
                run = bench.measure(name, round_)
                runs[name].append(run)
                verdict = "FAILED: " + run.problems[0] if run.problems else "ok"
                print(
                    f"  round {round_ + 1}/{options.repeat} {name}: {run.wall:.2f} s wall, "
                    f"{run.cpu:.2f} s CPU, {run.peak_mib:.0f} MiB, {verdict}",
                    file=sys.stderr,
                    flush=True,
                )
        load_after = load_average()

    def figures(name: str) -> dict[str, float] | None:
        """Medians over the rounds (peak: the highest); None when any run failed."""
        if name not in runs or any(run.problems for run in runs[name]):
            return None
        done = runs[name]
        return {
            "pages_per_s": median([bench.pages / run.wall for run in done]),
            "wall": median([run.wall for run in done]),
            "cpu_per_1000": median([run.cpu / bench.pages * 1000 for run in done]),
            "system_per_1000": median([run.system / bench.pages * 1000 for run in done]),
            "peak_mib": max(run.peak_mib for run in done),
            "served": median([run.requests_served for run in done]),
        }

    names = dict(NAMES)
    if options.crawlee_crawler == "http":
        names["crawlee"] = "Crawlee for Python HttpCrawler"
    results = {name: figures(name) for name in crawlers}
    bare_rate = (results.get("bare") or {}).get("pages_per_s")
    limit_rate = (results.get("limit") or {}).get("pages_per_s")
    bare_cpu = (results.get("bare") or {}).get("cpu_per_1000")
    rows = []
    for name in crawlers:
        result = results[name]
        if result is None:
            failed = [run for run in runs[name] if run.problems]
            rows.append([names[name], f"FAILED ({len(failed)}/{len(runs[name])} runs)"] + ["-"] * 9)
            continue
        rows.append(
            [
                names[name],
                "ok",
                f"{result['served']:,.0f}",
                result["wall"],
                result["pages_per_s"],
                result["cpu_per_1000"],
                result["system_per_1000"],
                result["peak_mib"],
                ratio(result["pages_per_s"], bare_rate),
                ratio(result["pages_per_s"], limit_rate),
                ratio(result["cpu_per_1000"], bare_cpu),
            ]
        )
    report.section(
        f"Crawl: {options.products:,}-product simulated catalogue "
        f"({bench.listing_pages:,} listing + {len(bench.truth):,} product pages = "
        f"{bench.pages:,} pages), {options.concurrency} concurrent, politeness off",
        f"Medians of {options.repeat} interleaved round(s); peak memory is the highest. "
        f"{load_before.capitalize()} before, {load_after} after.",
        markdown_table(
            [
                "crawler",
                "output vs. truth",
                "requests served",
                "wall s",
                "pages/s",
                "CPU s / 1,000 pages",
                "of which system",
                "peak MiB",
                "vs. bare Scrapy",
                "vs. limit",
                "CPU vs. bare Scrapy",
            ],
            rows,
        ),
    )
    problems = [
        f"- {names[run.crawler]}, round {run.round + 1}: {problem}"
        for name in crawlers
        for run in runs[name]
        for problem in run.problems
    ]
    if problems:
        report.text("Failed runs:\n\n" + "\n".join(problems))
    controller = [run.details for run in runs.get("matter", []) if run.details]
    if controller:
        # a slower matter-crawler row may be its controller backing off a loaded machine
        summary = ", ".join(
            f"{name} {'/'.join(_stat(details, name) for details in controller)}"
            for name in ("concurrency", "ceiling", "increases", "decreases", "pauses")
        )
        report.text(f"matter-crawler's adaptive controller at the end of each round: {summary}.")

    matter = results.get("matter")
    crawlee = results.get("crawlee")
    targets = []
    if "matter" in crawlers and "bare" in crawlers:
        value = matter["pages_per_s"] / bare_rate if matter and bare_rate else None
        targets.append(
            target_row(
                "matter-crawler pages/s vs. bare Scrapy", f">= {TARGET_VS_BARE:.1f}x",
                value, TARGET_VS_BARE, "x",
            )
        )  # fmt: skip
    if "matter" in crawlers and "crawlee" in crawlers:
        value = matter["pages_per_s"] / crawlee["pages_per_s"] if matter and crawlee else None
        targets.append(
            target_row(
                "matter-crawler pages/s vs. Crawlee", f">= {TARGET_VS_CRAWLEE:.1f}x",
                value, TARGET_VS_CRAWLEE, "x",
            )
        )  # fmt: skip
    if targets:
        report.table(["target", "wanted", "measured", ""], targets)
    report.raw["crawl"] = {
        "products": options.products,
        "pages": bench.pages,
        "concurrency": options.concurrency,
        "repeat": options.repeat,
        "load_before": load_before,
        "load_after": load_after,
        "runs": [asdict(run) for name in crawlers for run in runs[name]],
        "medians": results,
    }


def target_row(
    name: str, wanted: str, value: float | None, threshold: float, unit: str, *, at_most=False
) -> list[str]:
    if value is None:
        return [name, wanted, "not measured (a run failed)", "MISSED"]
    met = value <= threshold if at_most else value >= threshold
    if unit == "%":
        shown = f"{value:.0%}"
    elif unit == "x":
        shown = f"{value:.2f}x"
    else:
        shown = f"{value:,.0f} {unit}"
    return [name, wanted, shown, mark(met)]


# -- section 2: storage ----------------------------------------------------------------------


def storage_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    truth_file = scratch / "storage-truth.jsonl"
    dump = run_measured(
        [
            sys.executable, "-m", "matter_crawler.sitesim",
            "--products", str(options.storage_items), "--seed", str(options.seed),
            "--dump-truth", str(truth_file),
        ],
        cwd=ROOT,
    )  # fmt: skip
    if dump.returncode != 0:
        raise SystemExit(f"could not write the storage benchmark's records:\n{dump.output}")
    batch_size = project_settings.STORE_BATCH_SIZE
    sizes = {"batch": batch_size, "single": 1}
    with storage_backends(scratch) as backends:
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            backend: {name: [] for name in sizes} for backend in backends
        }
        load_before = load_average()
        for round_ in range(options.repeat):
            for backend, (fresh_database, environment) in backends.items():
                for name, size in sizes.items():
                    database, drop = fresh_database(f"store_{name}_{round_}")
                    measurement = run_measured(
                        [
                            sys.executable, str(BENCH / "store_throughput.py"), str(truth_file),
                            database, "--batch-size", str(size),
                        ],
                        cwd=ROOT,
                        env={**os.environ, **environment},
                    )  # fmt: skip
                    result: dict[str, Any] = {"problems": status_problem(measurement)}
                    if not result["problems"]:
                        result.update(last_json_line(measurement.output))
                        if result["differences"]:
                            result["problems"].append(
                                f"{result['differences']} differences from the records stored, "
                                f"e.g. {result['first_differences'][0]}"
                            )
                    result["peak_mib"] = measurement.peak_mib
                    results[backend][name].append(result)
                    drop()
                    shown = f"{result.get('items_per_second', 0):,.0f} items/s"
                    print(
                        f"  round {round_ + 1}/{options.repeat} store {backend} {name}: {shown}"
                        + (f", FAILED: {result['problems'][0]}" if result["problems"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        load_after = load_average()
        missing = backends.missing

    def rate(backend: str, name: str) -> float | None:
        if any(result["problems"] for result in results[backend][name]):
            return None
        return median([result["items_per_second"] for result in results[backend][name]])

    rows = []
    pipelines = (
        ("batch", f"BatchStorePipeline, STORE_BATCH_SIZE={batch_size} (the default)"),
        ("single", "the same pipeline, STORE_BATCH_SIZE=1 (one commit per item)"),
    )
    for backend, (name, what) in ((b, p) for b in results for p in pipelines):
        value = rate(backend, name)
        label = f"{STORAGE_BACKENDS[backend]}: {what}"
        if value is None:
            rows.append([label, "FAILED", "-", "-", "-"])
            continue
        done = results[backend][name]
        rows.append(
            [
                label,
                "ok",
                value,
                median([r["cpu_seconds"] / r["items"] * 1e6 for r in done]),
                ratio(value, rate(backend, "single")),
            ]
        )
    report.section(
        f"Storage: {options.storage_items:,} products into a fresh database",
        f"Medians of {options.repeat} round(s). {load_before.capitalize()} before, "
        f"{load_after} after. Every run's table is compared with the records afterwards. "
        "SQLite: a new file (WAL, synchronous=NORMAL). PostgreSQL: a new database on a "
        "local server started for the benchmark (tests/postgresql.py) with "
        "synchronous_commit=off, the same durability as SQLite's NORMAL in WAL mode; "
        "CPU is the benchmark process's only, not the server's."
        + (f" {missing}" if missing else ""),
        markdown_table(
            ["pipeline", "stored vs. records", "items/s", "CPU µs / item", "vs. one per item"],
            rows,
        ),
    )
    batch_rate, single_rate = rate("sqlite", "batch"), rate("sqlite", "single")
    report.table(
        ["target", "wanted", "measured", ""],
        [
            target_row(
                "batch storage items/s (SQLite)", f">= {TARGET_BATCH_ITEMS_PER_S:,}",
                batch_rate, TARGET_BATCH_ITEMS_PER_S, "items/s",
            ),
            target_row(
                "batch vs. one commit per item (SQLite)", f">= {TARGET_BATCH_VS_SINGLE:.0f}x",
                batch_rate / single_rate if batch_rate and single_rate else None,
                TARGET_BATCH_VS_SINGLE, "x",
            ),
        ],
    )  # fmt: skip
    report.raw["storage"] = {"items": options.storage_items, "batch_size": batch_size, **results}


STORAGE_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: PostgreSQL as durable as SQLite in WAL mode with synchronous=NORMAL: commits are not
#: flushed one by one, a crash loses the last ones and corrupts nothing.
POSTGRESQL_BENCH_SETTINGS = {"synchronous_commit": "off"}


class StorageBackends(dict):
    """backend -> (fresh_database(name) -> (database argument, drop), client environment)."""

    missing = ""


@contextmanager
def storage_backends(scratch: Path) -> Iterator[StorageBackends]:
    """SQLite files in ``scratch``, and a PostgreSQL server when the package is installed."""
    backends = StorageBackends()

    def sqlite_file(name: str) -> tuple[str, Callable[[], None]]:
        path = scratch / f"{name}.sqlite3"
        return str(path), lambda: path.unlink(missing_ok=True)

    backends["sqlite"] = (sqlite_file, {})
    try:
        server = PostgreSQLServer(POSTGRESQL_BENCH_SETTINGS)
    except PostgreSQLUnavailable as why:
        backends.missing = f"PostgreSQL not measured: {why}."
        yield backends
        return
    with server:

        def postgresql_database(name: str) -> tuple[str, Callable[[], None]]:
            return server.create_database(name), lambda: server.drop_database(name)

        backends["postgresql"] = (postgresql_database, server.environment())
        yield backends


# -- section 3: scale --------------------------------------------------------------------------


def half_rates(arrivals: list[float]) -> tuple[float, float]:
    """Pages/s over the first half of the pages and over the second half.

    ``arrivals``: epoch seconds at which the site received each page request.
    The first half runs from the first request to the one in the middle, the
    second from there to the last; process start-up and shutdown are outside both.
    """
    times = sorted(arrivals)
    middle = len(times) // 2
    first = middle / max(times[middle] - times[0], 1e-9)
    second = (len(times) - 1 - middle) / max(times[-1] - times[middle], 1e-9)
    return first, second


def scale_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    products = options.scale_products
    pages = products + math.ceil(products / CARDS_PER_PAGE)
    # the halves are timed from the site's request log: it must hold every page request
    log_size = max(200_000, 2 * pages)
    with SimulatedSite(products=products, seed=options.seed, request_log_size=log_size) as site:
        truth = site.truth()
        jobdir = scratch / "scale-job"
        database = scratch / "scale.sqlite3"
        command = [
            sys.executable, "-m", "scrapy",
            *matter_arguments(site, database, options), "-s", f"JOBDIR={jobdir}",
        ]  # fmt: skip
        load_before = load_average()
        site.reset_stats()
        measurement = run_measured(command, cwd=ROOT, timeout=options.scale_timeout)
        load_after = load_average()
        stats = site.stats()
        log = [entry for entry in site.requests_log() if entry["kind"] in ("list", "detail")]
        problems = status_problem(measurement)
        if not problems:
            engine = create_engine(f"sqlite:///{database}")
            try:
                differences = diff_records(truth, stored_records(engine), limit=0)
            finally:
                engine.dispose()
            if differences:
                problems.append(
                    f"{len(differences)} differences from the ground truth, e.g. {differences[0]}"
                )
        page_requests = stats["by_kind"].get("list", 0) + stats["by_kind"].get("detail", 0)
        if len(log) < page_requests:
            problems.append(
                f"the site's request log kept {len(log):,} of {page_requests:,} page requests: "
                "the halves cannot be timed"
            )
    print(
        f"  scale: {measurement.wall:.0f} s wall, {measurement.peak_mib:.0f} MiB, "
        + (f"FAILED: {problems[0]}" if problems else "ok"),
        file=sys.stderr,
        flush=True,
    )
    first = second = None
    if not problems:
        first, second = half_rates([entry["t"] for entry in log])
    rows = [
        [
            "matter-crawler with JOBDIR, every component on",
            "FAILED" if problems else "ok",
            f"{stats['requests_total']:,}",
            measurement.wall,
            pages / measurement.wall,
            measurement.cpu / pages * 1000,
            measurement.peak_mib,
            first if first is not None else "-",
            second if second is not None else "-",
            f"{second / first:.0%}" if first and second else "-",
        ]
    ]
    report.section(
        f"Scale: {products:,}-product simulated catalogue ({pages:,} pages), "
        f"{options.concurrency} concurrent, JOBDIR",
        f"One run. {load_before.capitalize()} before, {load_after} after. The halves are "
        "timed from the site's request log: the first half of the page requests the site "
        "received against the second.",
        markdown_table(
            [
                "crawler",
                "output vs. truth",
                "requests served",
                "wall s",
                "pages/s",
                "CPU s / 1,000 pages",
                "peak MiB",
                "first half pages/s",
                "second half pages/s",
                "second vs. first",
            ],
            rows,
        ),
    )
    if problems:
        report.text("Failed: " + "; ".join(problems))
    peak = None if problems else measurement.peak_mib
    report.table(
        ["target", "wanted", "measured", ""],
        [
            target_row(
                f"peak memory, {products:,} products", f"<= {TARGET_SCALE_PEAK_MB} MB",
                peak, TARGET_SCALE_PEAK_MB, "MiB", at_most=True,
            ),
            target_row(
                "second half vs. first half pages/s", f">= {TARGET_SECOND_HALF:.0%}",
                second / first if first and second else None, TARGET_SECOND_HALF, "%",
            ),
        ],
    )  # fmt: skip
    report.raw["scale"] = {
        "products": products,
        "pages": pages,
        "wall": measurement.wall,
        "cpu": measurement.cpu,
        "peak_mib": measurement.peak_mib,
        "requests_served": stats["requests_total"],
        "first_half_pages_per_s": first,
        "second_half_pages_per_s": second,
        "problems": problems,
        "load_before": load_before,
        "load_after": load_after,
    }


# -- the report --------------------------------------------------------------------------------


class Report:
    """Markdown printed as it is made, and kept for bench/results/benchmarks.md."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.raw: dict[str, Any] = {}

    def text(self, text: str) -> None:
        self.parts.append(text)
        print(text + "\n", flush=True)

    def section(self, title: str, note: str, table: str) -> None:
        self.text(f"## {title}\n\n{note}\n\n{table}")

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.text(markdown_table(headers, rows))

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "benchmarks.md").write_text("\n\n".join(self.parts) + "\n", encoding="utf-8")
        (folder / "benchmarks.json").write_text(
            json.dumps(self.raw, indent=1, default=str) + "\n", encoding="utf-8"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=6000, help="crawl section catalogue")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once, for all")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--seed", type=int, default=1, help="the simulated catalogue's seed")
    parser.add_argument(
        "--crawlers",
        default=",".join(CRAWLERS),
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"which crawl-section rows to run (default: {','.join(CRAWLERS)})",
    )
    parser.add_argument(
        "--crawlee-crawler",
        choices=("parsel", "http"),
        default="parsel",
        help="Crawlee's ParselCrawler (default) or its HttpCrawler (no Selector built per page)",
    )
    parser.add_argument("--storage-items", type=int, default=100_000)
    parser.add_argument("--scale-products", type=int, default=100_000)
    parser.add_argument("--scale-timeout", type=float, default=3 * 3600, help="seconds")
    parser.add_argument("--skip-crawl", action="store_true")
    parser.add_argument("--skip-storage", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the report")
    options = parser.parse_args()
    unknown = set(options.crawlers) - set(CRAWLERS)
    if unknown:
        parser.error(f"unknown crawlers {', '.join(sorted(unknown))}; known: {', '.join(CRAWLERS)}")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")

    if "crawlee" in options.crawlers and not options.skip_crawl and not find_spec("crawlee"):
        parser.error(
            "Crawlee for Python is not installed: `make bench` installs the bench extra "
            "(or: .venv/bin/pip install -e '.[bench]'), or leave it out with --crawlers"
        )

    report = Report()
    started = datetime.now(UTC)
    interpreter = Path(sys.executable)
    if interpreter.is_relative_to(ROOT):
        interpreter = interpreter.relative_to(ROOT)
    command = " ".join([str(interpreter), *sys.argv])
    report.text(
        f"# matter-crawler benchmarks\n\n{started:%Y-%m-%d %H:%M} UTC, `{command}`\n\n"
        f"Machine: {machine()}"
    )
    scratch = Path(tempfile.mkdtemp(prefix="matter-bench-"))
    clock = time.monotonic()
    try:
        if not options.skip_crawl:
            crawl_section(options, scratch, report)
        if not options.skip_storage:
            storage_section(options, scratch, report)
        if not options.skip_scale:
            scale_section(options, scratch, report)
        report.text(f"Total time: {time.monotonic() - clock:.0f} s.")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        # a section that crashed still leaves the ones before it on disk
        report.write(options.results)
        print(f"Written to {options.results / 'benchmarks.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
