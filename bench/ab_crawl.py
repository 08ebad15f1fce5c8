"""A/B of the matter-crawler row: settings or source trees against each other, interleaved.

Each variant is the crawl section's matter-crawler row (``bench/crawl_section.py``,
same arguments, fresh SQLite file, output checked against the ground truth) with
extra ``-s`` settings, run from a project directory (default: this one; another
checkout of the project measures another version of the code). Rounds
alternate the variants, rotating the order; medians of CPU (wait4) and wall time,
and the highest peak memory, are printed. CPU time is the figure to compare on a
shared machine; the load average is printed before and after::

    .venv/bin/python bench/ab_crawl.py --products 3000 --repeat 3 \\
        --variant 'items16|CONCURRENT_ITEMS=16' --variant 'items1|CONCURRENT_ITEMS=1'
    .venv/bin/python bench/ab_crawl.py --variant 'before|@/tmp/old-checkout' --variant 'after|'

A variant is ``NAME|SETTING=VALUE;SETTING=VALUE`` and may start its settings with
``@DIRECTORY;`` to run from that project directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, load_average, markdown_table, median
from crawl_section import CrawlBench, Run

from sitesim.process import SimulatedSite


def parse_variant(text: str) -> tuple[str, Path, list[str]]:
    name, _, spec = text.partition("|")
    root = ROOT
    settings = []
    for part in filter(None, (piece.strip() for piece in spec.split(";"))):
        if part.startswith("@"):
            root = Path(part[1:]).resolve()
        else:
            settings += ["-s", part]
    return name, root, settings


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", required=True, type=parse_variant)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    variants = options.variant
    runs: dict[str, list[Run]] = {name: [] for name, _, _ in variants}
    with (
        tempfile.TemporaryDirectory(prefix="matter-ab-") as scratch,
        SimulatedSite(products=options.products, seed=options.seed) as site,
    ):
        bench = CrawlBench(site, Path(scratch), options.concurrency)
        load_before = load_average()
        for round_ in range(options.repeat):
            shift = round_ % len(variants)
            for name, root, settings in variants[shift:] + variants[:shift]:
                run = bench.run_matter(round_, name=name, root=root, settings=settings)
                runs[name].append(run)
                verdict = "FAILED: " + run.problems[0] if run.problems else "ok"
                print(
                    f"  round {round_ + 1} {name}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU, "
                    f"{run.peak_mib:.0f} MiB, {verdict}",
                    file=sys.stderr,
                    flush=True,
                )
        load_after = load_average()
        pages = bench.pages
    first = variants[0][0]
    base_cpu = median([run.cpu for run in runs[first]])
    rows = []
    for name, done in runs.items():
        cpu = median([run.cpu for run in done])
        rows.append(
            [
                name,
                "ok" if not any(run.problems for run in done) else "FAILED",
                median([run.wall for run in done]),
                cpu,
                cpu / pages * 1000,
                max(run.peak_mib for run in done),
                f"{cpu / base_cpu:.3f}x",
                " ".join(f"{run.cpu:.2f}" for run in done),
            ]
        )
    print(
        f"{options.products:,} products ({pages:,} pages), {options.repeat} rounds; "
        f"{load_before} before, {load_after} after\n"
    )
    print(
        markdown_table(
            [
                "variant",
                "output",
                "wall s",
                "CPU s",
                "CPU s / 1,000 pages",
                "peak MiB",
                f"CPU vs. {first}",
                "CPU of each round",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
