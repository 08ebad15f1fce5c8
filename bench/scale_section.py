"""Section 3 of ``run_all.py``: matter-crawler with JOBDIR over a large catalogue.

A ``--scale-products`` catalogue (default 100,000) crawled once: peak memory,
and pages/s in the second half of the crawl's pages against the first, timed
from the site's request log.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from common import ROOT, load_average, markdown_table, run_measured
from crawl_section import CARDS_PER_PAGE, CRAWL_COLUMNS, matter_arguments
from report import Report, status_problem, target_row
from sqlalchemy import create_engine

from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

# -- targets (issue 10) ----------------------------------------------------------------
TARGET_SCALE_PEAK_MB = 300  # Scrapy's MB (MEMUSAGE_LIMIT_MB): 2**20 bytes
TARGET_SECOND_HALF = 0.90


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
                *CRAWL_COLUMNS,
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
