"""Section 1 of ``run_all.py``: four crawlers against one simulated catalogue.

matter-crawler (every component on), a bare Scrapy spider with the same parsing,
Crawlee for Python and a plain aiohttp fetch of the same URLs, at the same
concurrency, interleaved over ``--repeat`` rounds; medians are shown and every
crawler's output is compared with the site's ground truth (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    Measurement,
    item_records,
    load_average,
    markdown_table,
    median,
    read_dataset,
    read_json_lines,
    run_measured,
)
from report import Report, ratio, status_problem, target_row
from sqlalchemy import create_engine

from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

BENCH = Path(__file__).resolve().parent
CARDS_PER_PAGE = 12  # the catalogue's listing pages hold 12 cards (docs/sitesim.md)

CRAWLERS = ("matter", "bare", "crawlee", "limit")
NAMES = {
    "matter": "matter-crawler, every component on",
    "bare": "bare Scrapy spider, stock components",
    "crawlee": "Crawlee for Python ParselCrawler",
    "limit": "limit: plain aiohttp fetch, same URLs",
}

#: The first columns of a table of crawls (the crawl and the scale sections alike).
CRAWL_COLUMNS = (
    "crawler",
    "output vs. truth",
    "requests served",
    "wall s",
    "pages/s",
    "CPU s / 1,000 pages",
)

# -- targets (issue 10) ----------------------------------------------------------------
TARGET_VS_BARE = 1.0
TARGET_VS_CRAWLEE = 2.0


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

    def run_matter(
        self, round_: int, *, name: str = "matter", root: Path = ROOT, settings: Sequence[str] = ()
    ) -> Run:
        """The matter-crawler row; ``bench/ab_crawl.py`` names variants of it, each with its
        own ``-s`` settings or run from another checkout (``root``)."""
        database = self.scratch / f"{name}-{round_}.sqlite3"
        command = [
            sys.executable, "-m", "scrapy", *matter_arguments(self.site, database, self), *settings
        ]  # fmt: skip
        run, measurement = self._measured(name, round_, command, root, dict(os.environ))
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
                *CRAWL_COLUMNS,
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
