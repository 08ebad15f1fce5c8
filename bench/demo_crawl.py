"""Pages/s and peak memory of the demo crawl (issue 3), against the machine's limit.

Starts a simulated catalogue (default 6,000 products: about 500 listing pages
and 6,000 product pages), crawls it with matter-crawler into a fresh SQLite
file (profile ``fast``), checks the database against the site's ground truth,
then fetches the same URLs with a plain asyncio client at the same concurrency
(no parsing, no storing) as the baseline. Prints a markdown table.

    python bench/demo_crawl.py [--products 6000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, markdown_table, median, run_measured
from sqlalchemy import create_engine

from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians are shown")
    parser.add_argument("--concurrency", type=int, default=32, help="the fast profile's")
    options = parser.parse_args()

    crawls, limits = [], []
    with tempfile.TemporaryDirectory() as scratch, SimulatedSite(products=options.products) as site:
        truth = site.truth()
        urls = [site.listing_url(page) for page in range(1, (len(truth) + 11) // 12 + 1)]
        urls += [site.base_url + record["url"] for record in truth]
        urls_file = Path(scratch) / "urls.txt"
        urls_file.write_text("\n".join(urls))
        for attempt in range(options.repeat):
            database = Path(scratch) / f"crawl-{attempt}.sqlite3"
            command = [
                sys.executable, "-m", "scrapy", "crawl", "matter_products",
                "-s", f"CSA_BASE_URL={site.base_url}",
                "-s", f"DATABASE_URL=sqlite:///{database}",
                "-s", "CRAWL_PROFILE=fast",
                "-s", "LOG_LEVEL=WARNING",
            ]  # fmt: skip
            site.reset_stats()
            measurement = run_measured(command, cwd=ROOT)
            if measurement.returncode != 0:
                print(measurement.output[-3000:], file=sys.stderr)
                return 1
            requests = site.stats()["requests_total"]
            engine = create_engine(f"sqlite:///{database}")
            differences = diff_records(truth, stored_records(engine), limit=0)
            engine.dispose()
            if differences:
                print("The crawl's database differs from the ground truth:", differences[:5])
                return 1
            crawls.append((measurement, requests))
            limit = run_measured(
                [sys.executable, str(ROOT / "bench" / "fetch_limit.py"), str(urls_file),
                 "--concurrency", str(options.concurrency)],
            )  # fmt: skip
            limits.append((limit, len(urls)))

    def row(name: str, runs: list, baseline_rate: float | None) -> list[object]:
        rate = median([pages / m.wall for m, pages in runs])
        cpu_per_1000 = median([m.cpu / pages * 1000 for m, pages in runs])
        peak = max(m.peak_mib for m, _ in runs)
        ratio = f"{rate / baseline_rate:.2f}x" if baseline_rate else "1.00x"
        return [name, runs[0][1], rate, cpu_per_1000, peak, ratio]

    limit_rate = median([pages / m.wall for m, pages in limits])
    print(f"Demo crawl of a {options.products:,}-product simulated catalogue")
    print(f"Machine: {machine()}; medians of {options.repeat} run(s)\n")
    print(
        markdown_table(
            ["run", "pages", "pages/s", "CPU s / 1,000 pages", "peak MiB", "vs. limit"],
            [
                row("matter-crawler (profile fast, all components)", crawls, limit_rate),
                row("limit: plain aiohttp fetch, same URLs", limits, None),
            ],
        )
    )
    print("\nThe crawl's database equals the site's ground truth (every product, every field).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
