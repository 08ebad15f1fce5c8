"""The demo crawl: start the simulated catalogue, crawl it into SQLite, report.

Run by ``make demo`` (after ``make setup``). Prints what was stored, how long it
took, where the database is, and whether it equals the site's ground truth; then
crawls the site's simulated Distributed Compliance Ledger (``scrapy crawl dcl``)
and ends with the cross-check of the two (``scrapy crosscheck``), compared with
the findings the site seeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from matter_crawler.storage.models import CrawlRun, Product
from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=6000, help="catalogue size (default 6000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="data/demo.sqlite3", help="SQLite file to write")
    parser.add_argument(
        "--profile", default="fast", help="crawl profile (default fast: local site)"
    )
    options = parser.parse_args()

    database = (ROOT / options.database).resolve()
    database.unlink(missing_ok=True)
    database_url = f"sqlite:///{database}"
    print(f"Starting the simulated catalogue ({options.products} products, seed {options.seed})...")
    settings = [
        "-s", f"DATABASE_URL={database_url}",
        "-s", f"CRAWL_PROFILE={options.profile}",
    ]  # fmt: skip
    with SimulatedSite(products=options.products, seed=options.seed, dcl=True) as site:
        print(f"  serving {site.base_url} (and a simulated DCL under /dcl/)")
        catalogue = ["matter_products", "-s", f"CSA_BASE_URL={site.base_url}", *settings]
        returncode, elapsed = timed_crawl("Crawling", "The crawl", catalogue)
        if returncode != 0:
            return returncode
        truth = site.truth()
        stats = site.stats()
        site.reset_stats()
        ledger = ["dcl", "-s", f"DCL_BASE_URL={site.base_url}", *settings]
        returncode, dcl_elapsed = timed_crawl("Crawling the ledger", "The ledger crawl", ledger)
        if returncode != 0:
            return returncode
        dcl_requests = site.stats()["requests_total"]
        expected = site.crosscheck()

    engine = create_engine(database_url)
    with engine.connect() as conn:
        products = conn.execute(select(func.count()).select_from(Product)).scalar()
        # the catalogue's run, not the ledger walk that ran after it
        newest = select(CrawlRun).order_by(CrawlRun.id.desc()).limit(1)
        run = conn.execute(newest.where(CrawlRun.spider == "matter_products")).one()
    differences = diff_records(truth, stored_records(engine), limit=0)
    engine.dispose()

    pages = stats["requests_total"]
    print()
    print(f"Stored {products} products ({run.products_new} new), {run.pages_crawled} listing pages")
    print(f"in {elapsed:.1f} s: {pages} requests, {pages / elapsed:.0f} pages/s")
    print(f"Database: {database}")
    if differences:
        print(f"It differs from the site's ground truth in {len(differences)} places, e.g.:")
        for line in differences[:5]:
            print("  ", line)
        return 1
    print(f"It equals the site's ground truth: all {len(truth)} products, every field.")
    print(f"Look inside: sqlite3 {database} 'select model, vid, pid from products limit 5'")
    print()
    print(f"Read the ledger in {dcl_elapsed:.1f} s: {dcl_requests} requests.")
    return crosscheck(database_url, expected)


def timed_crawl(doing: str, what: str, arguments: list[str]) -> tuple[int, float]:
    """``scrapy crawl`` with ``arguments``, shown as it runs: its exit code and wall time."""
    command = [sys.executable, "-m", "scrapy", "crawl", *arguments]
    print(f"{doing}:", " ".join(command[2:]))
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=os.environ, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(f"{what} failed (exit code {result.returncode}).", file=sys.stderr)
    return result.returncode, elapsed


def crosscheck(database_url: str, expected: dict[str, Any]) -> int:
    """Run ``scrapy crosscheck``: its summary, then whether it found what the site seeded."""
    command = [sys.executable, "-m", "scrapy", "crosscheck", "-s", f"DATABASE_URL={database_url}"]
    print("Cross-checking:", " ".join(command[2:]))
    shown = subprocess.run([*command, "--limit", "5"], cwd=ROOT, env=os.environ, check=False)
    if shown.returncode != 0:
        return shown.returncode
    found = subprocess.run(
        [*command, "--json", "--no-store"],
        cwd=ROOT,
        env=os.environ,
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(found.stdout)
    keys = ("class", "vid", "pid", "certificate_id", "field", "catalogue", "dcl")
    got = sorted(json.dumps([f[k] for k in keys]) for f in report["findings"])
    seeded = sorted(json.dumps([f[k] for k in keys]) for f in expected["findings"])
    if got != seeded:
        print(f"The cross-check differs from the {len(seeded)} findings the site seeded.")
        return 1
    print(f"It found exactly the {len(seeded)} disagreements the site seeded, no more, no fewer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
