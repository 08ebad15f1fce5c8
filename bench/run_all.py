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
4. What a user pays on the real site (``bench/real_site_cost.py``): requests
   and wall time of a first full crawl, a daily and a weekly run of a
   ``--real-site-products`` catalogue (default 6,000) with ``--real-site-latency-ms``
   (300) at the real site's politeness ceiling, profile polite.
5. Start-up (``bench/startup_section.py``): a ten-product catalogue crawled by
   matter-crawler and bare Scrapy, ``--repeat`` rounds: the fixed CPU above bare
   Scrapy's. Last, the issue-19 table (``bench/issue19.py``) gathers six figures
   of the sections above against their targets.

    .venv/bin/python bench/run_all.py [--repeat 3] [--products 6000] [--concurrency 16]
        [--crawlers matter,bare,crawlee,limit] [--storage-items 100000]
        [--scale-products 100000] [--skip-crawl] [--skip-storage] [--skip-scale]
        [--skip-real-site-cost] [--real-site-products 6000] [--real-site-latency-ms 300]
        [--skip-startup]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

from common import ROOT, machine
from crawl_section import CRAWLERS, crawl_section
from issue19 import issue19_section
from real_site_cost import add_options as add_real_site_options
from real_site_cost import real_site_cost_section
from report import Report
from scale_section import scale_section
from startup_section import startup_section
from storage_section import storage_section

# One module per section (crawl_section.py, storage_section.py, scale_section.py,
# real_site_cost.py);
# report.py prints the tables and judges the targets. This file: options and order.
RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--skip-real-site-cost", action="store_true")
    add_real_site_options(parser, prefix="real-site-")
    parser.add_argument(
        "--skip-startup", action="store_true", help="leave out the start-up measurement"
    )
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
    # every crawler runs from bytecode, ours as Scrapy's (pip compiled it): where
    # PYTHONDONTWRITEBYTECODE is set, our modules would be compiled again at every start
    compileall.compile_dir(ROOT / "matter_crawler", quiet=1)
    scratch = Path(tempfile.mkdtemp(prefix="matter-bench-"))
    clock = time.monotonic()
    try:
        if not options.skip_crawl:
            crawl_section(options, scratch, report)
        if not options.skip_startup:
            startup_section(options, scratch, report)
        if not options.skip_storage:
            storage_section(options, scratch, report)
        if not options.skip_scale:
            scale_section(options, scratch, report)
        if not options.skip_real_site_cost:
            real_site_cost_section(options, scratch, report)
        issue19_section(report)
        report.text(f"Total time: {time.monotonic() - clock:.0f} s.")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        # a section that crashed still leaves the ones before it on disk
        report.write(options.results)
        print(f"Written to {options.results / 'benchmarks.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
