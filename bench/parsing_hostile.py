"""What parsing costs: the common pages, and the hostile pages that used to freeze a crawl.

Two measurements, each against a baseline measured in the same run:

1. **parse only**: the simulated site's listing and product pages (UTF-8, every markup
   variant at the site's default share), fetched once, then parsed again and again in this
   process: ``parse_listing``, ``parse_detail`` and ``page_problem``. With ``--baseline
   CHECKOUT`` each page is also parsed by that checkout's parsers (its
   ``matter_crawler/parsing/`` modules ``_html``, ``listing``, ``detail`` and ``content``,
   loaded as a package of their own, as at c3359a7 where they import only each other),
   right before or right after (in turn), so both meet the same machine state: on a
   shared, loaded machine whole-run timings drift by tens of percent, a page's pair
   does not. Prints the lower quartile of the microseconds per page of each, and the
   median over all pairs of new/old: the figure that must not regress.
2. **content check on a hostile page**: one inline script holding the product-page marker
   many times (``entry-product-details`` every 24 bytes), the shape that made the content
   check's backwards search quadratic. The old check (c3359a7's ``_in_markup``, copied
   below) against today's ``page_problem``, at growing sizes; the old one is only run up to
   ``--old-max-kb`` (it takes minutes beyond a megabyte). Prints the seconds and the
   old/new ratio.

::

    git worktree add /tmp/base c3359a7
    .venv/bin/python bench/parsing_hostile.py --baseline /tmp/base [--pages 60] [--rounds 20]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from common import machine

from matter_crawler.parsing import content, detail, listing
from sitesim.process import SimulatedSite

MARKER = b"entry-product-details"
LISTING_BASE = "http://127.0.0.1/csa-iot_products/"
PRODUCT = "http://127.0.0.1/csa_product/x/"
BASELINE_MODULES = ("_html", "listing", "detail", "content")


def old_in_markup(body: bytes, marker: bytes) -> bool:
    """c3359a7's check: a backwards search from every occurrence (quadratic)."""
    position = body.find(marker)
    while position != -1:
        if body.rfind(b"<script", 0, position) <= body.rfind(b"</script", 0, position):
            return True
        position = body.find(marker, position + len(marker))
    return False


def hostile_page(size: int) -> bytes:
    """A product page whose head holds one script of ``size`` bytes full of the marker."""
    filler = b'"entry-product-details",' * (size // 24)
    return (
        b"<!DOCTYPE html><html><head><script>var x = [" + filler + b"];</script></head><body>"
        b'<div class="entry-product-details"><ul><li class="item">x</li></ul></div>'
        b"</body></html>"
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def load_baseline(checkout: Path, scratch: Path) -> dict[str, ModuleType]:
    """The baseline checkout's parsing modules, as the package ``baseline_parsing``."""
    package = scratch / "baseline_parsing"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in BASELINE_MODULES:
        shutil.copy(checkout / "matter_crawler" / "parsing" / f"{name}.py", package)
    sys.path.insert(0, str(scratch))
    return {name: importlib.import_module(f"baseline_parsing.{name}") for name in BASELINE_MODULES}


def paired(
    pages: list[bytes],
    new: Callable[[bytes], object],
    old: Callable[[bytes], object] | None,
    rounds: int,
) -> tuple[list[float], list[float]]:
    """Microseconds per page of ``new`` and ``old``, each page timed by both in turn."""
    clock = time.perf_counter_ns
    new_times: list[float] = []
    old_times: list[float] = []
    for number in range(rounds):
        for body in pages:
            if old is not None and number % 2:
                started = clock()
                old(body)
                old_times.append((clock() - started) / 1000)
            started = clock()
            new(body)
            new_times.append((clock() - started) / 1000)
            if old is not None and not number % 2:
                started = clock()
                old(body)
                old_times.append((clock() - started) / 1000)
    return new_times, old_times


def quartile(values: list[float]) -> float:
    return sorted(values)[len(values) // 4]


def works(modules: dict[str, ModuleType]) -> dict[str, Callable[[bytes], object]]:
    return {
        "listing page: parse_listing": lambda b: modules["listing"].parse_listing(
            b, LISTING_BASE, "utf-8"
        ),
        "product page: parse_detail": lambda b: modules["detail"].parse_detail(b, PRODUCT, "utf-8"),
        "listing page: page_problem": lambda b: modules["content"].page_problem(b, "list"),
        "product page: page_problem": lambda b: modules["content"].page_problem(b, "detail"),
    }


def parse_section(pages: int, rounds: int, baseline: Path | None) -> None:
    with SimulatedSite(products=pages * 12, seed=1) as site:
        listing_pages = [fetch(site.listing_url(n)) for n in range(1, pages + 1)]
        detail_pages = [fetch(site.url(record["url"])) for record in site.truth()[:pages]]
    bodies = {"listing": listing_pages, "product": detail_pages}
    current = works({"listing": listing, "detail": detail, "content": content})
    with tempfile.TemporaryDirectory() as scratch:
        old = works(load_baseline(baseline, Path(scratch))) if baseline else None
        print(f"Parse only ({pages} pages of each kind, {rounds} rounds, microseconds):\n")
        if old is None:
            print("| work | KB per page | us per page (lower quartile) |")
            print("|---|---:|---:|")
        else:
            print("| work | KB per page | baseline us | us | new / old (median of pairs) |")
            print("|---|---:|---:|---:|---:|")
        gc.disable()  # a collection would land on one side of a pair
        try:
            for name, work in current.items():
                pages_of = bodies[name.split()[0]]
                kilobytes = sum(map(len, pages_of)) / len(pages_of) / 1024
                new_times, old_times = paired(pages_of, work, old[name] if old else None, rounds)
                if old is None:
                    print(f"| {name} | {kilobytes:.1f} | {quartile(new_times):.1f} |")
                    continue
                ratios = sorted(n / o for n, o in zip(new_times, old_times, strict=True))
                print(
                    f"| {name} | {kilobytes:.1f} | {quartile(old_times):.1f} "
                    f"| {quartile(new_times):.1f} | {ratios[len(ratios) // 2]:.3f} |"
                )
        finally:
            gc.enable()


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def content_section(old_max_kb: int) -> None:
    print("\nContent check on a page whose script holds the marker every 24 bytes:\n")
    print("| page | old check (s) | new check (s) | old / new |")
    print("|---:|---:|---:|---:|")
    for kilobytes in (110, 220, 440, 1024, 4096, 10240):
        body = hostile_page(kilobytes * 1024)
        new = min(timed(lambda body=body: content.page_problem(body, "detail")) for _ in range(3))
        assert content.page_problem(body, "detail") is None
        if kilobytes <= old_max_kb:
            old = timed(lambda body=body: old_in_markup(body, MARKER))
            print(f"| {kilobytes:,} KB | {old:.3f} | {new:.5f} | {old / new:,.0f} |")
        else:
            print(f"| {kilobytes:,} KB | (not run) | {new:.5f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=60, help="pages of each kind")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare the parsers with")
    parser.add_argument("--old-max-kb", type=int, default=440, help="largest page for the old")
    parser.add_argument("--skip-content", action="store_true")
    options = parser.parse_args()
    print(machine(), "\n")
    parse_section(options.pages, options.rounds, options.baseline)
    if not options.skip_content:
        content_section(options.old_max_kb)


if __name__ == "__main__":
    main()
