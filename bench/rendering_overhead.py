"""What having scrapy-playwright installed costs a crawl that renders nothing (issue 8).

Crawls one simulated catalogue (default 3,000 products: 250 listing pages and
3,000 product pages, none JavaScript-only) with profile ``fast``, in turns:

- ``bare``: ``RENDERING_ENABLED=False``, Scrapy's own HTTP handler (the baseline);
- ``lazy``: the project's default with a browser present: our
  ``LazyPlaywrightDownloadHandler`` and ``LazyBrowserProvider`` installed, Playwright never
  started;
- ``eager``: scrapy-playwright's stock handler installed the usual way, which
  starts the Playwright driver when the engine starts.

With ``--js-only-rate R`` (default 0.02) a second catalogue with that share of
JavaScript-only pages is crawled with the default settings, to show what a
rendered page costs. CPU is the crawl process's and its children's (the
Playwright driver and Chromium) from wait4. Prints a markdown table.

    python bench/rendering_overhead.py [--products 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, Measurement, machine, markdown_table, median, run_measured
from sqlalchemy import create_engine

from matter_crawler.rendering.browser import find_browser
from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

STOCK_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"


def crawl(site: SimulatedSite, database: Path, settings: dict[str, str]) -> tuple[Measurement, int]:
    command = [
        sys.executable, "-m", "scrapy", "crawl", "matter_products",
        "-s", f"CSA_BASE_URL={site.base_url}",
        "-s", f"DATABASE_URL=sqlite:///{database}",
        "-s", "CRAWL_PROFILE=fast",
        "-s", "LOG_LEVEL=INFO",
    ]  # fmt: skip
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    site.reset_stats()
    measurement = run_measured(command, cwd=ROOT)
    if measurement.returncode != 0:
        raise SystemExit(f"crawl failed:\n{measurement.output[-3000:]}")
    engine = create_engine(f"sqlite:///{database}")
    differences = diff_records(site.truth(), stored_records(engine), limit=0)
    engine.dispose()
    if differences:
        raise SystemExit(f"the crawl's database differs from the truth: {differences[:5]}")
    # the stats dump at close lists " 'render/requested': N," when pages were rendered
    lines = [x for x in measurement.output.splitlines() if "'render/requested': " in x]
    return measurement, int(lines[0].split(":")[1].strip(" ,")) if lines else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; medians are shown")
    parser.add_argument("--js-only-rate", type=float, default=0.02)
    options = parser.parse_args()

    browser = find_browser(_project_settings())
    if browser is None:
        print("No browser found (install chromium or set PLAYWRIGHT_BROWSER_PATH)")
        return 1
    handlers = json.dumps({"http": STOCK_HANDLER, "https": STOCK_HANDLER})
    launch = json.dumps({"executable_path": browser, "headless": True})
    variants = {
        "bare (RENDERING_ENABLED=False)": {"RENDERING_ENABLED": "False"},
        "lazy handler (default)": {},
        "stock scrapy-playwright handler": {
            "RENDERING_ENABLED": "False",
            "DOWNLOAD_HANDLERS": handlers,
            "PLAYWRIGHT_LAUNCH_OPTIONS": launch,
        },
    }
    runs: dict[str, list[Measurement]] = {name: [] for name in variants}
    rendered_runs: list[tuple[Measurement, int]] = []
    with tempfile.TemporaryDirectory() as scratch:
        with SimulatedSite(products=options.products) as site:
            for attempt in range(options.repeat):
                for index, (name, settings) in enumerate(variants.items()):
                    database = Path(scratch) / f"crawl-{attempt}-{index}.sqlite3"
                    runs[name].append(crawl(site, database, settings)[0])
        if options.js_only_rate > 0:
            with SimulatedSite(
                products=options.products, js_only_rate=options.js_only_rate
            ) as site:
                for attempt in range(options.repeat):
                    database = Path(scratch) / f"rendered-{attempt}.sqlite3"
                    rendered_runs.append(crawl(site, database, {}))

    pages = (options.products + 11) // 12 + 1 + options.products  # + the probe past the end
    bare = runs["bare (RENDERING_ENABLED=False)"]
    bare_median, bare_min = median([m.cpu for m in bare]), min(m.cpu for m in bare)

    def row(name: str, measurements: list[Measurement]) -> list[object]:
        cpu = [m.cpu for m in measurements]
        return [
            name,
            pages,
            median([m.wall for m in measurements]),
            median(cpu),
            min(cpu),
            median(cpu) / pages * 1000,
            max(m.peak_mib for m in measurements),
            f"{median(cpu) / bare_median:.3f}x",
            f"{min(cpu) / bare_min:.3f}x",
        ]

    rows = [row(name, measurements) for name, measurements in runs.items()]
    if rendered_runs:
        rendered = rendered_runs[0][1]
        name = f"lazy handler, {rendered} pages rendered ({options.js_only_rate:.0%} JS-only)"
        rows.append(row(name, [m for m, _ in rendered_runs]))
    print(f"Crawls of a {options.products:,}-product simulated catalogue, profile fast")
    print(f"Machine: {machine()}; {options.repeat} runs of each, in turns\n")
    headers = ["handler", "pages", "wall s (median)", "CPU s (median)", "CPU s (min)"]
    headers += ["CPU s / 1,000 pages", "peak MiB", "CPU vs bare (median)", "(min)"]
    print(markdown_table(headers, rows))
    if rendered_runs:
        extra = (median([m.cpu for m, _ in rendered_runs]) - bare_median) / max(rendered, 1)
        print(f"\nEach rendered page cost about {extra:.2f} CPU s more than a plain fetch.")
    print(
        "\nOther work on the machine inflates CPU seconds too; the minimum of several runs "
        "is the least disturbed. Peak MiB is the crawl process's own; the driver and "
        "Chromium are extra processes."
    )
    return 0


def _project_settings():
    from scrapy.utils.project import get_project_settings

    return get_project_settings()


if __name__ == "__main__":
    sys.exit(main())
