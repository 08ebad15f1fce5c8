"""What the scale row's crawl holds at its peak, by the component that allocated it.

Runs the crawl of ``run_all.py``'s scale section (matter-crawler, every component
on, JOBDIR) with ``bench/tracemalloc_probe.py`` as one more extension, checks its
output against the ground truth, and prints the Python memory the crawl gained
between the engine's start and its peak, grouped by owner: the innermost
matter-crawler module on the allocation's stack, else the innermost Scrapy, Twisted
or other library module, else the standard library's. Then the largest single
allocation sites. tracemalloc slows the crawl (3x with one frame traced, 8x with six)
and sees Python's heap only, so the resident figures printed beside it are the
process's own::

    python bench/memory_profile.py [--products 100000] [--frames 6] [--top 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from common import ROOT, markdown_table, run_measured, source_module
from crawl_section import BENCH, matter_arguments
from sqlalchemy import create_engine

from matter_crawler import settings as project_settings
from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite

MIB = 1024 * 1024


def owner_of(traceback: list[str]) -> str:
    """The innermost of ours, else of a library, else of the standard library."""
    found: dict[str, str] = {}
    for location in reversed(traceback):  # innermost last in tracemalloc's order
        if described := source_module(location.rsplit(":", 1)[0]):
            found.setdefault(*described)
    for kind in ("ours", "library", "stdlib"):
        if kind in found:
            return found[kind]
    return "other"


def short(location: str) -> str:
    """A ``path:line`` frame from its package on (``matter_crawler/...``, ``scrapy/...``)."""
    path, line = location.rsplit(":", 1)
    for pattern in (r"/(matter_crawler/.*)", r"site-packages/(.*)", r"/lib/python3\.\d+/(.*)"):
        if match := re.search(pattern, path):
            return f"{match.group(1)}:{line}"
    return location


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--frames", type=int, default=6, help="stack depth traced")
    parser.add_argument("--top", type=int, default=20, help="owners and sites to list")
    parser.add_argument("--timeout", type=float, default=3600)
    options = parser.parse_args()

    with SimulatedSite(products=options.products) as site, tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        database = scratch / "scale.sqlite3"
        out = scratch / "probe.json"
        extensions = {**project_settings.EXTENSIONS, "tracemalloc_probe.TracemallocProbe": 0}
        command = [
            sys.executable, "-m", "scrapy",
            *matter_arguments(site, database, options),
            "-s", f"JOBDIR={scratch / 'job'}",
            "-s", f"EXTENSIONS={json.dumps(extensions)}",
            "-s", f"TRACEMALLOC_PROBE_OUT={out}",
            "-s", f"TRACEMALLOC_PROBE_FRAMES={options.frames}",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])}
        measurement = run_measured(command, cwd=ROOT, env=env, timeout=options.timeout)
        if measurement.returncode != 0 or not out.exists():
            print(measurement.output[-3000:], file=sys.stderr)
            return 1
        engine = create_engine(f"sqlite:///{database}")
        try:
            differences = diff_records(site.truth(), stored_records(engine), limit=0)
        finally:
            engine.dispose()
        if differences:
            print(f"The crawl's output differs from the truth: {differences[:3]}", file=sys.stderr)
            return 1
        report = json.loads(out.read_text())

    growth = report["growth"]
    gained = sum(entry["bytes"] for entry in growth)
    by_owner: collections.Counter[str] = collections.Counter()
    blocks: collections.Counter[str] = collections.Counter()
    for entry in growth:
        owner = owner_of(entry["traceback"])
        by_owner[owner] += entry["bytes"]
        blocks[owner] += entry["blocks"]
    print(
        f"{options.products:,} products, {measurement.wall:.0f} s under tracemalloc; "
        f"resident: {report['resident_at_engine_start'] / MIB:.0f} MiB at the engine's start, "
        f"{report['resident_peak'] / MIB:.0f} MiB peak (tracemalloc's own tables included). "
        f"Python heap gained from the engine's start to the peak snapshot "
        f"({report['peak_snapshot_at_s']:.0f} s in): {gained / MIB:.1f} MiB; "
        f"traced peak {report['traced_peak'] / MIB:.1f} MiB; snapshots took "
        f"{report['snapshot_cpu_s']:.1f} s of CPU.\n"
    )
    print(
        markdown_table(
            ["owner (innermost frame of ours, else a library's)", "MiB", "share", "blocks"],
            [
                [owner, size / MIB, f"{size / gained:.0%}", f"{blocks[owner]:,}"]
                for owner, size in by_owner.most_common(options.top)
            ],
        )
    )
    print()
    sites = sorted(growth, key=lambda entry: entry["bytes"], reverse=True)[: options.top]
    rows = []
    for entry in sites:
        ours = [loc for loc in entry["traceback"] if "/matter_crawler/" in loc]
        rows.append(
            [
                short(entry["traceback"][-1]),
                short(ours[-1]) if ours else "-",
                entry["bytes"] / MIB,
                f"{entry['blocks']:,}",
            ]
        )
    print(markdown_table(["allocated at", "innermost of ours", "MiB", "blocks"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
