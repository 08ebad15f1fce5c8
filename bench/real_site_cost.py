"""What a user pays on the real site, in requests and time (issue 19): ``run_all.py``'s
real-site-cost section, also runnable alone.

The real site is polite-bound, not CPU-bound: at its politeness ceiling
(``ADAPTIVE_DOMAIN_LIMITS["csa-iot.org"]``: 3 at once, 1 s apart) a request costs
about a second whatever the crawler's CPU does, so the figure that matters is how
many requests a run sends. One simulated catalogue of the real size (``--products``
6,000) with the real site's latency (``--latency-ms`` 300) and, for the crawls
measured here, the real site's ceiling applied to the simulated host (127.0.0.1),
under the default profile (``polite``). The runs, one after the other on one
database, as a user's schedule makes them:

1. first full crawl of an empty database. Its requests do not depend on the pace
   (every listing page, every product page), so they are counted on a run at profile
   ``fast`` without the ceiling, and its wall time at the ceiling is derived from
   them and the pace measured in the weekly run below (marked *derived*);
   ``--polite-first-crawl`` measures it for real (about two hours);
2. a daily run a day later (the database's times moved back a day), 20 products
   new, the default mode (``auto``: incremental), measured at the ceiling, with the
   default ``REFRESH_MAX_AGE_DAYS`` and with it at 0 (the refresh of old pages off)
   on a copy of the same database;
3. a weekly run a week after the daily one, 100 products new and 10 removed,
   ``-a mode=full`` (only a full run delists, with the confirmations of issue 14),
   measured at the ceiling with the default settings.

Requests are counted by the site (its own account, robots.txt included) and
compared with Scrapy's ``downloader/request_count``; each run's requests are
broken down by what they were for (the site's log: robots.txt, listing pages,
product pages of products not stored before the run; the crawl's stats: pages
read again for their age, delisting confirmations, listing pages of the end of a
full run). Every run's database is compared with the site's ground truth, and the
weekly run's delisted products with the ones the site removed.

    .venv/bin/python bench/real_site_cost.py [--products 6000] [--latency-ms 300]
        [--seed 1] [--polite-first-crawl] [--counts-only]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load_average, machine, markdown_table
from real_site_schedule import REAL_SITE, CostRun, real_site_cost
from report import Report, mark

from matter_crawler import settings as project_settings

# -- targets (issue 19) ----------------------------------------------------------------
TARGET_DAILY_REQUESTS = 30  # fewer than
TARGET_DAILY_SECONDS = 60.0  # less than


def cost_rows(runs: list[CostRun]) -> list[list[Any]]:
    rows = []
    for run in runs:
        kinds = run.by_kind
        listing = f"{kinds.get('listing', 0):,}"
        if run.rerun_listing:
            listing += f" ({run.rerun_listing} at the end)"
        wall = "-" if run.wall is None else f"{run.wall:,.0f}"
        rows.append([
            run.name,
            run.how,
            "FAILED" if run.problems else "ok",
            f"{run.requests:,}",
            "-" if run.scrapy_requests is None else f"{run.scrapy_requests:,}",
            wall,
            kinds.get("robots.txt", "-"),
            listing,
            kinds.get("new products", "-"),
            kinds.get("refresh", "-"),
            kinds.get("confirmations", "-"),
            kinds.get("other", "-"),
            run.asked_again,
            f"{run.products_new:,} / {run.products_delisted:,}",
            f"{run.requests / run.stored:.3f}" if run.stored else "-",
        ])  # fmt: skip
    return rows


COLUMNS = [
    "run",
    "how",
    "output vs. truth",
    "requests (site)",
    "requests (Scrapy)",
    "wall s",
    "robots.txt",
    "listing pages",
    "new products' pages",
    "pages read again for age",
    "delisting confirmations",
    "other",
    "same URL asked again",
    "new / delisted",
    "requests per stored product",
]


def report_cost(
    report: Report, runs: list[CostRun], facts: dict[str, Any], loads: tuple[str, str]
) -> None:
    pace = facts["pace_s_per_request"]
    pace_text = f"{pace:.2f} s a request" if pace else "not measured"
    products = facts["products"]
    report.section(
        f"What a user pays on the real site: {products:,}-product catalogue, "
        f"{facts['latency_ms']} ms latency, profile polite at the {REAL_SITE} ceiling",
        f"{loads[0].capitalize()} before, {loads[1]} after. Ceiling "
        f"{project_settings.ADAPTIVE_DOMAIN_LIMITS[REAL_SITE]} applied to 127.0.0.1. "
        f"Requests counted by the site (robots.txt included) and by Scrapy. The pace at the "
        f"ceiling, measured on the weekly run: {pace_text}; the first crawl's wall time is "
        "its requests at that pace unless measured.",
        markdown_table(COLUMNS, cost_rows(runs)),
    )
    for run in runs:
        if run.problems:
            report.text(f"Failed ({run.name}): " + "; ".join(run.problems))
    rows = []
    for daily, label in ((runs[1], "daily run"), (runs[2], "daily run, REFRESH_MAX_AGE_DAYS=0")):
        rows += daily_targets(daily, label)
    report.table(["target", "wanted", "measured", ""], rows)


def daily_targets(daily: CostRun, label: str) -> list[list[str]]:
    """The issue's targets judged on one daily run."""
    ok = not daily.problems and daily.wall is not None
    missing = "not measured (the run failed)"
    return [
        [
            f"{label}, requests",
            f"< {TARGET_DAILY_REQUESTS}",
            f"{daily.requests:,}" if ok else missing,
            mark(ok and daily.requests < TARGET_DAILY_REQUESTS),
        ],
        [
            f"{label}, wall time",
            f"< {TARGET_DAILY_SECONDS:.0f} s",
            f"{daily.wall:.0f} s" if ok and daily.wall is not None else missing,
            mark(ok and daily.wall is not None and daily.wall < TARGET_DAILY_SECONDS),
        ],
    ]


def real_site_cost_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    """``run_all.py``'s section: the schedule's runs, their table and the targets."""
    before = load_average()
    runs, facts = real_site_cost(
        options.real_site_products,
        options.real_site_latency_ms,
        options.seed,
        scratch,
        polite_first_crawl=options.polite_first_crawl,
        counts_only=options.counts_only,
    )
    report_cost(report, runs, facts, (before, load_average()))
    report.raw["real_site_cost"] = {
        **facts,
        "runs": [run.__dict__ for run in runs],
    }


def add_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This section's options (``run_all.py`` adds them with the ``real-site-`` prefix)."""
    parser.add_argument(f"--{prefix}products", dest="real_site_products", type=int, default=6000)
    parser.add_argument(f"--{prefix}latency-ms", dest="real_site_latency_ms", type=int, default=300)
    parser.add_argument(
        "--polite-first-crawl",
        action="store_true",
        help="measure the first full crawl at the ceiling too (about 2 hours at 6,000 products)",
    )
    parser.add_argument(
        "--counts-only",
        action="store_true",
        help="every run at profile fast, no ceiling: the request counts only, in about a minute",
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_options(parser)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    report = Report()
    report.text(f"Machine: {machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="matter-real-site-"))
    clock = time.monotonic()
    try:
        real_site_cost_section(options, scratch, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.text(f"Total time: {time.monotonic() - clock:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
