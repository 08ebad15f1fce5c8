"""Where a crawl's CPU goes: the matter-crawler or bare Scrapy row of run_all.py under cProfile.

Starts a simulated catalogue, runs the crawler exactly as ``bench/run_all.py``
does (same arguments, same working directory) but under ``python -m cProfile``,
checks its output against the ground truth, and prints the profile's time
grouped by package (Scrapy, Twisted, asyncio, parsing, each matter-crawler
module...) and the functions with the most time of their own. The profile file
is kept for ``snakeviz``/``pstats``.

cProfile sees the main thread only: the database writer thread's work is not in
it (``bench/store_throughput.py`` measures that), and cProfile's own overhead
inflates call-heavy code, so compare the two crawlers' profiles with each other,
not with the timings of run_all.py::

    python bench/profile_crawl.py matter [--products 3000] [--out bench/results/matter.prof]
    python bench/profile_crawl.py bare
"""

from __future__ import annotations

import argparse
import collections
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, item_records, read_json_lines, source_module
from crawl_section import bare_arguments, matter_arguments, stock_scrapy_env
from run_all import RESULTS
from sqlalchemy import create_engine

from matter_crawler.verify import diff_records, stored_records
from sitesim.process import SimulatedSite


def package_of(path: str, function: str = "") -> str:
    """A profile entry's group: the matter-crawler module, the library, or C built-ins."""
    if (
        "matter_crawler/parsing" in path
        or "/lxml/" in path
        or "/cssselect/" in path
        or (path == "~" and "lxml" in function)
    ):
        return "parsing (lxml + matter_crawler.parsing)"
    if "bench/bare_scrapy_spider" in path:
        return "the bare spider"
    if described := source_module(path):
        kind, module = described
        if kind == "ours":
            return module
        top = module.split(".")[0]  # a library or the standard library: by its package
        return top if kind == "library" else f"stdlib {top}"
    if path == "~":
        return "C built-ins (socket, isinstance...)"
    return "other"


def by_package(profile: Path) -> list[tuple[str, float]]:
    stats = pstats.Stats(str(profile))
    totals: collections.Counter[str] = collections.Counter()
    for (path, _line, function), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[package_of(path, function)] += own
    return totals.most_common()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("crawler", choices=("matter", "bare"))
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--out", type=Path, help="profile file (default bench/results/)")
    options = parser.parse_args()
    out = (options.out or RESULTS / f"{options.crawler}.prof").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    with SimulatedSite(products=options.products) as site, tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        profiled = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "scrapy"]
        if options.crawler == "matter":
            database = scratch / "matter.sqlite3"
            command = [*profiled, *matter_arguments(site, database, options)]
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        else:
            output = scratch / "products.jsonl"
            command = [*profiled, *bare_arguments(site, output, options)]
            result = subprocess.run(
                command,
                cwd=scratch,
                env=stock_scrapy_env(),
                capture_output=True,
                text=True,
                check=False,
            )
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1
        if options.crawler == "matter":
            engine = create_engine(f"sqlite:///{database}")
            records = stored_records(engine)
            engine.dispose()
        else:
            records = item_records(read_json_lines(output))
        differences = diff_records(site.truth(), records, limit=0)
        if differences:
            print(f"The crawl's output differs from the truth: {differences[:3]}", file=sys.stderr)
            return 1

    totals = by_package(out)
    overall = sum(seconds for _, seconds in totals)
    print(f"{options.crawler}: {overall:.1f} s of own time in the main thread (under cProfile)\n")
    for package, seconds in totals[:20]:
        print(f"  {seconds:7.2f} s  {seconds / overall:6.1%}  {package}")
    print()
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(options.top)
    print(f"Profile: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
