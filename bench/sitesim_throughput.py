"""How many pages a second the simulated site serves on this machine.

The site must never be the bottleneck of a crawl benchmark, so this measures
it alone: it starts the site (6,000 products by default) with SimulatedSite,
hammers random detail pages, then listing pages, with an asyncio (aiohttp)
client at a fixed concurrency, and prints a markdown table with pages/s and
the server's CPU seconds per 1,000 pages (from /proc/<pid>/stat, so the
client's own CPU use on the shared cores is not counted).

    PYTHONPATH=. .venv/bin/python bench/sitesim_throughput.py --concurrency 16 --seconds 10

(``PYTHONPATH=.`` only while the project is not installed in the venv.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
from dataclasses import dataclass

import aiohttp

from sitesim.process import SimulatedSite

TARGET_DETAIL_PER_SECOND = 1500


@dataclass(frozen=True)
class Result:
    """One timed run against one kind of page."""

    kind: str
    pages: int
    errors: int
    seconds: float
    server_cpu: float

    @property
    def per_second(self) -> float:
        return self.pages / self.seconds

    @property
    def cpu_per_thousand(self) -> float:
        return 1000.0 * self.server_cpu / max(self.pages, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # after the ")" of the command name: state is field 3, utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(urls: list[str], concurrency: int, seconds: float) -> tuple[int, int]:
    """Fetch random ``urls`` with ``concurrency`` workers for ``seconds``."""
    pages = errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(seed: int) -> None:
            nonlocal pages, errors
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                async with session.get(rng.choice(urls)) as response:
                    await response.read()
                    if response.status == 200:
                        pages += 1
                    else:
                        errors += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return pages, errors


def measure(site: SimulatedSite, kind: str, urls: list[str], args: argparse.Namespace) -> Result:
    """One timed run, with the server's CPU use over it."""
    asyncio.run(hammer(urls, args.concurrency, 1.0))  # warm up connections and caches
    cpu_before, started = cpu_seconds(site.pid), time.monotonic()
    pages, errors = asyncio.run(hammer(urls, args.concurrency, args.seconds))
    elapsed, cpu = time.monotonic() - started, cpu_seconds(site.pid) - cpu_before
    return Result(kind, pages, errors, elapsed, cpu)


def main() -> int:
    """Run the benchmark and print the table; exit 1 below the detail-page target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with SimulatedSite(products=args.products, seed=1) as site:
        details = [site.url(record["url"]) for record in site.truth()]
        pages = -(-len(details) // 12)
        listings = [site.listing_url(page) for page in range(1, pages + 1)]
        results = [
            measure(site, "detail", details, args),
            measure(site, "list", listings, args),
        ]
    print(
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({sys.implementation.name}), {platform.machine()}; {args.products} products, "
        f"concurrency {args.concurrency}, {args.seconds:g} s per kind; client on the same cores."
    )
    print()
    print("| pages | pages/s | non-200 | server CPU s per 1,000 pages |")
    print("|---|---:|---:|---:|")
    for result in results:
        print(
            f"| {result.kind} | {result.per_second:,.0f} | {result.errors} "
            f"| {result.cpu_per_thousand:.3f} |"
        )
    detail = results[0]
    if detail.per_second < TARGET_DETAIL_PER_SECOND:
        print(f"\nBelow the target of {TARGET_DETAIL_PER_SECOND} detail pages/s.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
