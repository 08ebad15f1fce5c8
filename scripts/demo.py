"""The demo crawl: start the simulated catalogue, crawl it into SQLite, report.

Run by ``make demo`` (after ``make setup``). Prints what was stored, how long it
took, where the database is, and whether it equals the site's ground truth.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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
    with SimulatedSite(products=options.products, seed=options.seed) as site:
        print(f"  serving {site.base_url}")
        command = [
            sys.executable, "-m", "scrapy", "crawl", "matter_products",
            "-s", f"CSA_BASE_URL={site.base_url}",
            "-s", f"DATABASE_URL={database_url}",
            "-s", f"CRAWL_PROFILE={options.profile}",
        ]  # fmt: skip
        print("Crawling:", " ".join(command[2:]))
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=os.environ, check=False)
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            print(f"The crawl failed (exit code {result.returncode}).", file=sys.stderr)
            return result.returncode
        truth = site.truth()
        stats = site.stats()

    engine = create_engine(database_url)
    with engine.connect() as conn:
        products = conn.execute(select(func.count()).select_from(Product)).scalar()
        run = conn.execute(select(CrawlRun).order_by(CrawlRun.id.desc()).limit(1)).one()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
