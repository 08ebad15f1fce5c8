"""What each heavy import adds to a crawl's start: CPU seconds and resident memory.

Each module is imported in a fresh interpreter that has already imported what every
Scrapy crawl imports (Scrapy, its crawler and its HTTP/1.1 download handler), so the
figure is what that module adds to a Scrapy process; the first row, Scrapy's own imports
from a bare interpreter, is the baseline. Medians of ``--repeat`` fresh processes::

    .venv/bin/python bench/import_cost.py [--repeat 5]

The start-up section of ``run_all.py`` measures whole crawls; this one says where their
difference comes from (docs/benchmarks.md, "Where the floors are").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import ROOT, load_average, machine, markdown_table, median

SCRAPY = ("scrapy", "scrapy.crawler", "scrapy.core.downloader.handlers.http11")
#: (module, what it is for in a crawl)
MODULES = (
    ("sqlalchemy", "the storage's toolkit"),
    ("matter_crawler.storage.models", "the tables (SQLAlchemy included)"),
    ("alembic.command", "the migrations (SQLAlchemy included), for a new database"),
    ("scrapy_playwright.handler", "the rendering handler, when a browser is found"),
    ("prometheus_client", "the metrics exporter"),
    ("matter_crawler.monitoring.server", "the monitoring server"),
)

PROBE = """
import json, resource, sys

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

before, measured = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in before:
    __import__(name)
cpu0, rss0 = cpu(), rss_kib()
for name in measured:
    __import__(name)
print(json.dumps({"cpu": cpu() - cpu0, "mib": (rss_kib() - rss0) / 1024}))
"""


def measure(before: tuple[str, ...], measured: tuple[str, ...]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(before), json.dumps(measured)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per module")
    args = parser.parse_args()
    print(f"{machine()}\n\n{load_average().capitalize()} before.\n")
    rows = []
    # the baseline first: Scrapy's own imports, from a bare interpreter
    cases = [((), SCRAPY, "what every Scrapy crawl imports (the baseline)")]
    cases += [(SCRAPY, (module,), purpose) for module, purpose in MODULES]
    baseline_cpu = baseline_mib = None
    for before, measured, purpose in cases:
        runs = [measure(before, measured) for _ in range(args.repeat)]
        cpu = median([run["cpu"] for run in runs])
        mib = median([run["mib"] for run in runs])
        if baseline_cpu is None:
            baseline_cpu, baseline_mib = cpu, mib
        rows.append(
            [
                ", ".join(f"`{name}`" for name in measured),
                purpose,
                f"{cpu:.3f}",
                f"{mib:.1f}",
                f"{cpu / baseline_cpu:.2f}x",
                f"{mib / baseline_mib:.2f}x",
            ]
        )
    print(
        markdown_table(
            ["import", "what for", "CPU s", "MiB", "CPU vs. Scrapy's", "MiB vs. Scrapy's"], rows
        )
    )
    print(f"\nMedians of {args.repeat} fresh processes each. {load_average().capitalize()} after.")


if __name__ == "__main__":
    main()
