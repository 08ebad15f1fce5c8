"""The fixed start-up cost of ``run_all.py``: matter-crawler against bare Scrapy on ten products.

A ten-product simulated catalogue (one listing page, ten product pages) crawled by
the crawl section's matter-crawler and bare-Scrapy rows, with the same arguments,
``--repeat`` interleaved rounds. A crawl of eleven pages is almost all fixed cost:
interpreter start-up, imports, building the crawler and its components, opening
and closing the database or the feed, shutdown. The figure is the difference of
the two medians of CPU time (wait4, the whole process); each output is checked
against the site's ground truth, as in the crawl section.

    .venv/bin/python bench/startup_section.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import load_average, markdown_table, median
from crawl_section import CrawlBench, Run
from report import Report

from sitesim.process import SimulatedSite

STARTUP_PRODUCTS = 10  # the simulated site's smallest catalogue: one listing page
STARTUP_ROWS = ("matter", "bare")


def measure_startup(
    repeat: int, scratch: Path, seed: int = 1, concurrency: int = 16
) -> dict[str, Any]:
    """Medians of CPU, wall and peak memory of each row on a ten-product catalogue."""
    runs: dict[str, list[Run]] = {name: [] for name in STARTUP_ROWS}
    with SimulatedSite(products=STARTUP_PRODUCTS, seed=seed) as site:
        bench = CrawlBench(site, scratch, concurrency)
        load_before = load_average()
        for round_ in range(repeat):
            order = STARTUP_ROWS if round_ % 2 == 0 else STARTUP_ROWS[::-1]
            for name in order:
                run = bench.measure(name, 1000 + round_)
                runs[name].append(run)
                verdict = "FAILED: " + run.problems[0] if run.problems else "ok"
                print(
                    f"  start-up round {round_ + 1}/{repeat} {name}: {run.cpu:.2f} s CPU, "
                    f"{run.peak_mib:.0f} MiB, {verdict}",
                    file=sys.stderr,
                    flush=True,
                )
        load_after = load_average()
    medians: dict[str, dict[str, float] | None] = {}
    for name, done in runs.items():
        if any(run.problems for run in done):
            medians[name] = None
            continue
        medians[name] = {
            "cpu": median([run.cpu for run in done]),
            "wall": median([run.wall for run in done]),
            "peak_mib": max(run.peak_mib for run in done),
        }
    return {
        "pages": bench.pages,
        "repeat": repeat,
        "load_before": load_before,
        "load_after": load_after,
        "medians": medians,
        "problems": [
            f"{run.crawler}, round {run.round - 999}: {problem}"
            for done in runs.values()
            for run in done
            for problem in run.problems
        ],
        "runs": [
            {"crawler": run.crawler, "cpu": run.cpu, "wall": run.wall, "peak_mib": run.peak_mib}
            for done in runs.values()
            for run in done
        ],
    }


def startup_excess(raw: dict[str, Any]) -> float | None:
    """matter-crawler's median start-up CPU minus bare Scrapy's (None when a run failed)."""
    matter, bare = raw["medians"].get("matter"), raw["medians"].get("bare")
    if not matter or not bare:
        return None
    return matter["cpu"] - bare["cpu"]


def startup_section(options: argparse.Namespace, scratch: Path, report: Report) -> None:
    raw = measure_startup(options.repeat, scratch, options.seed, options.concurrency)
    report.raw["startup"] = raw
    rows = []
    for name, label in (("matter", "matter-crawler"), ("bare", "bare Scrapy")):
        figures = raw["medians"][name]
        if figures is None:
            rows.append([label, "FAILED", "-", "-", "-"])
        else:
            rows.append([label, "ok", figures["cpu"], figures["wall"], figures["peak_mib"]])
    excess = startup_excess(raw)
    report.section(
        f"Start-up: a {STARTUP_PRODUCTS}-product catalogue ({raw['pages']} pages)",
        f"Medians of {raw['repeat']} interleaved round(s); peak memory is the highest. "
        f"{raw['load_before'].capitalize()} before, {raw['load_after']} after. "
        "An eleven-page crawl is almost all fixed cost (imports, building the components, "
        "opening and closing the store, shutdown).",
        markdown_table(["crawler", "output vs. truth", "CPU s", "wall s", "peak MiB"], rows)
        + (
            f"\n\nStart-up CPU above bare Scrapy: {excess:.2f} s."
            if excess is not None
            else "\n\nStart-up CPU above bare Scrapy: not measured (a run failed)."
        ),
    )
    if raw["problems"]:
        report.text("Failed runs:\n\n" + "\n".join(f"- {line}" for line in raw["problems"]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="matter-startup-") as scratch:
        startup_section(options, Path(scratch), Report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
